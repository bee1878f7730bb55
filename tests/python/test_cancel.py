"""Cancellation with a request in flight (issue 10, finding 7): an asyncio acquire cancelled
after Redis ran its SET, but before the reply came, must not leave the key held for its
whole TTL with no token in the handle. The op releases it (the release script, with the
token it sent, on a fresh connection) before the CancelledError goes on.

"Redis ran the SET but its reply has not come" is made deterministic by a real proxy
(tests/harness/delay_proxy.py) between the client and a real redis-server: the SET goes
through at once, its reply is held back for 30 s; the test sees the key in Redis (on a
direct connection), then cancels. No mock of Redis."""
from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Awaitable, Callable, Coroutine, List, TypeVar

import pytest

import redpat.asyncio as rpa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))

from delay_proxy import DelayProxy  # noqa: E402

T = TypeVar("T")

HOLD = 30.0  # how long the proxy holds a reply back: far longer than any test here
TTL = 30  # the lock's TTL: an orphaned key would outlive the test
GONE_WITHIN = 1.0  # seconds: how soon after the cancellation the key must be gone
# What the proxy holds: plain and Redlock acquires are SET ... NX PX ...; the fenced
# acquire is a script whose keys include the fence counter's (<ns>:lock:{name}:fence). The
# release script (the compensation) matches neither: its reply is not held.
PLAIN = rb"NX"
FENCED = rb".*:fence"


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def key(namespace: str, name: bytes = b"job") -> bytes:
    return b"%s:lock:{%s}" % (namespace.encode(), name)


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    """Polls check until it is true (True) or within seconds passed (False)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        if await check():
            return True
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.01)


async def exists(clients: List[rpa.Client], k: bytes) -> List[int]:
    return [int(await c.execute_command("EXISTS", k)) for c in clients]


async def cancel_and_wait(task: "asyncio.Future[Any]") -> float:
    """Cancels task; checks it raises CancelledError; returns how long that took."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return loop.time() - t0


@pytest.mark.parametrize("fenced", [False, True], ids=["plain", "fenced"])
@pytest.mark.parametrize("waiting", [False, True], ids=["nowait", "waiting"])
def test_cancel_after_the_set_ran_releases_the_key(url: str, namespace: str, fenced: bool,
                                                    waiting: bool) -> None:
    async def main() -> None:
        proxy = await DelayProxy.start(url, HOLD, hold_replies=FENCED if fenced else PLAIN)
        direct = rpa.Client(url, namespace=namespace)
        client = rpa.Client(proxy.url, namespace=namespace)
        try:
            lock = client.lock("job", timeout=TTL, fenced=fenced)
            task = asyncio.ensure_future(
                lock.acquire(blocking_timeout=10) if waiting else lock.acquire(blocking=False))
            # Redis ran the SET (the key is there) and its reply is held by the proxy
            assert await eventually(lambda: _true(exists([direct], key(namespace)), [1]), 5)
            assert proxy.replies_held == 1
            elapsed = await cancel_and_wait(task)
            assert elapsed < HOLD  # the CancelledError did not wait for the held reply
            assert lock.token is None
            assert await eventually(lambda: _true(exists([direct], key(namespace)), [0]),
                                    GONE_WITHIN), "the cancelled acquire's key is still held"
            if fenced:  # the script ran: the counter moved (the fence is never reused)
                assert int(await direct.execute_command("GET", key(namespace) + b":fence")) == 1
            # nothing stands in another acquirer's way
            assert await direct.lock("job", timeout=5).acquire(blocking=False)
        finally:
            await client.close()
            await direct.close()
            await proxy.close()
    run(main)


