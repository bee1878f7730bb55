"""A loopback proxy in front of a real redis-server that holds chosen commands back, for
the cancellation tests: it makes "Redis ran the SET but its reply has not come" (and "the
SET never reached Redis") deterministic, with no mock of Redis.

Every command a client sends is parsed (RESP arrays of bulk strings, as every redpat
driver sends). A command with an argument matching ``hold_replies`` (a regular expression,
matched against each whole argument) goes to the server at once, but its reply, and every
reply after it on that connection (order is kept), is held for ``hold`` seconds. A command
with an argument matching ``hold_requests`` is itself held ``hold`` seconds before it is
forwarded (with everything after it on that connection); if the client hangs up meanwhile
it is dropped, never forwarded. A command with an argument matching ``drop_replies`` goes
to the server at once, and once its reply is in (so Redis has run it), the proxy closes the
client's connection without passing that reply (nor anything after it): "the connection
dropped with the SET unanswered", made deterministic. ``drop_replies`` wins over
``hold_replies``. Counters (``replies_held``, ``requests_held``, ``replies_dropped``) and
the asyncio event ``holding`` (set by any of them) let a test wait until the proxy did
something.

In process (an asyncio test):

    proxy = await DelayProxy.start(url, hold_replies=rb"NX")
    ... proxy.url ...
    await proxy.close()

From the command line (the OpenResty tests):

    python3 tests/harness/delay_proxy.py --hold 30 --hold-replies NX URL[,URL...]
    python3 tests/harness/delay_proxy.py --drop-replies NX URL

prints one line, `<proxy URLs, ','-joined> <pid>`, then serves until killed, or for
--lifetime seconds at most (default 120).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from typing import Deque, List, Optional, Pattern, Set, Tuple
from urllib.parse import urlparse
import collections

CRLF = b"\r\n"

# What the proxy does with a reply (one per command forwarded, in order).
PASS, HOLD, DROP = 0, 1, 2


def parse_command(buf: bytes, pos: int) -> Optional[Tuple[List[bytes], int]]:
    """The command (its arguments) starting at buf[pos] and where it ends; None while it is
    incomplete. ValueError for anything but an array of bulk strings."""
    eol = buf.find(CRLF, pos)
    if eol < 0:
        return None
    if buf[pos:pos + 1] != b"*":
        raise ValueError("not a RESP array: %r" % buf[pos:pos + 16])
    n, at, args = int(buf[pos + 1:eol]), eol + 2, []
    for _ in range(n):
        eol = buf.find(CRLF, at)
        if eol < 0:
            return None
        if buf[at:at + 1] != b"$":
            raise ValueError("not a bulk string: %r" % buf[at:at + 16])
        size = int(buf[at + 1:eol])
        end = eol + 2 + size
        if len(buf) < end + 2:
            return None
        args.append(buf[eol + 2:end])
        at = end + 2
    return args, at


def reply_end(buf: bytes, pos: int) -> Optional[int]:
    """Where the RESP2/RESP3 value starting at buf[pos] ends; None while incomplete."""
    if pos >= len(buf):
        return None
    eol = buf.find(CRLF, pos)
    if eol < 0:
        return None
    kind = buf[pos:pos + 1]
    if kind in b"+-:_,#(":
        return eol + 2
    n = int(buf[pos + 1:eol])
    if kind in b"$=!":
        end = eol + 2 + max(n, 0) + (2 if n >= 0 else 0)
        return end if len(buf) >= end else None
    at: Optional[int] = eol + 2
    for _ in range(max(n * 2 if kind in b"%|" else n, 0)):
        at = reply_end(buf, at) if at is not None else None
        if at is None:
            return None
    return at


class DelayProxy:
    """One listening port per upstream server (urls[i] -> self.urls[i])."""

    def __init__(self, hold: float, hold_replies: Optional[Pattern[bytes]],
                 hold_requests: Optional[Pattern[bytes]],
                 drop_replies: Optional[Pattern[bytes]] = None) -> None:
        self.hold = hold
        self._reply_re = hold_replies
        self._request_re = hold_requests
        self._drop_re = drop_replies
        self.urls: List[str] = []
        self.replies_held = 0
        self.requests_held = 0
        self.replies_dropped = 0
        self.holding = asyncio.Event()  # set once anything was held
        self._servers: List[asyncio.AbstractServer] = []
        self._tasks: Set["asyncio.Future[None]"] = set()

    @property
    def url(self) -> str:
        return self.urls[0]

    @classmethod
    async def start(cls, urls: "str | List[str]", hold: float = 30.0,
                    hold_replies: Optional[bytes] = None,
                    hold_requests: Optional[bytes] = None,
                    drop_replies: Optional[bytes] = None) -> "DelayProxy":
        self = cls(hold, re.compile(hold_replies) if hold_replies else None,
                   re.compile(hold_requests) if hold_requests else None,
                   re.compile(drop_replies) if drop_replies else None)
        for url in [urls] if isinstance(urls, str) else urls:
            u = urlparse(url)
            upstream = (u.hostname or "127.0.0.1", u.port or 6379)

            def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter,
                        upstream: Tuple[str, int] = upstream) -> None:
                task = asyncio.ensure_future(self._serve(r, w, upstream))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            srv = await asyncio.start_server(handler, "127.0.0.1", 0)
            self._servers.append(srv)
            port = srv.sockets[0].getsockname()[1]
            self.urls.append("redis://127.0.0.1:%d%s" % (port, u.path or "/0"))
        return self

    def _matches(self, rx: Optional[Pattern[bytes]], args: List[bytes]) -> bool:
        return rx is not None and any(rx.fullmatch(a) for a in args)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     upstream: Tuple[str, int]) -> None:
        up_r, up_w = await asyncio.open_connection(*upstream)
        commands: "asyncio.Queue[Optional[List[bytes]]]" = asyncio.Queue()
        hangup = asyncio.Event()
        owed: Deque[int] = collections.deque()  # per reply to come: PASS, HOLD or DROP

        async def read_client() -> None:
            buf = b""
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                pos = 0
                while True:
                    got = parse_command(buf, pos)
                    if got is None:
                        break
                    args, pos = got
                    await commands.put(args)
                buf = buf[pos:]
            hangup.set()
            await commands.put(None)

        async def to_server() -> None:
            while True:
                args = await commands.get()
                if args is None:
                    break
                if self._matches(self._request_re, args):
                    self.requests_held += 1
                    self.holding.set()
                    try:
                        await asyncio.wait_for(hangup.wait(), self.hold)
                    except asyncio.TimeoutError:
                        pass
                    if hangup.is_set():
                        break  # the client gave up: the command never reaches the server
                owed.append(DROP if self._matches(self._drop_re, args) else
                            HOLD if self._matches(self._reply_re, args) else PASS)
                up_w.write(b"*%d\r\n" % len(args) + b"".join(
                    b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
                await up_w.drain()
            up_w.close()

        async def to_client() -> None:
            buf = b""
            while True:
                data = await up_r.read(65536)
                if not data:
                    break
                buf += data
                pos = 0
                while True:
                    end = reply_end(buf, pos)
                    if end is None:
                        break
                    fate = owed.popleft() if owed else PASS
                    if fate == DROP:  # Redis ran it; the client never hears: hang up
                        self.replies_dropped += 1
                        self.holding.set()
                        writer.close()
                        up_w.close()
                        return
                    if fate == HOLD:  # this reply, and the ones behind it, wait
                        self.replies_held += 1
                        self.holding.set()
                        try:
                            await asyncio.wait_for(hangup.wait(), self.hold)
                        except asyncio.TimeoutError:
                            pass
                    if not writer.is_closing():
                        writer.write(buf[pos:end])
                    pos = end
                buf = buf[pos:]
                if not writer.is_closing():
                    await writer.drain()
            writer.close()

        try:
            await asyncio.gather(read_client(), to_server(), to_client())
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            up_w.close()

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        for srv in self._servers:
            await srv.wait_closed()


async def main_async(urls: List[str], hold: float, hold_replies: Optional[str],
                     hold_requests: Optional[str], lifetime: float,
                     drop_replies: Optional[str] = None) -> None:
    proxy = await DelayProxy.start(urls, hold,
                                   hold_replies.encode() if hold_replies else None,
                                   hold_requests.encode() if hold_requests else None,
                                   drop_replies.encode() if drop_replies else None)
    print("%s %d" % (",".join(proxy.urls), os.getpid()), flush=True)
    await asyncio.sleep(lifetime)
    await proxy.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hold", type=float, default=30.0)
    ap.add_argument("--hold-replies", default=None)
    ap.add_argument("--hold-requests", default=None)
    ap.add_argument("--drop-replies", default=None)
    ap.add_argument("--lifetime", type=float, default=120.0)
    ap.add_argument("urls")
    args = ap.parse_args()
    asyncio.run(main_async(args.urls.split(","), args.hold, args.hold_replies,
                           args.hold_requests, args.lifetime, args.drop_replies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
