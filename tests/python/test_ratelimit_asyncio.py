"""Rate limiters through redpat.asyncio: the same decisions, batch and multi-limit checks,
the async decorator, the on_error policies with Redis down (the connect failure is handed
to the core's op, which applies the policy), and exactness under concurrent tasks."""
from __future__ import annotations

import asyncio
import socket
from typing import Awaitable, Callable, List, TypeVar

import pytest

import redpat
import redpat.asyncio as rpa

T = TypeVar("T")
ALGORITHMS = ["fixed_window", "sliding_log", "sliding_window", "token_bucket", "gcra"]


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()
    return asyncio.run(wrapper())


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "redis://127.0.0.1:%d/0" % s.getsockname()[1]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decisions(url: str, namespace: str, algorithm: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as c:
            api = c.ratelimiter("api", algorithm, limit=3, window=60.0)
            decisions = [await api.check(b"u\x00") for _ in range(4)]
            assert [d.allowed for d in decisions] == [True, True, True, False]
            assert [d.remaining for d in decisions] == [2, 1, 0, 0]
            assert isinstance(decisions[0], redpat.Decision) and decisions[0].limit == 3
            assert 0.0 < decisions[3].retry_after <= 120.0 and not decisions[3].degraded
            assert (await api.check(b"u\x00", cost=0)).remaining == 0
            await api.reset(b"u\x00")
            assert (await api.check(b"u\x00")).remaining == 2
            with pytest.raises(redpat.InvalidArgument, match="cost"):
                await api.check("u", cost=4)
    run(main)


def test_batch_and_multi(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as c:
            api = c.ratelimiter("api", "fixed_window", limit=2, window=60.0)
            out = await api.batch(["a", "b", "a", "a"], costs=[1, 2, 1, 1])
            assert [(d.allowed, d.remaining) for d in out] == [
                (True, 1), (True, 0), (True, 0), (False, 0)]
            per_second = c.ratelimiter("s", "token_bucket", limit=10, window=1.0)
            per_hour = c.ratelimiter("h", "fixed_window", limit=3, window=3600.0)
            assert (await c.ratelimit_multi([per_second, per_hour], "u", cost=3)).allowed
            refused = await c.ratelimit_multi([per_second, per_hour], "u")
            assert not refused and refused.refused_by == 1 and refused.limit == 3
            assert (await per_second.check("u", 0)).remaining == 7  # nothing consumed
            with pytest.raises(redpat.InvalidArgument, match="algorithm"):
                c.ratelimiter("x", "leaky", limit=1, window=1.0)
    run(main)


def test_async_decorator(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as c:
            api = c.ratelimiter("api", "gcra", limit=2, window=60.0)
            ran: List[int] = []

            @api.limited(key=lambda user_id: "user:%d" % user_id)
            async def fetch(user_id: int) -> int:
                await asyncio.sleep(0)
                ran.append(user_id)
                return user_id * 10

            assert await fetch(1) == 10 and await fetch(1) == 10
            with pytest.raises(redpat.RateLimited) as info:
                await fetch(1)
            assert info.value.subject == b"user:1" and info.value.retry_after > 0.0
            assert await fetch(2) == 20
            assert ran == [1, 1, 2]

            @c.ratelimited("jobs", "fixed_window", limit=1, window=60.0)
            async def job() -> str:
                return "done"

            assert await job() == "done"
            with pytest.raises(redpat.RateLimited):
                await job()
            with pytest.raises(TypeError, match="not a coroutine function"):
                @api.limited()
                def blocking() -> None:
                    pass
    run(main)


def test_redis_down_policies() -> None:
    async def main() -> None:
        down = rpa.Client(closed_port_url(), connect_timeout=0.5)
        fail_open = down.ratelimiter("a", limit=1, window=1.0, on_error="fail_open")
        fail_closed = down.ratelimiter("b", limit=1, window=1.0, on_error="fail_closed")
        report = down.ratelimiter("c", limit=1, window=1.0)
        d = await fail_open.check("u")
        assert d.allowed and d.degraded and isinstance(d.error, redpat.ConnectionError)
        assert d.error.status == "transport" and "connect" in str(d.error)
        d = await fail_closed.check("u")
        assert not d.allowed and d.degraded and isinstance(d.error, redpat.ConnectionError)
        with pytest.raises(redpat.ConnectionError):
            await report.check("u")
        assert all(d.degraded for d in await fail_open.batch(["a", "b"]))
        assert not (await down.ratelimit_multi([fail_open, fail_closed], "u")).allowed
        with pytest.raises(redpat.ConnectionError):
            await fail_open.reset("u")

        @fail_closed.limited()
        async def refused() -> None:
            raise AssertionError("must not run")

        with pytest.raises(redpat.RateLimited):
            await refused()
        # Locks keep failing with the connect error, as before.
        with pytest.raises(redpat.ConnectionError):
            await down.lock("l").acquire()
    run(main)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tasks_admit_exactly_the_limit(url: str, namespace: str, algorithm: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as c:
            api = c.ratelimiter("hammer", algorithm, limit=40, window=3600.0)
            decisions = await asyncio.gather(*(api.check("one") for _ in range(150)))
            assert sum(1 for d in decisions if d.allowed) == 40
    run(main)