@pytest.mark.parametrize("fenced", [False, True], ids=["plain", "fenced"])
def test_cancel_before_the_set_reached_redis_leaves_nothing(url: str, namespace: str,
                                                            fenced: bool) -> None:
    async def main() -> None:
        proxy = await DelayProxy.start(url, HOLD, hold_requests=FENCED if fenced else PLAIN)
        direct = rpa.Client(url, namespace=namespace)
        client = rpa.Client(proxy.url, namespace=namespace)
        try:
            lock = client.lock("job", timeout=TTL, fenced=fenced)
            task = asyncio.ensure_future(lock.acquire(blocking=False))
            await asyncio.wait_for(proxy.holding.wait(), 5)  # the SET waits in the proxy
            elapsed = await cancel_and_wait(task)
            assert elapsed < HOLD
            assert lock.token is None
            # the held SET was dropped with its connection: it never runs
            await asyncio.sleep(0.2)
            assert await exists([direct], key(namespace)) == [0]
            assert await exists([direct], key(namespace) + b":fence") == [0]
            assert await direct.lock("job", timeout=5).acquire(blocking=False)
        finally:
            await client.close()
            await direct.close()
            await proxy.close()
    run(main)


def test_cancel_during_the_backoff_leaves_the_holder_alone(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            holder = client.lock("job", timeout=TTL)
            assert await holder.acquire(blocking=False)
            waiter = client.lock("job", timeout=TTL)
            task = asyncio.ensure_future(waiter.acquire(blocking_timeout=10, retry_min=0.05,
                                                        retry_max=0.1))
            await asyncio.sleep(0.3)  # a few busy attempts: it sleeps between them
            elapsed = await cancel_and_wait(task)
            assert elapsed < 1.0
            assert waiter.token is None and await holder.owned()
            await holder.release()
    run(main)


def test_cancelled_redlock_acquire_releases_every_node(five: Any, namespace: str) -> None:
    """Two of three nodes ran the SET but their replies are held (no quorum has answered:
    the round is still on); the third answered. Cancelled, the op deletes the key on all
    three."""
    urls = five.urls[:3]

    async def main() -> None:
        proxy = await DelayProxy.start(urls[:2], HOLD, hold_replies=PLAIN)
        direct = [rpa.Client(u, namespace=namespace) for u in urls]
        for d in direct:
            await d.execute_command("DEL", key(namespace))
        client = rpa.Client(proxy.urls + urls[2:], namespace=namespace)
        try:
            lock = client.redlock("job", timeout=TTL, node_timeout=10)
            task = asyncio.ensure_future(lock.acquire(blocking=False))
            assert await eventually(lambda: _true(exists(direct, key(namespace)), [1, 1, 1]), 5)
            elapsed = await cancel_and_wait(task)
            assert elapsed < HOLD
            assert lock.token is None
            assert await eventually(lambda: _true(exists(direct, key(namespace)), [0, 0, 0]),
                                    GONE_WITHIN), "a node still holds the cancelled acquire's key"
        finally:
            await client.close()
            for d in direct:
                await d.close()
            await proxy.close()
    run(main)


def test_cancelled_using_releases_the_key_its_acquire_took(url: str, namespace: str) -> None:
    async def main() -> None:
        proxy = await DelayProxy.start(url, HOLD, hold_replies=PLAIN)
        direct = rpa.Client(url, namespace=namespace)
        client = rpa.Client(proxy.url, namespace=namespace)
        ran: List[int] = []

        async def job() -> None:
            ran.append(1)

        try:
            lock = client.lock("job", timeout=TTL)
            task = asyncio.ensure_future(lock.using(job))
            assert await eventually(lambda: _true(exists([direct], key(namespace)), [1]), 5)
            elapsed = await cancel_and_wait(task)
            assert elapsed < HOLD and ran == []
            assert await eventually(lambda: _true(exists([direct], key(namespace)), [0]),
                                    GONE_WITHIN), "the cancelled using's key is still held"
            assert await direct.lock("job", timeout=5).acquire(blocking=False)
        finally:
            await client.close()
            await direct.close()
            await proxy.close()
    run(main)


async def _true(got: Awaitable[List[int]], want: List[int]) -> bool:
    return await got == want
