"""Hostile servers (tests/harness/hostile_server.py), sync and asyncio: a reply bomb ends at
once with ProtocolError naming max_reply_size and the process' memory stays bounded; a
trickling or silent server (in the AUTH handshake too) ends the call as TimeoutError within
the command timeout + 10% (issue 10's bound), for a lock acquire and a rate-limit check."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any, Callable, Iterator, Optional

import pytest

import redpat
import redpat.asyncio as rpa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))

from hostile_server import HostileServers  # noqa: E402

TIMEOUT = 1.0
BOUND = TIMEOUT * 1.1
RSS_GROWTH_MAX_KB = 64 * 1024
STREAM_CAP = 1 << 20  # bombs that stream need a cap below the RSS bound
OPS = ["command", "acquire", "check"]

BOMBS = [  # server, password, max_reply_size, what the message names
    ("bomb_array", None, None, "an array of 2147483647 elements"),
    ("bomb_array", "pw", None, "an array of 2147483647 elements"),
    ("bomb_array_100m", None, None, "an array of 100000000 elements"),
    ("bomb_bulk", None, None, "a string of 2147483647 bytes"),
    ("bomb_handshake", "pw", None, "an array of 2147483647 elements"),
    ("bomb_nested", None, STREAM_CAP, "max_reply_size"),
    ("bomb_line", None, STREAM_CAP, "bytes of an unfinished item"),
]
STALLS = [  # server, password
    ("trickle", None), ("trickle", "pw"), ("trickle_handshake", "pw"), ("silent", None),
    ("silent", "pw"), ("slow_ok", "pw"),  # AUTH and request each under the timeout, not both
]


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServers]:
    with HostileServers() as hs:
        yield hs


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/self/status" % field)


def reset_peak() -> None:
    """Resets VmHWM to the current RSS (Linux >= 4.0), so the peak measured is this call's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def client_kwargs(cap: Optional[int]) -> Any:
    kw: Any = dict(namespace="hostile", command_timeout=TIMEOUT, connect_timeout=TIMEOUT)
    if cap is not None:
        kw["max_reply_size"] = cap
    return kw


def sync_op(c: redpat.Client, op: str) -> Any:
    if op == "command":
        return c.execute_command("PING")
    if op == "acquire":
        return c.lock("res", timeout=10).acquire(blocking=False)
    return c.ratelimiter("api", limit=10, window=1.0).check("u")


async def async_op(c: rpa.Client, op: str) -> Any:
    if op == "command":
        return await c.execute_command("PING")
    if op == "acquire":
        return await c.lock("res", timeout=10).acquire(blocking=False)
    return await c.ratelimiter("api", limit=10, window=1.0).check("u")


def sync_call(url: str, cap: Optional[int], op: str) -> Callable[[], Any]:
    def call() -> Any:
        c = redpat.Client(url, **client_kwargs(cap))
        try:
            return sync_op(c, op)
        finally:
            c.close()
    return call


def async_call(url: str, cap: Optional[int], op: str) -> Callable[[], Any]:
    def call() -> Any:
        async def main() -> Any:
            async with rpa.Client(url, **client_kwargs(cap)) as c:
                return await async_op(c, op)
        return asyncio.run(main())
    return call


FLAVOURS = {"sync": sync_call, "asyncio": async_call}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("server,password,cap,what", BOMBS)
def test_bomb(hostile: HostileServers, flavour: str, op: str, server: str,
              password: Optional[str], cap: Optional[int], what: str) -> None:
    call = FLAVOURS[flavour](hostile.url(server, password), cap, op)
    reset_peak()
    before = status_kb("VmRSS")
    with pytest.raises(redpat.ProtocolError) as info:
        call()
    growth = status_kb("VmHWM") - before
    assert "max_reply_size" in str(info.value) and what in str(info.value), str(info.value)
    assert growth < RSS_GROWTH_MAX_KB, "peak RSS grew by %d kB" % growth


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("op", ["acquire", "check"])
@pytest.mark.parametrize("server,password", STALLS)
def test_deadline(hostile: HostileServers, flavour: str, op: str, server: str,
                  password: Optional[str]) -> None:
    call = FLAVOURS[flavour](hostile.url(server, password), None, op)
    t0 = time.monotonic()
    with pytest.raises(redpat.TimeoutError):
        call()
    took = time.monotonic() - t0
    assert took <= BOUND, "took %.3f s for a %.1f s timeout" % (took, TIMEOUT)


def test_max_reply_size_checked() -> None:
    with pytest.raises(redpat.InvalidArgument, match="max_reply_size"):
        redpat.Client("redis://127.0.0.1:1", max_reply_size=1023)
    with pytest.raises(redpat.InvalidArgument, match="max_reply_size"):
        rpa.Client("redis://127.0.0.1:1", max_reply_size=1023)
    redpat.Client("redis://127.0.0.1:1", max_reply_size=1024).close()
