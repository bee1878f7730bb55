"""make bench (Python part): the Python lock cycle (acquire + release) beside the C one and
beside redis-py's Lock, in the same run against the same private redis-server, interleaved
round by round so that machine noise hits all of them alike; medians of the rounds.

    python bench/python_lock.py --c-bench build/bench/bench_lock --out bench/results

Needs REDPAT_TEST_URL (run it under tests/harness/harness.py run --), redpat and redis-py
installed. REDPAT_BENCH_ITERATIONS (default 10000) and REDPAT_BENCH_RUNS (default 7) tune
it. Writes python_lock.json and a readable python_lock.txt.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List

import redis
import redis.asyncio

import redpat
import redpat.asyncio as rpa

TARGET_RATIO = 1.10
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core",
                       "scripts")


def per_cycle_us(fn: Callable[[], None], iterations: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - t0) / iterations * 1e6


def bench_redpat(client: redpat.Client, iterations: int, rnd: int) -> Dict[str, float]:
    lock = client.lock("bench-py-%d" % rnd, timeout=30)
    acquire, release = lock.acquire, lock.release

    def cycle() -> None:
        acquire()
        release()

    def with_cycle() -> None:
        with lock:
            pass

    fenced = client.lock("bench-py-fenced-%d" % rnd, timeout=30, fenced=True)

    def fenced_cycle() -> None:
        fenced.acquire()
        fenced.release()

    per_cycle_us(cycle, min(iterations, 500))  # warm-up: connection, scripts loaded
    per_cycle_us(fenced_cycle, min(iterations, 500))
    return {
        "redpat_python_cycle_us": per_cycle_us(cycle, iterations),
        "redpat_python_with_us": per_cycle_us(with_cycle, iterations // 2),
        "redpat_python_fenced_cycle_us": per_cycle_us(fenced_cycle, iterations // 2),
    }


def bench_redis_py(r: "redis.Redis[bytes]", iterations: int, rnd: int) -> Dict[str, float]:
    lock = r.lock("bench-redispy-%d" % rnd, timeout=30)
    acquire, release = lock.acquire, lock.release

    def cycle() -> None:
        acquire()
        release()

    per_cycle_us(cycle, min(iterations, 500))
    return {"redis_py_cycle_us": per_cycle_us(cycle, iterations)}


def bench_asyncio(url: str, iterations: int, rnd: int) -> Dict[str, float]:
    async def main() -> float:
        async with rpa.Client(url, namespace="rpbench") as c:
            lock = c.lock("bench-aio-%d" % rnd, timeout=30)
            for _ in range(min(iterations, 500)):
                await lock.acquire()
                await lock.release()
            n = iterations // 2
            t0 = time.perf_counter()
            for _ in range(n):
                await lock.acquire()
                await lock.release()
            return (time.perf_counter() - t0) / n * 1e6
    async def main_redis_py() -> float:
        r = redis.asyncio.Redis.from_url(url)
        lock = r.lock("bench-aio-redispy-%d" % rnd, timeout=30)
        for _ in range(min(iterations, 500)):
            await lock.acquire()
            await lock.release()
        n = iterations // 2
        t0 = time.perf_counter()
        for _ in range(n):
            await lock.acquire()
            await lock.release()
        elapsed = (time.perf_counter() - t0) / n * 1e6
        await (getattr(r, "aclose", None) or r.close)()
        return elapsed
    return {"redpat_asyncio_cycle_us": asyncio.run(main()),
            "redis_py_asyncio_cycle_us": asyncio.run(main_redis_py())}


def bench_c(binary: str, url: str, iterations: int) -> Dict[str, Any]:
    out = subprocess.run([binary, url, str(iterations), "1", SCRIPTS], check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--c-bench", required=True, help="build/bench/bench_lock")
    parser.add_argument("--out", required=True, help="directory for the results")
    parser.add_argument("--url", default=os.environ.get("REDPAT_TEST_URL"))
    args = parser.parse_args()
    if not args.url:
        parser.error("no --url and no REDPAT_TEST_URL (run under tests/harness/harness.py)")
    iterations = int(os.environ.get("REDPAT_BENCH_ITERATIONS", "10000"))
    runs = int(os.environ.get("REDPAT_BENCH_RUNS", "7"))

    client = redpat.Client(args.url, namespace="rpbench")
    r = redis.Redis.from_url(args.url)
    samples: Dict[str, List[float]] = {}
    c_info: Dict[str, Any] = {}

    def add(d: Dict[str, Any]) -> None:
        for k, v in d.items():
            samples.setdefault(k, []).append(float(v))

    for rnd in range(runs):
        # Rotate the order each round so no contender always runs first or last.
        steps: List[Callable[[], Dict[str, Any]]] = [
            lambda: bench_c(args.c_bench, args.url, iterations),
            lambda: bench_redpat(client, iterations, rnd),
            lambda: bench_redis_py(r, iterations, rnd),
        ]
        for i in range(len(steps)):
            d = steps[(i + rnd) % len(steps)]()
            if "redpat_cycle_us" in d:
                c_info = d
                d = {"c_redpat_cycle_us": d["redpat_cycle_us"],
                     "c_hiredis_cycle_us": d["hiredis_cycle_us"],
                     "c_redpat_fenced_acquire_us": d["redpat_fenced_us"]}
            add(d)
        add(bench_asyncio(args.url, iterations, rnd))
        client.execute_command("FLUSHALL")

    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio_c = med["redpat_python_cycle_us"] / med["c_redpat_cycle_us"]
    ratio_redis_py = med["redpat_python_cycle_us"] / med["redis_py_cycle_us"]
    result = {
        "bench": "python_lock",
        "python": platform.python_version(),
        "redpat_version": redpat.__version__,
        "redis_py_version": redis.__version__,
        "redis_version": c_info.get("redis_version"),
        "hiredis_version": c_info.get("hiredis_version"),
        "iterations": iterations,
        "runs": runs,
        "medians_us": med,
        "python_over_c_ratio": round(ratio_c, 4),
        "python_over_redis_py_ratio": round(ratio_redis_py, 4),
        "target_ratio_c": TARGET_RATIO,
        "met_c_target": ratio_c <= TARGET_RATIO,
        "met_faster_than_redis_py": ratio_redis_py < 1.0,
        "runs_us": samples,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "python_lock.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    lines = [
        "redpat Python lock benchmark: python %s, redis %s, redis-py %s, %d cycles x %d runs "
        "(median of runs, interleaved)" % (result["python"], result["redis_version"],
                                          result["redis_py_version"], iterations, runs),
        "",
        "%-52s %10s %8s" % ("lock cycle (acquire + release)", "us/cycle", "vs C"),
    ]
    rows = [
        ("C core (rp_lock_acquire + rp_lock_release)", "c_redpat_cycle_us"),
        ("raw hiredis, same commands (floor)", "c_hiredis_cycle_us"),
        ("redpat Python: lock.acquire() + release()", "redpat_python_cycle_us"),
        ("redpat Python: with lock:", "redpat_python_with_us"),
        ("redpat Python: fenced acquire + release", "redpat_python_fenced_cycle_us"),
        ("redpat.asyncio: await acquire() + release()", "redpat_asyncio_cycle_us"),
        ("redis-py %s Lock: acquire() + release()" % redis.__version__, "redis_py_cycle_us"),
        ("redis-py asyncio Lock: await acquire() + release()", "redis_py_asyncio_cycle_us"),
    ]
    for label, k in rows:
        lines.append("%-52s %10.2f %7.3fx" % (label, med[k], med[k] / med["c_redpat_cycle_us"]))
    lines += [
        "",
        "target: Python cycle within %.2fx of the C cycle ... %s (%.3fx)"
        % (TARGET_RATIO, "met" if result["met_c_target"] else "MISSED", ratio_c),
        "target: Python cycle faster than redis-py's Lock ... %s (%.3fx of redis-py)"
        % ("met" if result["met_faster_than_redis_py"] else "MISSED", ratio_redis_py),
        "",
        "per-run values (us):",
    ]
    for k, v in samples.items():
        lines.append("  %-30s %s" % (k, " ".join("%.2f" % x for x in v)))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "python_lock.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
