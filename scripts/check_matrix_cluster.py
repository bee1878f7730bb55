#!/usr/bin/env python3
"""Checks that every raw redis step of the shared matrix (tests/matrix/*.json) can be routed
on a Redis Cluster:

- a command without keys in its arguments (CONFIG, DBSIZE, SCRIPT, PING, CLIENT, PUBSUB,
  ...) must have a "key" (the runner routes it by that key's hash slot);
- the keys of a step (its argv keys and its "key") must all be in one hash slot;
- a command this script does not know fails too (add it to COMMAND_KEYS below).

The same for the raw commands of `client.command` op steps (their args "argv" and "key").

    python3 scripts/check_matrix_cluster.py [FILE.json ...]   (default: tests/matrix/*.json)

Exits 1 naming file, case and step (0-based index; "call" steps as i.call.j) of each
problem. Its table of command keys covers only the commands the matrix uses and only the
forms it uses them in; the core's table (rp_cluster__command_keys, core/src/cluster.c) is
the real one, and a runner on a cluster refuses what that one cannot route.
"""
from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any, List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "harness"))
from harness import key_slot  # noqa: E402  (the one hash-slot function of the tests)

HERE = os.path.dirname(os.path.abspath(__file__))
MATRIX = os.path.join(os.path.dirname(HERE), "tests", "matrix")

# name -> where its keys are: None: no keys (needs "key"); ("at", i): argv[i];
# ("from", i): argv[i:] are all keys; ("channel", i): pub/sub, routed by the channel argv[i]
# (PUBLISH: Redis declares no key, the core routes by the channel).
COMMAND_KEYS = {
    "CLIENT": None, "CONFIG": None, "DBSIZE": None, "FLUSHALL": None, "INFO": None,
    "PING": None, "PUBSUB": None, "SCRIPT": None, "DEBUG": None, "TIME": None,
    "APPEND": ("at", 1), "EXPIRE": ("at", 1), "GET": ("at", 1), "HGET": ("at", 1),
    "HGETALL": ("at", 1), "HSET": ("at", 1), "HEXISTS": ("at", 1), "HINCRBY": ("at", 1), "INCR": ("at", 1), "LLEN": ("at", 1),
    "LRANGE": ("at", 1), "PERSIST": ("at", 1), "PEXPIRE": ("at", 1), "PTTL": ("at", 1),
    "RPUSH": ("at", 1), "SADD": ("at", 1), "SET": ("at", 1), "TTL": ("at", 1),
    "TYPE": ("at", 1), "ZADD": ("at", 1), "ZCARD": ("at", 1), "ZRANGE": ("at", 1),
    "DEL": ("from", 1), "EXISTS": ("from", 1), "UNLINK": ("from", 1),
    "PUBLISH": ("channel", 1),
}


def to_bytes(v: Any) -> bytes:
    """A matrix byte value: a string, {"hex": ...} or {"repeat": [s, n]}."""
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, dict) and "hex" in v:
        return bytes.fromhex(v["hex"])
    if isinstance(v, dict) and "repeat" in v:
        s, n = v["repeat"]
        return to_bytes(s) * int(n)
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v).encode()
    raise ValueError("not a byte value: %r" % (v,))


def check_step(step: dict) -> Optional[str]:
    """None when the redis step (or client.command op) routes on a cluster, else what is
    wrong."""
    if "redis" in step:
        argv = [to_bytes(a) for a in step["redis"]]
        key = step.get("key")
    else:
        argv = [to_bytes(a) for a in step.get("args", {}).get("argv", [])]
        key = step.get("args", {}).get("key")
    if not argv:
        return "an empty command"
    name = argv[0].decode("utf-8", "replace").upper()
    if name not in COMMAND_KEYS:
        return "%s is not in this checker's table (add it to COMMAND_KEYS)" % name
    spec = COMMAND_KEYS[name]
    keys: List[Tuple[str, bytes]] = []
    if spec is not None:
        kind, first = spec
        if kind == "at":
            keys += [("argv[%d]" % first, argv[first])] if first < len(argv) else []
        elif kind == "from":
            keys += [("argv[%d]" % i, argv[i]) for i in range(first, len(argv))]
        elif kind == "channel":
            keys += [("channel", argv[first])] if first < len(argv) else []
    if key is not None:
        keys.append(("key", to_bytes(key)))
    elif not keys:
        return "%s has no key to route by on a cluster: give \"key\"" % name
    slots = {key_slot(k) for _, k in keys}
    if len(slots) > 1:
        return "%s: keys in different hash slots: %s" % (
            name, ", ".join("%s %r (slot %d)" % (w, k.decode("utf-8", "replace"), key_slot(k))
                            for w, k in keys))
    return None


def walk(steps: List[dict], where: str, problems: List[str]) -> int:
    n = 0
    for i, step in enumerate(steps):
        here = "%s%d" % (where, i)
        if "redis" in step or step.get("op") == "client.command":
            n += 1
            try:
                why = check_step(step)
            except (ValueError, TypeError, IndexError) as e:
                why = "bad step: %s" % e
            if why:
                problems.append("step %s: %s" % (here, why))
        call = step.get("call")
        if isinstance(call, dict):
            n += walk(call.get("steps", []), here + ".call.", problems)
    return n


def main(argv: List[str]) -> int:
    files = argv or sorted(glob.glob(os.path.join(MATRIX, "*.json")))
    bad = cases = steps = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for case in doc["cases"]:
            cases += 1
            problems: List[str] = []
            steps += walk(case["steps"], "", problems)
            for p in problems:
                bad += 1
                print("%s: case %r: %s" % (os.path.basename(path), case["name"], p))
    print("check_matrix_cluster: %d cases, %d raw commands, %d problems" % (cases, steps, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
