"""make bench (Python Redlock): redpat's Redlock over 5 servers beside the Python Redlocks
users pick from PyPI -- pottery, redlock-py, redlock-ng -- and one redis-py Lock on one
server for reference, in ONE run against the same private servers, interleaved round by
round (the order rotates every round) so machine noise hits all of them alike; medians of
the rounds. Also lock.using(fn) with an empty fn beside a bare acquire + release (sync and
asyncio), for a single-node lock and a Redlock.

    python bench/python_redlock.py --out bench/results \\
        --peer-dir redlock-py=DIR --peer-dir redlock-ng=DIR

redlock-py and redlock-ng both install a top-level package called `redlock` (and each pins
its own redis-py), so each is installed into a directory of its own (pip install --target
DIR) and its rounds run in a subprocess with PYTHONPATH=DIR. Everything else runs in this
process. Needs REDPAT_TEST_URLS (5 URLs: run it under tests/harness/harness.py run
--servers 5 --), redpat, redis-py and pottery installed. REDPAT_BENCH_CYCLES (default 1000)
and REDPAT_BENCH_RUNS (default 7) tune it. Writes python_redlock.json and python_redlock.txt.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Tuple

TTL_S = 30
TTL_MS = TTL_S * 1000
# redpat's per-node timeout of a Redlock round (default 0.05 s): generous, so a machine busy
# with other work slows the bench down instead of failing it (it only matters when a node is
# that late). The peers keep their defaults (none, or redlock-ng's 0.1 s socket timeout).
NODE_TIMEOUT_S = 1.0
WARMUP_MAX = 200
# A contender that takes longer than this for one round hangs: print every thread's stack
# and exit (the harness then stops the servers).
ROUND_DEADLINE_S = 300
# Every Python Redlock to beat, as rows of the report: (key, label).
PEERS = [("pottery", "pottery %s Redlock (5 masters)"),
         ("redlock_py", "redlock-py %s Redlock (5 servers)"),
         ("redlock_ng", "redlock-ng %s Redlock (5 masters)")]
DIST = {"pottery": "pottery", "redlock_py": "redlock-py", "redlock_ng": "redlock-ng"}
# Contenders that need a package directory of their own (both are `import redlock`).
SUBPROCESS_PEERS = {"redlock_py": "redlock-py", "redlock_ng": "redlock-ng"}
# Issue 9: Redlock(5) acquire + release within this of the single-node lock cycle.
TARGET_SINGLE_RATIO = 1.5

Cycle = Callable[[], None]


def per_cycle_us(fn: Cycle, cycles: int) -> float:
    for _ in range(min(cycles, WARMUP_MAX)):  # connections open, scripts loaded
        fn()
    t0 = time.perf_counter()
    for _ in range(cycles):
        fn()
    return (time.perf_counter() - t0) / cycles * 1e6


@contextlib.contextmanager
def deadline(seconds: float = ROUND_DEADLINE_S) -> Iterator[None]:
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# -- the contenders: each makes a cycle (acquire once, check it was acquired, release) ------

def redlock_py_cycle(urls: List[str], name: str) -> Cycle:
    import redlock  # redlock-py (its own directory)
    dlm = redlock.Redlock(urls, retry_count=1)

    def cycle() -> None:
        held = dlm.lock(name, TTL_MS)
        if not held:
            raise RuntimeError("redlock-py did not acquire")
        dlm.unlock(held)
    return cycle


def redlock_ng_cycle(urls: List[str], name: str) -> Cycle:
    import redlock  # redlock-ng (its own directory)
    rl = redlock.Redlock(urls, retry_count=0)

    def cycle() -> None:
        held = rl.acquire(name, TTL_MS)
        if held is None:
            raise RuntimeError("redlock-ng did not acquire")
        rl.release(held)
    return cycle


def pottery_cycle(urls: List[str], name: str) -> Cycle:
    import redis
    from pottery import Redlock
    lock = Redlock(key=name, masters={redis.Redis.from_url(u) for u in urls},
                   auto_release_time=TTL_S)

    def cycle() -> None:
        if not lock.acquire(blocking=False):
            raise RuntimeError("pottery did not acquire")
        lock.release()
    return cycle


def worker(name: str, urls: List[str], cycles: int, rnd: int) -> int:
    """--worker: one round of one peer, in this (sub)process; prints its JSON."""
    make = {"redlock_py": redlock_py_cycle, "redlock_ng": redlock_ng_cycle}[name]
    with deadline():
        us = per_cycle_us(make(urls, "bench-%s-%d" % (name, rnd)), cycles)
    json.dump({"us": us, "version": version(SUBPROCESS_PEERS[name])}, sys.stdout)
    return 0


def in_subprocess(name: str, peer_dir: str, urls: List[str], cycles: int, rnd: int) -> Tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=peer_dir, PYTHONNOUSERSITE="1")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name,
                          "--urls", ",".join(urls), "--cycles", str(cycles),
                          "--round", str(rnd)],
                         env=env, check=True, capture_output=True, text=True).stdout
    d = json.loads(out)
    return float(d["us"]), str(d["version"])


class Contenders:
    """The in-process contenders, made once (their connections stay open across rounds)."""

    def __init__(self, urls: List[str]) -> None:
        import redis
        import redpat
        self.redpat5 = redpat.Client(urls, namespace="rpbench")
        self.redpat1 = redpat.Client(urls[0], namespace="rpbench")
        self.redis1 = redis.Redis.from_url(urls[0])
        self.urls = urls

    def redpat_redlock(self, rnd: int) -> Cycle:
        lock = self.redpat5.redlock("bench-rl-%d" % rnd, timeout=TTL_S,
                                    node_timeout=NODE_TIMEOUT_S)
        return lambda: self._cycle(lock)

    def redpat_single(self, rnd: int) -> Cycle:
        lock = self.redpat1.lock("bench-sn-%d" % rnd, timeout=TTL_S)
        return lambda: self._cycle(lock)

    def redpat_redlock_using(self, rnd: int) -> Cycle:
        lock = self.redpat5.redlock("bench-rl-using-%d" % rnd, timeout=TTL_S,
                                    node_timeout=NODE_TIMEOUT_S)
        return lambda: self._using(lock)

    def redpat_single_using(self, rnd: int) -> Cycle:
        lock = self.redpat1.lock("bench-sn-using-%d" % rnd, timeout=TTL_S)
        return lambda: self._using(lock)

    def redis_py_lock(self, rnd: int) -> Cycle:
        lock = self.redis1.lock("bench-redispy-%d" % rnd, timeout=TTL_S)

        def cycle() -> None:
            if not lock.acquire(blocking=False):
                raise RuntimeError("redis-py Lock did not acquire")
            lock.release()
        return cycle

    def pottery(self, rnd: int) -> Cycle:
        return pottery_cycle(self.urls, "bench-pottery-%d" % rnd)

    @staticmethod
    def _cycle(lock: Any) -> None:
        if not lock.acquire(blocking=False):
            raise RuntimeError("redpat did not acquire %r" % lock.name)
        lock.release()

    @staticmethod
    def _using(lock: Any) -> None:
        lock.using(_nothing)


def _nothing() -> None:
    return None


async def _anothing() -> None:
    return None


def bench_asyncio(urls: List[str], cycles: int, rnd: int) -> Dict[str, float]:
    """redpat.asyncio: bare cycles and lock.using(async fn), single-node and Redlock."""
    import redpat.asyncio as rpa

    async def timed(fn: Callable[[], Awaitable[None]]) -> float:
        for _ in range(min(cycles, WARMUP_MAX)):
            await fn()
        t0 = time.perf_counter()
        for _ in range(cycles):
            await fn()
        return (time.perf_counter() - t0) / cycles * 1e6

    async def main() -> Dict[str, float]:
        c5 = rpa.Client(urls, namespace="rpbench")
        c1 = rpa.Client(urls[0], namespace="rpbench")
        try:
            locks = {"single": c1.lock("bench-aio-sn-%d" % rnd, timeout=TTL_S),
                     "redlock": c5.redlock("bench-aio-rl-%d" % rnd, timeout=TTL_S,
                                            node_timeout=NODE_TIMEOUT_S)}
            out: Dict[str, float] = {}
            for kind, lock in locks.items():
                async def cycle(lock: Any = lock) -> None:
                    if not await lock.acquire(blocking=False):
                        raise RuntimeError("redpat.asyncio did not acquire")
                    await lock.release()

                async def using(lock: Any = lock) -> None:
                    await lock.using(_anothing)
                # Alternate the two so they see the same load.
                if rnd % 2:
                    out["asyncio_%s_using" % kind] = await timed(using)
                    out["asyncio_%s_cycle" % kind] = await timed(cycle)
                else:
                    out["asyncio_%s_cycle" % kind] = await timed(cycle)
                    out["asyncio_%s_using" % kind] = await timed(using)
            return out
        finally:
            await c5.close()
            await c1.close()
    return asyncio.run(main())


def flush(urls: List[str]) -> None:
    import redis
    for u in urls:
        r = redis.Redis.from_url(u)
        r.flushall()
        r.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="directory for the results")
    parser.add_argument("--urls", default=os.environ.get("REDPAT_TEST_URLS"),
                        help="','-joined server URLs (default: $REDPAT_TEST_URLS)")
    parser.add_argument("--peer-dir", action="append", default=[], metavar="DIST=DIR",
                        help="where redlock-py / redlock-ng were installed (pip --target)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cycles", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.urls:
        parser.error("no --urls and no REDPAT_TEST_URLS (run under harness.py run --servers 5)")
    urls = args.urls.split(",")
    if args.worker:
        return worker(args.worker, urls, args.cycles, args.round)
    if args.out is None:
        parser.error("--out is required")
    if len(urls) != 5:
        parser.error("needs 5 server URLs (got %d)" % len(urls))
    dirs: Dict[str, str] = {}
    for item in args.peer_dir:
        dist, _, path = item.partition("=")
        dirs[dist] = path
    for key, dist in SUBPROCESS_PEERS.items():
        if dist not in dirs or not os.path.isdir(dirs[dist]):
            parser.error("--peer-dir %s=DIR is required (pip install --target DIR %s)"
                         % (dist, dist))
    cycles = int(os.environ.get("REDPAT_BENCH_CYCLES", "1000"))
    runs = int(os.environ.get("REDPAT_BENCH_RUNS", "7"))

    import redis
    import redpat
    c = Contenders(urls)
    versions = {"pottery": version("pottery")}
    samples: Dict[str, List[float]] = {}

    def add(key: str, us: float) -> None:
        samples.setdefault(key, []).append(us)

    for rnd in range(runs):
        steps: List[Tuple[str, Callable[[], float]]] = [
            ("redpat_redlock", lambda: per_cycle_us(c.redpat_redlock(rnd), cycles)),
            ("redpat_single", lambda: per_cycle_us(c.redpat_single(rnd), cycles)),
            ("redpat_redlock_using", lambda: per_cycle_us(c.redpat_redlock_using(rnd), cycles)),
            ("redpat_single_using", lambda: per_cycle_us(c.redpat_single_using(rnd), cycles)),
            ("redis_py_lock", lambda: per_cycle_us(c.redis_py_lock(rnd), cycles)),
            ("pottery", lambda: per_cycle_us(c.pottery(rnd), cycles)),
        ]
        for key, dist in SUBPROCESS_PEERS.items():
            def sub(key: str = key, dist: str = dist) -> float:
                us, v = in_subprocess(key, dirs[dist], urls, cycles, rnd)
                versions[key] = v
                return us
            steps.append((key, sub))
        # Rotate the order each round so no contender always runs first or last.
        for i in range(len(steps)):
            key, fn = steps[(i + rnd) % len(steps)]
            with deadline():
                add(key, fn())
        with deadline():
            for key, us in bench_asyncio(urls, cycles, rnd).items():
                add(key, us)
        flush(urls)

    med = {k: statistics.median(v) for k, v in samples.items()}
    rl = med["redpat_redlock"]
    fastest_peer = min(PEERS, key=lambda p: med[p[0]])[0]
    result: Dict[str, Any] = {
        "bench": "python_redlock",
        "python": platform.python_version(),
        "redpat_version": redpat.__version__,
        "redis_py_version": redis.__version__,
        "peer_versions": versions,
        "redis_version": c.redis1.info("server")["redis_version"],
        "servers": len(urls),
        "cycles": cycles,
        "runs": runs,
        "medians_us": med,
        "redlock_over_peer_ratio": {p: round(rl / med[p], 4) for p, _ in PEERS},
        "redlock_over_redis_py_lock_ratio": round(rl / med["redis_py_lock"], 4),
        "redlock_over_single_ratio": round(rl / med["redpat_single"], 4),
        "using_over_cycle_ratio": {
            "sync_single": round(med["redpat_single_using"] / med["redpat_single"], 4),
            "sync_redlock": round(med["redpat_redlock_using"] / rl, 4),
            "asyncio_single": round(med["asyncio_single_using"] / med["asyncio_single_cycle"], 4),
            "asyncio_redlock": round(med["asyncio_redlock_using"] / med["asyncio_redlock_cycle"], 4),
        },
        "fastest_peer": fastest_peer,
        "met_faster_than_every_python_redlock": all(rl < med[p] for p, _ in PEERS),
        "target_single_ratio": TARGET_SINGLE_RATIO,
        "met_single_ratio": rl / med["redpat_single"] <= TARGET_SINGLE_RATIO,
        "runs_us": samples,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "python_redlock.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    lines = [
        "redpat Python Redlock benchmark: python %s, redis %s, %d local servers, redis-py %s,"
        " %d cycles x %d runs" % (result["python"], result["redis_version"], len(urls),
                                  result["redis_py_version"], cycles, runs),
        "(acquire once + release; all contenders in one run, interleaved round by round;"
        " medians of the runs)",
        "",
        "%-58s %10s %14s" % ("acquire + release", "ms/cycle", "redpat is"),
    ]

    def row(label: str, key: str, vs: bool = True) -> None:
        faster = "%.2fx faster" % (med[key] / rl) if vs and key != "redpat_redlock" else ""
        lines.append("%-58s %10.3f %14s" % (label, med[key] / 1000, faster))

    row("redpat %s Redlock(5): lock.acquire() + release()" % redpat.__version__,
        "redpat_redlock")
    for key, label in PEERS:
        row(label % versions.get(key, "?"), key)
    lines.append("")
    lines.append("for reference (one server):")
    row("redis-py %s Lock: acquire() + release()" % redis.__version__, "redis_py_lock", False)
    row("redpat single-node lock: acquire() + release()", "redpat_single", False)
    lines += [
        "Redlock(5) / redpat single-node lock: %.3fx; / redis-py Lock: %.3fx"
        % (result["redlock_over_single_ratio"], result["redlock_over_redis_py_lock_ratio"]),
        "",
        "%-48s %10s %10s %8s %12s" % ("lock.using(empty fn) vs a bare cycle", "using ms",
                                      "bare ms", "ratio", "overhead us"),
    ]
    for label, using, bare in [
            ("sync, single-node: lock.using(fn)", "redpat_single_using", "redpat_single"),
            ("sync, Redlock(5): lock.using(fn)", "redpat_redlock_using", "redpat_redlock"),
            ("asyncio, single-node: await lock.using(afn)", "asyncio_single_using",
             "asyncio_single_cycle"),
            ("asyncio, Redlock(5): await lock.using(afn)", "asyncio_redlock_using",
             "asyncio_redlock_cycle")]:
        lines.append("%-48s %10.3f %10.3f %7.3fx %12.1f"
                     % (label, med[using] / 1000, med[bare] / 1000, med[using] / med[bare],
                        med[using] - med[bare]))
    lines += [
        "",
        "target: redpat Redlock(5) faster than every Python Redlock (pottery, redlock-py,"
        " redlock-ng) ... %s (%.3f ms vs the fastest, %s, %.3f ms)"
        % ("met" if result["met_faster_than_every_python_redlock"] else "MISSED", rl / 1000,
           DIST[fastest_peer], med[fastest_peer] / 1000),
        "target: redpat Redlock(5) within %.2fx of redpat's single-node lock cycle ... %s"
        " (%.3fx)" % (TARGET_SINGLE_RATIO,
                      "met" if result["met_single_ratio"] else "MISSED",
                      result["redlock_over_single_ratio"]),
        "",
        "per-run values (us):",
    ]
    for k, v in samples.items():
        lines.append("  %-24s %s" % (k, " ".join("%.1f" % x for x in v)))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "python_redlock.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
