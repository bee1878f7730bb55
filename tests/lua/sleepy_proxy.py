"""Makes Redis servers answer a fixed time after being ASKED, for the Lua frontends' proof
that a round over several targets costs about its slowest target, not the sum.

A `DEBUG SLEEP 0.1` sent to five servers at once would make them all slow at the same
moment, which a driver that asks them one after the other pays only once too. This proxy
(one loopback port per server) puts a real `DEBUG SLEEP <s>` in front of every batch of
commands a client sends, on the same upstream connection (pipelined), and drops that
command's `+OK` from the replies: each server then answers each request <s> seconds after
it arrived. A sequential driver pays <s> per target; a parallel one about <s> in all.

    python3 tests/lua/sleepy_proxy.py --sleep 0.1 URL[,URL...]

prints one line, `<proxy URLs, ','-joined> <pid>`, then serves until killed, or for
--lifetime seconds at most (default 120: it never outlives a test run for long). Only for
tests: commands are RESP arrays (as every redpat driver sends).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
from typing import Deque, List, Optional, Tuple
from urllib.parse import urlparse

CRLF = b"\r\n"


def resp_end(buf: bytes, pos: int) -> Optional[int]:
    """Where the RESP value starting at pos ends, or None while it is incomplete."""
    if pos >= len(buf):
        return None
    eol = buf.find(CRLF, pos)
    if eol < 0:
        return None
    kind = buf[pos:pos + 1]
    if kind in (b"+", b"-", b":"):
        return eol + 2
    n = int(buf[pos + 1:eol])
    if kind == b"$":
        end = eol + 2 + max(n, 0) + (2 if n >= 0 else 0)
        return end if len(buf) >= end else None
    if kind == b"*":
        p: Optional[int] = eol + 2
        for _ in range(max(n, 0)):
            p = resp_end(buf, p)  # type: ignore[arg-type]
            if p is None:
                return None
        return p
    raise ValueError("not RESP: %r" % buf[pos:pos + 16])


def resp_command(*args: str) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)


async def serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       upstream: Tuple[str, int], sleep_s: float) -> None:
    up_r, up_w = await asyncio.open_connection(*upstream)
    sleep_cmd = resp_command("DEBUG", "SLEEP", "%g" % sleep_s)
    owed: Deque[bool] = collections.deque()  # per reply to come: True = ours (drop it)

    async def client_to_server() -> None:
        buf = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buf += data
            pos, count = 0, 0
            while True:
                end = resp_end(buf, pos)
                if end is None:
                    break
                pos, count = end, count + 1
            if count:
                owed.append(True)
                owed.extend([False] * count)
                up_w.write(sleep_cmd + buf[:pos])
                await up_w.drain()
                buf = buf[pos:]
        up_w.close()

    async def server_to_client() -> None:
        buf = b""
        while True:
            data = await up_r.read(65536)
            if not data:
                break
            buf += data
            out, pos = b"", 0
            while True:
                end = resp_end(buf, pos)
                if end is None:
                    break
                if not (owed and owed.popleft()):
                    out += buf[pos:end]
                pos = end
            buf = buf[pos:]
            if out:
                writer.write(out)
                await writer.drain()
        writer.close()

    try:
        await asyncio.gather(client_to_server(), server_to_client())
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        up_w.close()


async def main_async(urls: List[str], sleep_s: float, lifetime: float) -> None:
    servers, mine = [], []
    for url in urls:
        u = urlparse(url)
        upstream = (u.hostname or "127.0.0.1", u.port or 6379)

        def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                    upstream: Tuple[str, int] = upstream) -> "asyncio.Future[None]":
            return asyncio.ensure_future(serve_client(r, w, upstream, sleep_s))

        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        servers.append(srv)
        mine.append("redis://127.0.0.1:%d%s" % (port, u.path or "/0"))
    print("%s %d" % (",".join(mine), os.getpid()), flush=True)
    await asyncio.sleep(lifetime)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sleep", type=float, default=0.1)
    ap.add_argument("--lifetime", type=float, default=120.0)
    ap.add_argument("urls")
    args = ap.parse_args()
    asyncio.run(main_async(args.urls.split(","), args.sleep, args.lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
