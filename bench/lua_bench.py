"""Lua benchmarks (make bench-lua). Starts its own private redis-servers (tests/harness):

1. The lock cycle (try-acquire + release) in C (build/bench/bench_lock), Lua 5.4 and
   LuaJIT (bench/lua_bench_lock.lua, blocking driver), in the same run: rounds alternate
   the order of the three; each figure is the median over rounds. Target: Lua <= 1.10x C.
2. Inside nginx (one worker): lock cycles per second through redpat's cosocket driver,
   beside the same Redis commands sent by plain cosocket code in the same nginx (the
   floor; tests/openresty/app.lua /bench/*). Target: redpat >= 0.9x the floor.
3. Rate limiters: single checks per algorithm and a batch of 1000 checks in C
   (build/bench/bench_ratelimit, beside raw hiredis), Lua 5.4 and LuaJIT
   (bench/lua_bench_ratelimit.lua), interleaved as in 1; Redis commands per check from
   INFO commandstats. Targets: one round trip per Lua check; the Lua batch at >= 0.5x the
   throughput of raw hiredis pipelining the same 1000 EVALSHAs.

Loopback round trips on a small VM are bimodal (client and server on one CPU, or woken
across CPUs), which swamps a 10% target; so each part pins its processes (redis-server,
the clients, nginx) to one CPU, the same for every side of a comparison.

Writes bench/results/lua.json and bench/results/lua.md; prints the table. Exits 1 when a
target is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
from harness import RedisServer  # noqa: E402
from nginx_harness import NginxServer  # noqa: E402


def lua_env(version: str, tree: str) -> Dict[str, str]:
    env = dict(os.environ)
    if version == "5.4":
        env["LUA_PATH_5_4"] = "%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;;" % (tree, tree)
        env["LUA_CPATH_5_4"] = "%s/lib/lua/5.4/?.so;;" % tree
    else:
        env["LUA_PATH"] = "%s/share/lua/5.1/?.lua;%s/share/lua/5.1/?/init.lua;;" % (tree, tree)
        env["LUA_CPATH"] = "%s/lib/lua/5.1/?.so;;" % tree
    return env


def run_json(argv: List[str], env: Dict[str, str], cpu: int) -> Dict[str, Any]:
    out = subprocess.run(argv, env=env, check=True, stdout=subprocess.PIPE,
                         preexec_fn=lambda: os.sched_setaffinity(0, {cpu})).stdout
    return json.loads(out)


def http_json(url: str) -> Dict[str, Any]:
    with urllib.request.urlopen(url, timeout=300) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tree-54", default=os.path.join(ROOT, ".luarocks", "5.4"))
    ap.add_argument("--tree-luajit", default=os.path.join(ROOT, ".luarocks", "luajit"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    # the Lua side times with the core's millisecond clock: 10000 cycles (a quarter of a
    # second or more) keep its resolution under 0.5%
    ap.add_argument("--iterations", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--nginx-cycles", type=int, default=5000)
    ap.add_argument("--rl-checks", type=int, default=5000)
    ap.add_argument("--rl-rounds", type=int, default=5)
    args = ap.parse_args()
    cpu = max(os.sched_getaffinity(0))
    bench_lock = os.path.join(args.build, "bench", "bench_lock")
    if not os.access(bench_lock, os.X_OK):
        print("lua_bench: %s is missing (make build)" % bench_lock, file=sys.stderr)
        return 1
    bench_rl = os.path.join(args.build, "bench", "bench_ratelimit")
    if not os.access(bench_rl, os.X_OK):
        print("lua_bench: %s is missing (make build)" % bench_rl, file=sys.stderr)
        return 1
    lua_script = os.path.join(HERE, "lua_bench_lock.lua")
    it = str(args.iterations)
    with RedisServer() as redis:
        os.sched_setaffinity(redis.proc.pid, {cpu})
        cycle_us, c_floor_us = blocking_part(args, redis.url, bench_lock, lua_script, it, cpu)
    with RedisServer() as redis:
        os.sched_setaffinity(redis.proc.pid, {cpu})
        os.environ["REDPAT_TEST_URL"] = redis.url
        ngx_us = nginx_part(args, cpu)
    with RedisServer() as redis:
        os.sched_setaffinity(redis.proc.pid, {cpu})
        rl = ratelimit_part(args, redis.url, bench_rl, cpu)
    return report(args, cycle_us, c_floor_us, ngx_us, rl)


def blocking_part(args: argparse.Namespace, url: str, bench_lock: str, lua_script: str,
                  it: str, cpu: int) -> Tuple[Dict[str, List[float]], List[float]]:

    runners = {
        "c": ([bench_lock, url, it, "1"], dict(os.environ)),
        "lua5.4": (["lua5.4", lua_script, url, it, "1"], lua_env("5.4", args.tree_54)),
        "luajit": (["luajit", lua_script, url, it, "1"], lua_env("luajit", args.tree_luajit)),
    }
    order = list(runners)
    cycle_us: Dict[str, List[float]] = {k: [] for k in order}
    c_floor_us: List[float] = []
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            argv, env = runners[name]
            res = run_json(argv, env, cpu)
            cycle_us[name].append(float(res["redpat_cycle_us"]))
            if name == "c":
                c_floor_us.append(float(res["hiredis_cycle_us"]))
    return cycle_us, c_floor_us


def nginx_part(args: argparse.Namespace, cpu: int) -> Dict[str, List[float]]:
    os.environ.setdefault("REDPAT_MATRIX_DIR", os.path.join(ROOT, "tests", "matrix"))
    os.environ.setdefault("REDPAT_SCRIPTS_DIR", os.path.join(ROOT, "core", "scripts"))
    ngx_us: Dict[str, List[float]] = {"redpat": [], "floor": [], "floor1": [],
                                      "ratelimit": [], "rlfloor": []}
    with NginxServer(args.tree_luajit, [os.path.join(ROOT, "tests", "openresty"),
                                        os.path.join(ROOT, "tests", "lua")],
                     app="app", workers=1, cpus=[cpu]) as srv:
        kinds = ["redpat", "floor", "floor1"]
        for r in range(args.rounds):
            for kind in kinds[r % 3:] + kinds[:r % 3]:
                res = http_json("%s/bench/%s?n=%d" % (srv.url, kind, args.nginx_cycles))
                ngx_us[kind].append(float(res["cycle_us"]))
        # rate limit checks (GCRA) beside the same EVALSHA by plain cosocket code
        kinds = ["ratelimit", "rlfloor"]
        for r in range(args.rounds):
            for kind in kinds[r % 2:] + kinds[:r % 2]:
                res = http_json("%s/bench/%s?n=%d" % (srv.url, kind, args.nginx_cycles))
                ngx_us[kind].append(float(res["check_us"]))
    return ngx_us


ALGORITHMS = ["fixed_window", "sliding_log", "sliding_window", "token_bucket", "gcra"]


def ratelimit_part(args: argparse.Namespace, url: str, bench_rl: str, cpu: int) -> Dict[str, Any]:
    """Rounds of C, Lua 5.4 and LuaJIT rate limit benches (one run each per round)."""
    checks = str(args.rl_checks)
    script = os.path.join(HERE, "lua_bench_ratelimit.lua")
    runners = {
        "c": ([bench_rl, url, checks, "1", os.path.join(ROOT, "core", "scripts")], dict(os.environ)),
        "lua5.4": (["lua5.4", script, url, checks, "1"], lua_env("5.4", args.tree_54)),
        "luajit": (["luajit", script, url, checks, "1"], lua_env("luajit", args.tree_luajit)),
    }
    order = list(runners)
    single: Dict[str, Dict[str, List[float]]] = {k: {a: [] for a in ALGORITHMS} for k in order}
    roundtrips: Dict[str, Dict[str, List[float]]] = {k: {a: [] for a in ALGORITHMS} for k in order}
    batch: Dict[str, List[float]] = {k: [] for k in order}
    batch_floor: List[float] = []
    for r in range(args.rl_rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            argv, env = runners[name]
            res = run_json(argv, env, cpu)
            for a in ALGORITHMS:
                s = res["single"][a]
                single[name][a].append(float(s["redpat_us"] if name == "c" else s["us"]))
                roundtrips[name][a].append(float(s["roundtrips"]))
            if name == "c":
                batch[name].append(float(res["batch_1000"]["redpat_us"]))
                batch_floor.append(float(res["batch_1000"]["pipelined_floor_us"]))
            else:
                batch[name].append(float(res["batch_1000_us"]))
    return {"single_us_rounds": single, "roundtrips_rounds": roundtrips,
            "batch_1000_us_rounds": batch, "batch_1000_pipelined_floor_us_rounds": batch_floor}


def report(args: argparse.Namespace, cycle_us: Dict[str, List[float]], c_floor_us: List[float],
           ngx_us: Dict[str, List[float]], rl: Dict[str, Any]) -> int:
    med = {k: statistics.median(v) for k, v in cycle_us.items()}
    ngx_med = {k: statistics.median(v) for k, v in ngx_us.items()}

    # Ratios are taken within each round (neighbouring measurements share the machine's
    # state), then their median: robust to load from other processes that comes and goes.
    def paired(num: List[float], den: List[float]) -> float:
        return statistics.median(n / d for n, d in zip(num, den))

    ratio54 = paired(cycle_us["lua5.4"], cycle_us["c"])
    ratiojit = paired(cycle_us["luajit"], cycle_us["c"])
    # cycles/s of redpat over the floor's = floor µs / redpat µs
    ngx_ratio = paired(ngx_us["floor"], ngx_us["redpat"])
    ngx_ratio1 = paired(ngx_us["floor1"], ngx_us["redpat"])
    ngx_rl_ratio = paired(ngx_us["rlfloor"], ngx_us["ratelimit"])
    rl_single = rl["single_us_rounds"]
    rl_med = {k: {a: statistics.median(v) for a, v in per.items()} for k, per in rl_single.items()}
    rl_ratio = {k: {a: paired(rl_single[k][a], rl_single["c"][a]) for a in ALGORITHMS}
                for k in ("lua5.4", "luajit")}
    rl_rt = {k: {a: max(v) for a, v in per.items()} for k, per in rl["roundtrips_rounds"].items()}
    floor = rl["batch_1000_pipelined_floor_us_rounds"]
    # throughput over the floor's = floor µs / batch µs, per round
    rl_batch = {k: paired(floor, v) for k, v in rl["batch_1000_us_rounds"].items()}
    targets = {
        "lua5.4 <= 1.10x c": ratio54 <= 1.10,
        "luajit <= 1.10x c": ratiojit <= 1.10,
        "nginx redpat >= 0.9x floor": ngx_ratio >= 0.9,
        "lua rate limit: one round trip per check": all(
            abs(x - 1.0) < 1e-9 for k in ("lua5.4", "luajit") for x in rl_rt[k].values()),
        "lua rate limit batch >= 0.5x pipelined floor": min(rl_batch["lua5.4"], rl_batch["luajit"]) >= 0.5,
    }
    result = {
        "bench": "lua_lock",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "iterations": args.iterations,
        "rounds": args.rounds,
        "nginx_cycles": args.nginx_cycles,
        "cycle_us_median": med,
        "cycle_us_rounds": cycle_us,
        "c_hiredis_floor_cycle_us_median": statistics.median(c_floor_us),
        "ratio_lua54_to_c": round(ratio54, 4),
        "ratio_luajit_to_c": round(ratiojit, 4),
        "nginx_cycle_us_median": ngx_med,
        "nginx_cycle_us_rounds": ngx_us,
        "nginx_cycles_per_s_median": {k: 1e6 / v for k, v in ngx_med.items()},
        "nginx_redpat_to_floor": round(ngx_ratio, 4),
        "nginx_redpat_to_floor_one_connection": round(ngx_ratio1, 4),
        "nginx_ratelimit_to_floor": round(ngx_rl_ratio, 4),
        "ratelimit": {
            "checks": args.rl_checks,
            "rounds": args.rl_rounds,
            "single_us_median": rl_med,
            "single_ratio_to_c": {k: {a: round(x, 4) for a, x in v.items()} for k, v in rl_ratio.items()},
            "roundtrips_per_check_max": rl_rt,
            "batch_1000_us_median": {k: statistics.median(v) for k, v in rl["batch_1000_us_rounds"].items()},
            "batch_1000_pipelined_floor_us_median": statistics.median(floor),
            "batch_throughput_vs_floor": {k: round(x, 4) for k, x in rl_batch.items()},
            "rounds_data": rl,
        },
        "targets_met": targets,
    }
    rows = [
        ("C (rp_lock_acquire + rp_lock_release)", "%.2f µs" % med["c"], "1.00x"),
        ("Lua 5.4 (blocking driver)", "%.2f µs" % med["lua5.4"], "%.3fx C" % ratio54),
        ("LuaJIT (blocking driver)", "%.2f µs" % med["luajit"], "%.3fx C" % ratiojit),
        ("nginx: redpat (cosocket driver)", "%.0f cycles/s" % (1e6 / ngx_med["redpat"]),
         "%.3fx floor" % ngx_ratio),
        ("nginx: floor, plain cosockets, pooled connection per command",
         "%.0f cycles/s" % (1e6 / ngx_med["floor"]), "1.00x"),
        ("nginx: plain cosockets, one pooled connection per cycle",
         "%.0f cycles/s" % (1e6 / ngx_med["floor1"]), "redpat is %.3fx this" % ngx_ratio1),
    ]
    md = ["# Lua benchmarks: lock cycle and rate limiters", "",
          "%s; %d iterations x %d interleaved rounds; times are medians over rounds, ratios "
          "medians of per-round ratios; nginx: %d cycles per request, 1 worker." % (result["when"], args.iterations, args.rounds, args.nginx_cycles), "",
          "| what | lock cycle (acquire + release) | ratio |", "|---|---|---|"]
    md += ["| %s | %s | %s |" % row for row in rows]
    md += ["", "## Rate limiters", "",
           "%d single checks per algorithm x %d interleaved rounds (medians); C beside raw "
           "hiredis in bench/results/c_ratelimit.txt. Round trips: Redis script calls per check "
           "(INFO commandstats)." % (args.rl_checks, args.rl_rounds), "",
           "| algorithm | C µs | Lua 5.4 µs | LuaJIT µs | Lua 5.4 / C | LuaJIT / C | round trips (Lua) |",
           "|---|---|---|---|---|---|---|"]
    for a in ALGORITHMS:
        md.append("| %s | %.2f | %.2f | %.2f | %.3fx | %.3fx | %.3f |" % (
            a, rl_med["c"][a], rl_med["lua5.4"][a], rl_med["luajit"][a], rl_ratio["lua5.4"][a],
            rl_ratio["luajit"][a], max(rl_rt["lua5.4"][a], rl_rt["luajit"][a])))
    bmed = result["ratelimit"]["batch_1000_us_median"]
    md += ["", "Batch of 1000 checks (1000 subjects, one pipelined round trip): C %.0f µs, Lua 5.4 "
           "%.0f µs, LuaJIT %.0f µs; raw hiredis pipelining the same EVALSHAs %.0f µs. Throughput "
           "vs that floor: C %.2fx, Lua 5.4 %.2fx, LuaJIT %.2fx." % (
               bmed["c"], bmed["lua5.4"], bmed["luajit"],
               result["ratelimit"]["batch_1000_pipelined_floor_us_median"],
               rl_batch["c"], rl_batch["lua5.4"], rl_batch["luajit"])]
    md += ["", "nginx (1 worker, cosockets): redpat %.0f GCRA checks/s; plain cosocket code sending "
           "the same EVALSHA %.0f checks/s: redpat at %.3fx (reported, no target)." % (
               1e6 / ngx_med["ratelimit"], 1e6 / ngx_med["rlfloor"], ngx_rl_ratio)]
    md += ["", "Targets: " + ", ".join("%s: %s" % (k, "met" if v else "MISSED")
                                       for k, v in targets.items())]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "lua.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "lua.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
