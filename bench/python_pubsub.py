"""make bench (Python pub/sub): messages per second through redpat's PubSub beside redis-py's
PubSub, sync and asyncio, in the same run against the same private server, interleaved round
by round (the order rotates every round); medians of the rounds.

Each measurement: the subscriber subscribes to a fresh channel; once the server has
confirmed, a publisher process (--publisher: a raw socket, no client library, so it costs
the subscriber's side as little CPU as possible) sends N PUBLISH commands pipelined in
batches on a connection of its own; the subscriber counts the N messages as its API hands
them out (for msg in sub.listen() / async for). The rate is (N - 1) / (time of the N-th
message - time of the first). The server's pub/sub output limit is lifted for the run so a
subscriber that falls behind is never disconnected.

    python bench/python_pubsub.py --out bench/results [--hiredis-dir DIR]

--hiredis-dir: where `hiredis` was installed (pip install --target DIR hiredis); then
redis-py is measured with its hiredis parser too (in a subprocess with PYTHONPATH=DIR, so the
other contenders keep redis-py's default pure-Python parser). Needs REDPAT_TEST_URL (run it
under tests/harness/harness.py run --), redpat and redis-py installed. REDPAT_BENCH_MESSAGES
(default 20000), REDPAT_BENCH_PAYLOAD (bytes, default 32) and REDPAT_BENCH_RUNS (default 7)
tune it. Writes python_pubsub.json and python_pubsub.txt.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlparse

BATCH = 1000            # PUBLISH commands per pipelined write of the publisher
# A measurement that takes longer has lost messages or hangs: print every thread's stack
# and exit (the harness then stops the server).
DEADLINE_S = 120

CONTENDERS = [
    # key, label, asyncio?, in a subprocess with hiredis?
    ("redpat_sync", "redpat PubSub: for msg in sub.listen()", False, False),
    ("redis_py_sync", "redis-py %s PubSub: for msg in p.listen()", False, False),
    ("redpat_asyncio", "redpat.asyncio PubSub: async for msg in sub.listen()", True, False),
    ("redis_py_asyncio", "redis-py %s asyncio PubSub: async for msg in p.listen()", True,
     False),
    ("redis_py_hiredis_sync", "redis-py %s + hiredis %s PubSub (sync)", False, True),
    ("redis_py_hiredis_asyncio", "redis-py %s + hiredis %s PubSub (asyncio)", True, True),
]


# -- the publisher ------------------------------------------------------------------------

def resp(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def publisher(url: str, channel: str, n: int, payload: int) -> int:
    """--publisher: PUBLISH channel n times, BATCH per write, each batch's replies read
    before the next is sent (bounded pipelining)."""
    u = urlparse(url)
    s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    db = int((u.path or "/0").lstrip("/") or 0)
    if db:
        s.sendall(resp(b"SELECT", str(db).encode()))
        s.recv(64)
    body = (b"x" * payload)
    one = resp(b"PUBLISH", channel.encode(), body)
    sent = 0
    while sent < n:
        k = min(BATCH, n - sent)
        s.sendall(one * k)
        # k integer replies, each ":<receivers>\r\n"
        need, buf = k, b""
        while need:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("publisher: connection closed")
            buf += chunk
            got = buf.count(b"\r\n")
            if got >= need:
                break
        sent += k
    s.close()
    return 0


def start_publisher(url: str, channel: str, n: int, payload: int) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--publisher",
                             "--url", url, "--channel", channel, "--messages", str(n),
                             "--payload", str(payload)])


# -- the subscribers ----------------------------------------------------------------------

def kind_of(msg: Any) -> str:
    """'subscribe', 'message', ... for a redis-py dict or a redpat message."""
    if isinstance(msg, dict):
        return str(msg["type"])
    k = getattr(msg, "kind", None)
    if k is None:
        k = getattr(msg, "type")
    return k if isinstance(k, str) else str(getattr(k, "name", k)).lower()


class Counter:
    """Counts messages; the publisher starts once the subscription is confirmed."""

    def __init__(self, url: str, channel: str, n: int, payload: int) -> None:
        self.url, self.channel, self.n, self.payload = url, channel, n, payload
        self.count = 0
        self.first = self.last = 0.0
        self.pub: Optional["subprocess.Popen[bytes]"] = None

    def see(self, msg: Any) -> bool:
        """True once the N-th message is in."""
        k = kind_of(msg)
        if k == "message":
            now = time.perf_counter()
            if self.count == 0:
                self.first = now
            self.count += 1
            if self.count == self.n:
                self.last = now
                return True
        elif k == "subscribe" and self.pub is None:
            self.pub = start_publisher(self.url, self.channel, self.n, self.payload)
        return False

    def rate(self) -> float:
        if self.pub is None or self.pub.wait(timeout=DEADLINE_S) != 0:
            raise RuntimeError("publisher failed")
        if self.count != self.n:
            raise RuntimeError("got %d of %d messages" % (self.count, self.n))
        return (self.n - 1) / (self.last - self.first)


@contextlib.contextmanager
def deadline(seconds: float = DEADLINE_S) -> Iterator[None]:
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def run_sync(kind: str, url: str, channel: str, n: int, payload: int) -> float:
    c = Counter(url, channel, n, payload)
    if kind == "redpat":
        import redpat
        client = redpat.Client(url)
        sub = client.pubsub()
        sub.subscribe(channel)
        for msg in sub.listen():
            if c.see(msg):
                break
        sub.close()
        client.close()
    else:
        import redis
        r = redis.Redis.from_url(url)
        p = r.pubsub()  # type: ignore[no-untyped-call]
        p.subscribe(channel)
        for msg in p.listen():
            if c.see(msg):
                break
        p.close()
        r.close()
    return c.rate()


def run_asyncio(kind: str, url: str, channel: str, n: int, payload: int) -> float:
    c = Counter(url, channel, n, payload)

    async def consume() -> None:
        if kind == "redpat":
            import redpat.asyncio as rpa
            client = rpa.Client(url)
            sub = client.pubsub()
            await sub.subscribe(channel)
            async for msg in sub.listen():
                if c.see(msg):
                    break
            await sub.close()
            await client.close()
        else:
            import redis.asyncio
            r = redis.asyncio.Redis.from_url(url)
            p = r.pubsub()
            await p.subscribe(channel)
            async for msg in p.listen():
                if c.see(msg):
                    break
            await (getattr(p, "aclose", None) or p.close)()
            await (getattr(r, "aclose", None) or r.close)()

    asyncio.run(consume())
    return c.rate()


def measure(key: str, url: str, channel: str, n: int, payload: int) -> float:
    is_async = key.endswith("_asyncio")
    kind = "redpat" if key.startswith("redpat") else "redis_py"
    with deadline():
        return (run_asyncio if is_async else run_sync)(kind, url, channel, n, payload)


def in_subprocess(key: str, pythonpath: str, url: str, channel: str, n: int,
                  payload: int) -> Tuple[float, Dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=pythonpath, PYTHONNOUSERSITE="1")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", key,
                          "--url", url, "--channel", channel, "--messages", str(n),
                          "--payload", str(payload)],
                         env=env, check=True, capture_output=True, text=True).stdout
    d = json.loads(out)
    return float(d["rate"]), dict(d["versions"])


def parser_versions() -> Dict[str, str]:
    import redis
    out = {"redis_py": redis.__version__}
    try:
        import hiredis
        out["hiredis"] = hiredis.__version__
    except ImportError:
        out["hiredis"] = ""
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="directory for the results")
    ap.add_argument("--url", default=os.environ.get("REDPAT_TEST_URL"))
    ap.add_argument("--hiredis-dir", help="where hiredis was installed (pip --target)")
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--channel", help=argparse.SUPPRESS)
    ap.add_argument("--messages", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--payload", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.url:
        ap.error("no --url and no REDPAT_TEST_URL (run under tests/harness/harness.py run --)")
    if args.publisher:
        return publisher(args.url, args.channel, args.messages, args.payload)
    if args.worker:
        rate = measure(args.worker, args.url, args.channel, args.messages, args.payload)
        json.dump({"rate": rate, "versions": parser_versions()}, sys.stdout)
        return 0
    if args.out is None:
        ap.error("--out is required")
    n = int(os.environ.get("REDPAT_BENCH_MESSAGES", "20000"))
    payload = int(os.environ.get("REDPAT_BENCH_PAYLOAD", "32"))
    runs = int(os.environ.get("REDPAT_BENCH_RUNS", "7"))

    import redis
    import redpat
    admin = redis.Redis.from_url(args.url)
    # A subscriber that falls behind must not be disconnected (the default soft limit is
    # 8 MB over 60 s): this is the benchmark's private server.
    admin.config_set("client-output-buffer-limit", "pubsub 0 0 0")
    if parser_versions()["hiredis"]:
        raise SystemExit("python_pubsub.py: hiredis is importable here: redis-py's default"
                         " parser would not be measured (install it with --target instead)")
    contenders = [c for c in CONTENDERS if not c[3] or args.hiredis_dir]
    versions: Dict[str, str] = parser_versions()
    samples: Dict[str, List[float]] = {}
    for rnd in range(runs):
        for i in range(len(contenders)):
            key, _, _, sub = contenders[(i + rnd) % len(contenders)]
            channel = "bench-ps-%s-%d" % (key, rnd)
            if sub:
                rate, sub_versions = in_subprocess(key, args.hiredis_dir, args.url, channel,
                                                   n, payload)
                versions["hiredis"] = sub_versions["hiredis"]
            else:
                rate = measure(key, args.url, channel, n, payload)
            samples.setdefault(key, []).append(rate)

    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio_sync = med["redpat_sync"] / med["redis_py_sync"]
    ratio_async = med["redpat_asyncio"] / med["redis_py_asyncio"]
    result: Dict[str, Any] = {
        "bench": "python_pubsub",
        "python": platform.python_version(),
        "redpat_version": redpat.__version__,
        "redis_py_version": redis.__version__,
        "hiredis_version": versions.get("hiredis") or None,
        "redis_version": admin.info("server")["redis_version"],
        "messages": n,
        "payload_bytes": payload,
        "publisher_batch": BATCH,
        "runs": runs,
        "medians_msgs_per_s": med,
        "redpat_over_redis_py_sync": round(ratio_sync, 4),
        "redpat_over_redis_py_asyncio": round(ratio_async, 4),
        "runs_msgs_per_s": samples,
    }
    admin.close()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "python_pubsub.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    lines = [
        "redpat Python pub/sub benchmark: python %s, redis %s, redis-py %s, %d messages of %d"
        " bytes x %d runs" % (result["python"], result["redis_version"], redis.__version__, n,
                              payload, runs),
        "(one channel; a raw-socket publisher pipelines PUBLISH in batches of %d on its own"
        " connection; the subscriber counts every message; all contenders in one run,"
        " interleaved round by round; medians of the runs)" % BATCH,
        "",
        "%-62s %12s %10s" % ("subscriber", "messages/s", "vs redis-py"),
    ]
    for key, label, is_async, _ in contenders:
        ref = med["redis_py_asyncio" if is_async else "redis_py_sync"]
        if "%s" in label:
            label = label % ((redis.__version__, versions.get("hiredis"))
                             if "hiredis" in key else (redis.__version__,))
        lines.append("%-62s %12.0f %9.2fx" % (label, med[key], med[key] / ref))
    lines += [
        "",
        "redpat / redis-py (default parser): sync %.2fx, asyncio %.2fx" % (ratio_sync,
                                                                            ratio_async),
        "",
        "per-run values (messages/s):",
    ]
    for k, v in samples.items():
        lines.append("  %-26s %s" % (k, " ".join("%.0f" % x for x in v)))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "python_pubsub.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
