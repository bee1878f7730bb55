"""An acquire whose attempt is in doubt (issue 10, the sibling of finding 7): the SET went to
Redis, Redis ran it, and its reply never came back (core/src/lock.c attempt_failed).

- Its connection dropped: the acquire releases with the token it sent (a fresh connection),
  then raises the ConnectionError saying "the attempt in flight was released": the key is
  gone, not left held for its whole TTL with no token anywhere.
- It timed out: no release round (the server is slow or unreachable, so a release would
  most likely cost another whole timeout, and a call ends within its timeout): it raises
  the TimeoutError at once, saying the lock "may stay held up to its ttl". The key IS still
  held: the message is the honest report of it.
- A refused connect (nothing sent) fails as before, with no release round.

Both are made deterministic by a real proxy (tests/harness/delay_proxy.py, a subprocess)
between the client and a real redis-server. The SET goes through at once; its reply is
either held back for 30 s, far past the client's command timeout (--hold-replies), or, once
Redis has answered, the proxy closes the client's connection without passing it on
(--drop-replies). The release script matches neither pattern and passes at once. The key is
then looked at on a direct connection. The one timed assertion is the issue's bound: a call
ends within its timeout plus 10%."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Iterator, List

import pytest

import redpat
import redpat.asyncio as rpa

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join(os.path.dirname(HERE), "harness", "delay_proxy.py")

HOLD = 30.0  # how long the proxy holds the SET's reply: far past the command timeout
TIMEOUT = 1.0  # the client's command timeout (s)
BOUND = TIMEOUT * 1.1  # the bound on a call: its timeout plus 10%
TTL = 30  # the lock's TTL (s): an orphaned key would outlive the test
# What the proxy holds or drops: plain acquires are SET ... NX PX ... GET; the fenced
# acquire is a script whose keys include the fence counter's (<ns>:lock:{name}:fence).
PLAIN = "NX"
FENCED = ".*:fence"
# The end of a timed-out acquire's message (lock "job", TTL): what may be held, how long.
MAY_HOLD = 'may have taken lock "job": it may stay held up to its ttl (30000 ms)'
RELEASED = "; the attempt in flight was released"


class Proxy:
    """tests/harness/delay_proxy.py in a subprocess (its own event loop: the blocking client
    below blocks this one's thread). mode: "--hold-replies" (the SET's reply comes HOLD s
    late) or "--drop-replies" (the connection drops once Redis answered the SET)."""

    def __init__(self, url: str, mode: str, pattern: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, PROXY, "--hold", str(HOLD), mode, pattern,
             "--lifetime", "60", url], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().split()[0]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(params=[False, True], ids=["plain", "fenced"])
def fenced(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def held(url: str, fenced: bool) -> Iterator[Proxy]:
    """The SET runs; its reply is late past the command timeout."""
    p = Proxy(url, "--hold-replies", FENCED if fenced else PLAIN)
    yield p
    p.close()


@pytest.fixture
def dropped(url: str, fenced: bool) -> Iterator[Proxy]:
    """The SET runs; the connection drops instead of its reply."""
    p = Proxy(url, "--drop-replies", FENCED if fenced else PLAIN)
    yield p
    p.close()


def key(namespace: str, name: str = "job") -> bytes:
    return b"%s:lock:{%s}" % (namespace.encode(), name.encode())


def refused_url() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "redis://127.0.0.1:%d/0" % port


def check_fence(direct: redpat.Client, namespace: str, fenced: bool, name: str) -> None:
    if fenced:  # the script ran: the counter moved (the fence is never reused)
        assert int(direct.execute_command("GET", key(namespace, name) + b":fence")) == 1


def check_released(direct: redpat.Client, namespace: str, fenced: bool,
                   name: str = "job") -> None:
    assert int(direct.execute_command("EXISTS", key(namespace, name))) == 0, \
        "the dropped acquire's key is still held"
    check_fence(direct, namespace, fenced, name)
    assert direct.lock(name, timeout=5).acquire(blocking=False)


def check_held(direct: redpat.Client, namespace: str, fenced: bool, name: str = "job") -> None:
    """What the timed-out acquire's message reports: the SET ran, the key is held (for at
    most its TTL), by nobody who knows its token. Then it is cleaned up."""
    pttl = int(direct.execute_command("PTTL", key(namespace, name)))
    assert 0 < pttl <= TTL * 1000, pttl
    check_fence(direct, namespace, fenced, name)
    assert not direct.lock(name, timeout=5).acquire(blocking=False)
    direct.execute_command("DEL", key(namespace, name))


def check_may_hold(exc: BaseException, elapsed: float) -> None:
    assert MAY_HOLD in str(exc), str(exc)
    assert "released" not in str(exc), str(exc)
    assert elapsed <= BOUND, "%.3f s past the %.3f s bound" % (elapsed, BOUND)


@pytest.mark.parametrize("waiting", [False, True], ids=["nowait", "waiting"])
def test_timed_out_acquire_reports_what_may_be_held(url: str, namespace: str, held: Proxy,
                                                    fenced: bool, waiting: bool) -> None:
    direct = redpat.Client(url, namespace=namespace)
    client = redpat.Client(held.url, namespace=namespace, command_timeout=TIMEOUT)
    try:
        lock = client.lock("job", timeout=TTL, fenced=fenced)
        t0 = time.monotonic()
        with pytest.raises(redpat.TimeoutError) as exc:
            if waiting:  # a waiting acquire reports it, it does not retry
                lock.acquire(blocking_timeout=10)
            else:
                lock.acquire(blocking=False)
        check_may_hold(exc.value, time.monotonic() - t0)
        assert lock.token is None
        check_held(direct, namespace, fenced)
    finally:
        client.close()
        direct.close()


def test_timed_out_using_reports_what_may_be_held(url: str, namespace: str, held: Proxy,
                                                  fenced: bool) -> None:
    direct = redpat.Client(url, namespace=namespace)
    client = redpat.Client(held.url, namespace=namespace, command_timeout=TIMEOUT)
    ran: List[int] = []
    try:
        lock = client.lock("job", timeout=TTL, fenced=fenced)
        t0 = time.monotonic()
        with pytest.raises(redpat.TimeoutError) as exc:
            lock.using(lambda: ran.append(1))
        check_may_hold(exc.value, time.monotonic() - t0)
        assert ran == []
        check_held(direct, namespace, fenced)
    finally:
        client.close()
        direct.close()


@pytest.mark.parametrize("waiting", [False, True], ids=["nowait", "waiting"])
def test_dropped_acquire_releases_what_its_set_took(url: str, namespace: str, dropped: Proxy,
                                                    fenced: bool, waiting: bool) -> None:
    direct = redpat.Client(url, namespace=namespace)
    client = redpat.Client(dropped.url, namespace=namespace, command_timeout=TIMEOUT)
    try:
        lock = client.lock("job", timeout=TTL, fenced=fenced)
        t0 = time.monotonic()
        with pytest.raises(redpat.ConnectionError) as exc:
            if waiting:  # a waiting acquire reports it, it does not retry
                lock.acquire(blocking_timeout=10)
            else:
                lock.acquire(blocking=False)
        elapsed = time.monotonic() - t0
        assert str(exc.value).endswith(RELEASED), str(exc.value)
        assert elapsed <= BOUND, "%.3f s past the %.3f s bound" % (elapsed, BOUND)
        assert lock.token is None
        check_released(direct, namespace, fenced)
    finally:
        client.close()
        direct.close()


def test_dropped_using_releases_what_its_acquire_took(url: str, namespace: str,
                                                      dropped: Proxy, fenced: bool) -> None:
    direct = redpat.Client(url, namespace=namespace)
    client = redpat.Client(dropped.url, namespace=namespace, command_timeout=TIMEOUT)
    ran: List[int] = []
    try:
        lock = client.lock("job", timeout=TTL, fenced=fenced)
        with pytest.raises(redpat.ConnectionError) as exc:
            lock.using(lambda: ran.append(1))
        assert str(exc.value).endswith(RELEASED), str(exc.value)
        assert ran == []
        check_released(direct, namespace, fenced)
    finally:
        client.close()
        direct.close()


def test_asyncio_timed_out_acquire_reports_what_may_be_held(url: str, namespace: str,
                                                            held: Proxy,
                                                            fenced: bool) -> None:
    async def main() -> None:
        client = rpa.Client(held.url, namespace=namespace, command_timeout=TIMEOUT)
        try:
            lock = client.lock("job", timeout=TTL, fenced=fenced)
            t0 = time.monotonic()
            with pytest.raises(redpat.TimeoutError) as exc:
                await lock.acquire(blocking=False)
            check_may_hold(exc.value, time.monotonic() - t0)
            assert lock.token is None
            t0 = time.monotonic()
            with pytest.raises(redpat.TimeoutError) as exc:
                await lock.using(asyncio.sleep, 0)  # the same lock: its SET is held too
            check_may_hold(exc.value, time.monotonic() - t0)
        finally:
            await client.close()
    asyncio.run(main())
    direct = redpat.Client(url, namespace=namespace)
    try:
        check_held(direct, namespace, fenced)
    finally:
        direct.close()


def test_asyncio_dropped_acquire_releases_what_its_set_took(url: str, namespace: str,
                                                            dropped: Proxy,
                                                            fenced: bool) -> None:
    async def main() -> None:
        direct = rpa.Client(url, namespace=namespace)
        client = rpa.Client(dropped.url, namespace=namespace, command_timeout=TIMEOUT)
        try:
            lock = client.lock("job", timeout=TTL, fenced=fenced)
            with pytest.raises(redpat.ConnectionError) as exc:
                await lock.acquire(blocking=False)
            assert int(await direct.execute_command("EXISTS", key(namespace))) == 0, \
                "the dropped acquire's key is still held"
            assert str(exc.value).endswith(RELEASED), str(exc.value)
            assert lock.token is None
            with pytest.raises(redpat.ConnectionError) as exc:
                await lock.using(asyncio.sleep, 0)
            assert str(exc.value).endswith(RELEASED), str(exc.value)
            assert int(await direct.execute_command("EXISTS", key(namespace))) == 0
            assert await direct.lock("job", timeout=5).acquire(blocking=False)
        finally:
            await client.close()
            await direct.close()
    asyncio.run(main())


def test_refused_connect_fails_as_before() -> None:
    """Nothing was sent: the ConnectionError is the connect's own, with no release round
    (whose failure would add "may stay held" to the message)."""
    u = refused_url()
    client = redpat.Client(u, namespace="t", command_timeout=TIMEOUT)
    try:
        with pytest.raises(redpat.ConnectionError) as exc:
            client.lock("job", timeout=TTL).acquire(blocking=False)
        assert "may stay held" not in str(exc.value) and "released" not in str(exc.value), \
            str(exc.value)
    finally:
        client.close()

    async def main() -> None:
        c = rpa.Client(u, namespace="t", command_timeout=TIMEOUT)
        try:
            with pytest.raises(redpat.ConnectionError) as e:
                await c.lock("job", timeout=TTL).acquire(blocking=False)
            assert "may stay held" not in str(e.value) and "released" not in str(e.value), \
                str(e.value)
        finally:
            await c.close()
    asyncio.run(main())
