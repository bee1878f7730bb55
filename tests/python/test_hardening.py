"""Causes kept (issue 10, finding 3), in both Python drivers: a rate-limit check whose AUTH
was refused (a wrong password against a server with requirepass) raises Redis' WRONGPASS
as a ResponseError -- never "ProtocolError: missing reply" -- and a degraded decision
carries the same error. The sync client goes through the C driver's own handshake; asyncio
runs the core's handshake op over its own sockets. The matrix cannot express these (its
URLs carry no password), so they live here, on a server of the test's own."""
from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

import redpat
import redpat.asyncio as rpa
from harness import RedisServer

PASSWORD = "sekret"


@pytest.fixture
def guarded(server: RedisServer) -> Iterator[RedisServer]:
    """The test's own server, with requirepass set."""
    c = redpat.Client(server.url)
    c.execute_command("CONFIG", "SET", "requirepass", PASSWORD)
    c.close()
    yield server


def url_with(server: RedisServer, password: str) -> str:
    return "redis://:%s@127.0.0.1:%d/0" % (password, server.port)


def assert_wrongpass(exc: BaseException) -> None:
    assert isinstance(exc, redpat.AuthenticationError), repr(exc)  # issue 11, item 6
    assert "WRONGPASS" in str(exc) and "AUTH" in str(exc), str(exc)
    assert "missing reply" not in str(exc)


def test_sync_wrong_password(guarded: RedisServer) -> None:
    c = redpat.Client(url_with(guarded, "wrong"))
    try:
        report = c.ratelimiter("r", limit=5, window=10.0, algorithm="fixed_window")
        with pytest.raises(redpat.RedpatError) as info:
            report.check("u")
        assert_wrongpass(info.value)
        with pytest.raises(redpat.RedpatError) as info:
            report.batch(["a", "b"])
        assert_wrongpass(info.value)
        fail_open = c.ratelimiter("o", limit=5, window=10.0, on_error="fail_open")
        d = fail_open.check("u")
        assert d.allowed and d.degraded
        assert_wrongpass(d.error)
        with pytest.raises(redpat.RedpatError) as info:
            c.lock("k", timeout=1.0).acquire()
        assert_wrongpass(info.value)
    finally:
        c.close()
    ok = redpat.Client(url_with(guarded, PASSWORD))
    try:
        d = ok.ratelimiter("r", limit=5, window=10.0, algorithm="fixed_window").check("u")
        assert d.allowed and not d.degraded and d.remaining == 4
    finally:
        ok.close()


def test_asyncio_wrong_password(guarded: RedisServer) -> None:
    async def main() -> None:
        c = rpa.Client(url_with(guarded, "wrong"))
        report = c.ratelimiter("r", limit=5, window=10.0, algorithm="fixed_window")
        with pytest.raises(redpat.RedpatError) as info:
            await report.check("u")
        assert_wrongpass(info.value)
        with pytest.raises(redpat.RedpatError) as info:
            await report.batch(["a", "b"])
        assert_wrongpass(info.value)
        fail_closed = c.ratelimiter("c", limit=5, window=10.0, on_error="fail_closed")
        d = await fail_closed.check("u")
        assert not d.allowed and d.degraded
        assert_wrongpass(d.error)
        ok = rpa.Client(url_with(guarded, PASSWORD))
        d = await ok.ratelimiter("r", limit=5, window=10.0, algorithm="fixed_window").check("u")
        assert d.allowed and not d.degraded and d.remaining == 4
    asyncio.run(main())
