"""make bench (Python part): single rate limit checks per second from Python, redpat beside
the PyPI `limits` package (its Redis storage over redis-py) on the same private redis-server
in the same run, interleaved round by round so that machine noise hits all alike; medians
of the rounds. Like for like:

    redpat sliding_log   vs  limits MovingWindowRateLimiter  (exact over any window)
    redpat fixed_window  vs  limits FixedWindowRateLimiter

Every check in the timed loops is allowed (a limit far above the number of checks, one
subject per contender and round), so each one writes, as a real admitted request does.
Round trips per check are the requests each check sends (counted with MONITOR, apart from
the timed runs). The other redpat algorithms, redpat.asyncio and a batch of
1000 checks in one pipeline are measured too, for the record.

    python bench/python_ratelimit.py --out bench/results

Needs REDPAT_TEST_URL (run it under tests/harness/harness.py run --), redpat, redis-py and
limits installed. REDPAT_BENCH_ITERATIONS (default 10000) and REDPAT_BENCH_RUNS (default 7)
tune it. Writes python_ratelimit.json and a readable python_ratelimit.txt.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

import limits
import limits.storage
import limits.strategies
import redis

import redpat
import redpat.asyncio as rpa

BIG = 10 ** 9  # a limit no run reaches: every timed check is allowed
WINDOW = 3600  # seconds
BATCH = 1000
ALGORITHMS = ["fixed_window", "sliding_log", "sliding_window", "token_bucket", "gcra"]
PAIRS = [("sliding_log", "limits_moving_window"), ("fixed_window", "limits_fixed_window")]


def per_check_us(fn: Callable[[], Any], iterations: int) -> float:
    t0 = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - t0) / iterations * 1e6


def redpat_checks(client: redpat.Client, algorithm: str,
                  rnd: int) -> Tuple[Callable[[], Any], Callable[[], bool]]:
    """(one check, whether the last one was allowed) for a redpat algorithm."""
    limiter = client.ratelimiter("bench-" + algorithm, algorithm, limit=BIG, window=WINDOW)
    check, subject = limiter.check, "subject-%d" % rnd
    return (lambda: check(subject)), (lambda: check(subject, 0).allowed)


def limits_checks(storage: limits.storage.RedisStorage, strategy: str,
                  rnd: int) -> Tuple[Callable[[], Any], Callable[[], bool]]:
    cls = (limits.strategies.MovingWindowRateLimiter if strategy == "limits_moving_window"
           else limits.strategies.FixedWindowRateLimiter)
    limiter = cls(storage)
    item = limits.RateLimitItemPerHour(BIG)
    # Both strategies would share one key for one item and subject: a subject each.
    hit, test, subject = limiter.hit, limiter.test, "%s-%d" % (strategy, rnd)
    return (lambda: hit(item, subject)), (lambda: test(item, subject))


def limits_with_stats(storage: limits.storage.RedisStorage,
                      rnd: int) -> Callable[[], Any]:
    """limits' hit() answers only allowed or not; what redpat's decision also carries
    (remaining, reset time) takes limits a second call."""
    limiter = limits.strategies.MovingWindowRateLimiter(storage)
    item = limits.RateLimitItemPerHour(BIG)
    subject = "stats-%d" % rnd

    def check() -> Any:
        limiter.hit(item, subject)
        return limiter.get_window_stats(item, subject)
    return check


def round_trips_per_check(url: str, fn: Callable[[], Any], n: int) -> float:
    """Requests the client sends per check: with a client that does not pipeline, its round
    trips. Counted with MONITOR, which marks the commands a script runs as coming from
    "lua" (INFO commandstats counts those too, so it cannot tell them apart); the count is
    taken apart from the timed runs, as MONITOR slows the server."""
    watcher = redis.Redis.from_url(url)
    stopper = redis.Redis.from_url(url)
    stopper.ping()  # connected (and its handshake done) before the count starts
    seen: List[str] = []
    ready = threading.Event()
    stop = "redpat-bench-stop-%d" % os.getpid()

    def watch() -> None:
        with watcher.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if stop in cmd["command"]:
                    return
                if cmd.get("client_type") != "lua":
                    seen.append(cmd["command"])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait()
    for _ in range(n):
        fn()
    stopper.echo(stop)
    thread.join(30)
    return len(seen) / n


def bench_asyncio(url: str, iterations: int, rnd: int) -> float:
    async def main() -> float:
        async with rpa.Client(url, namespace="rlbench") as c:
            check = c.ratelimiter("bench-aio", "gcra", limit=BIG, window=WINDOW).check
            subject = "subject-%d" % rnd
            for _ in range(min(iterations, 500)):
                await check(subject)
            n = iterations // 2
            t0 = time.perf_counter()
            for _ in range(n):
                await check(subject)
            return (time.perf_counter() - t0) / n * 1e6
    return asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="directory for the results")
    parser.add_argument("--url", default=os.environ.get("REDPAT_TEST_URL"))
    args = parser.parse_args()
    if not args.url:
        parser.error("no --url and no REDPAT_TEST_URL (run under tests/harness/harness.py)")
    iterations = int(os.environ.get("REDPAT_BENCH_ITERATIONS", "10000"))
    runs = int(os.environ.get("REDPAT_BENCH_RUNS", "7"))

    client = redpat.Client(args.url, namespace="rlbench")
    r = redis.Redis.from_url(args.url)
    storage = limits.storage.RedisStorage(args.url)
    samples: Dict[str, List[float]] = {}
    round_trips: Dict[str, float] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    contenders: List[Tuple[str, Callable[[int], Tuple[Callable[[], Any], Callable[[], bool]]]]]
    contenders = [("redpat_" + a, lambda rnd, a=a: redpat_checks(client, a, rnd))  # type: ignore[misc]
                  for a in ALGORITHMS]
    contenders += [(s, lambda rnd, s=s: limits_checks(storage, s, rnd))  # type: ignore[misc]
                   for s in ("limits_moving_window", "limits_fixed_window")]

    for rnd in range(runs):
        # Rotate the order each round so no contender always runs first or last.
        for i in range(len(contenders)):
            name, make = contenders[(i + rnd) % len(contenders)]
            check, still_allowed = make(rnd)
            per_check_us(check, min(iterations, 500))  # warm-up: connection, scripts
            add(name, per_check_us(check, iterations))
            if not still_allowed():
                raise SystemExit("%s refused a check: the bench must only admit" % name)
        add("limits_moving_window_with_stats", per_check_us(limits_with_stats(storage, rnd),
                                                            iterations // 2))
        add("redpat_asyncio_gcra", bench_asyncio(args.url, iterations, rnd))
        batch = client.ratelimiter("bench-batch", "gcra", limit=BIG, window=WINDOW).batch
        subjects = ["b%d-%d" % (rnd, i) for i in range(BATCH)]
        batch(subjects)
        add("redpat_batch_1000", per_check_us(lambda: batch(subjects), 20) / BATCH)
        client.execute_command("FLUSHALL")

    for name, make in contenders:
        check = make(runs)[0]
        check()  # scripts loaded: count the steady state
        round_trips[name] = round_trips_per_check(args.url, check, 200)
    with_stats = limits_with_stats(storage, runs)
    with_stats()
    round_trips["limits_moving_window_with_stats"] = round_trips_per_check(args.url, with_stats,
                                                                           200)
    client.execute_command("FLUSHALL")

    med = {k: statistics.median(v) for k, v in samples.items()}
    checks_per_s = {k: 1e6 / v for k, v in med.items()}
    comparisons = {}
    for ours, theirs in PAIRS:
        speedup = med[theirs] / med["redpat_" + ours]
        comparisons["redpat_%s_vs_%s" % (ours, theirs)] = {
            "redpat_us": round(med["redpat_" + ours], 3), "limits_us": round(med[theirs], 3),
            "speedup": round(speedup, 4), "faster": speedup > 1.0}
    result = {
        "bench": "python_ratelimit",
        "python": platform.python_version(),
        "redpat_version": redpat.__version__,
        "limits_version": limits.__version__,
        "redis_py_version": redis.__version__,
        "redis_version": r.info("server")["redis_version"],
        "iterations": iterations,
        "runs": runs,
        "medians_us": med,
        "checks_per_second": checks_per_s,
        "round_trips_per_check": round_trips,
        "comparisons": comparisons,
        "met_faster_than_limits": all(c["faster"] for c in comparisons.values()),
        "met_one_round_trip": all(abs(round_trips["redpat_" + a] - 1.0) < 1e-9
                                  for a in ALGORITHMS),
        "runs_us": samples,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "python_ratelimit.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    lines = [
        "redpat Python rate limiters beside limits %s (Redis storage, redis-py %s): python %s, "
        "redis %s, %d checks x %d runs (median of runs, interleaved; every check allowed)"
        % (result["limits_version"], result["redis_py_version"], result["python"],
           result["redis_version"], iterations, runs),
        "",
        "%-50s %9s %10s %12s" % ("single check", "us/check", "checks/s", "round trips"),
    ]
    rows = [
        ("redpat sliding_log: limiter.check(s)", "redpat_sliding_log"),
        ("limits MovingWindowRateLimiter.hit(item, s)", "limits_moving_window"),
        ("  limits moving window hit + get_window_stats", "limits_moving_window_with_stats"),
        ("redpat fixed_window: limiter.check(s)", "redpat_fixed_window"),
        ("limits FixedWindowRateLimiter.hit(item, s)", "limits_fixed_window"),
        ("redpat sliding_window", "redpat_sliding_window"),
        ("redpat token_bucket", "redpat_token_bucket"),
        ("redpat gcra", "redpat_gcra"),
        ("redpat.asyncio gcra: await limiter.check(s)", "redpat_asyncio_gcra"),
        ("redpat gcra batch of %d (per check)" % BATCH, "redpat_batch_1000"),
    ]
    for label, k in rows:
        rt = round_trips.get(k)
        lines.append("%-50s %9.2f %10.0f %12s" % (label, med[k], checks_per_s[k],
                                                 "-" if rt is None else "%.3f" % rt))
    lines.append("")
    for (ours, theirs), c in zip(PAIRS, comparisons.values()):
        lines.append("target: redpat %s faster than %s ... %s (%.2fx the checks/s)"
                     % (ours, theirs, "met" if c["faster"] else "MISSED", c["speedup"]))
    lines.append("target: one round trip per redpat check ... %s"
                 % ("met" if result["met_one_round_trip"] else "MISSED"))
    lines += ["", "redpat's check returns the whole decision (allowed, remaining, retry_after,"
              " reset_after);", "limits' hit() returns a bool (its remaining/reset need "
              "get_window_stats(): a second round trip).", "", "per-run values (us/check):"]
    for k, v in samples.items():
        lines.append("  %-34s %s" % (k, " ".join("%.2f" % x for x in v)))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "python_ratelimit.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
