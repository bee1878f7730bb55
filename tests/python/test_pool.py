"""max_connections: a Client never has more than N connections open to each server (its
pool and its subscriptions together), sync and asyncio. A caller waits for a free one up to
its command_timeout, then gets ConnectionError "too many connections"; a lock acquire that
sleeps between attempts holds none meanwhile. And an asyncio Client used under a second
asyncio.run drops the first loop's connections and reconnects.

Connections are counted on a server of the test's own: INFO's total_connections_received
(every connection it ever accepted, so a peak cannot slip between two samples) minus the
observer's own one."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest
import redis

import redpat
import redpat.asyncio
from redpat.errors import ConnectionError as RedpatConnectionError, InvalidArgument

from harness import RedisServer

N = 4


@pytest.fixture
def observer(server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(server.url)
    r.ping()  # its one connection is open before anything is counted
    yield r
    r.close()


def accepted(observer: redis.Redis) -> int:
    """Connections the server has accepted so far, the observer's own one left out."""
    return int(observer.info("stats")["total_connections_received"]) - 1


def eventually(what: Callable[[], bool], why: str) -> None:
    """Waits for a condition of the server's state (a wait, not a timed assertion: the
    deadline only ends a test that would otherwise hang)."""
    end = time.monotonic() + 30
    while not what():
        assert time.monotonic() < end, why
        time.sleep(0.005)


def lock_attempts(observer: redis.Redis) -> int:
    """How many SETs and scripts the server has run (each lock attempt is one)."""
    stats = observer.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items()
               if k in ("cmdstat_set", "cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall"))


# -- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [redpat.Client, redpat.asyncio.Client])
def test_max_connections_is_checked(make: Any, url: str) -> None:
    assert make(url, max_connections=None) is not None  # the default: unbounded
    for bad in (0, -1):
        with pytest.raises(InvalidArgument, match=r"max_connections must be >= 1 \(got %d\)"
                           % bad):
            make(url, max_connections=bad)
    for wrong in (True, 2.5, "4"):
        with pytest.raises(TypeError, match="max_connections must be an int or None"):
            make(url, max_connections=wrong)


# -- sync ------------------------------------------------------------------------------------


def test_threads_waiting_on_one_lock_share_max_connections(server: RedisServer,
                                                           observer: redis.Redis) -> None:
    client = redpat.Client(server.url, max_connections=N, command_timeout=30)
    before = accepted(observer)
    got: List[int] = []
    errors: List[BaseException] = []

    def worker(i: int) -> None:
        try:
            lock = client.lock("one", timeout=30)
            with lock:
                got.append(i)
                time.sleep(0.002)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(got) == list(range(100))  # every one acquired
    assert accepted(observer) - before <= N
    client.close()


def test_sync_waiting_beyond_command_timeout_is_a_clear_error(server: RedisServer) -> None:
    client = redpat.Client(server.url, max_connections=1, command_timeout=0.3)
    sub = client.pubsub()
    sub.subscribe("news")  # a subscription holds its connection: the only one
    with pytest.raises(RedpatConnectionError,
                       match=r"too many connections: all 1 of the client's connections "
                             r"\(max_connections=1\) stayed in use for 300 ms "
                             r"\(command_timeout\)"):
        client.execute_command("PING")
    # a limiter's on_error says what no connection means, as for an unreachable server
    decision = client.ratelimiter("r", "gcra", limit=1, window=1,
                                  on_error="fail_open").check("u")
    assert decision.allowed and decision.degraded
    assert isinstance(decision.error, RedpatConnectionError)
    other = client.pubsub()
    with pytest.raises(RedpatConnectionError, match="too many connections"):
        other.subscribe("more")  # a second subscription: no place for it either
    other.close()
    sub.close()
    assert client.execute_command("PING") == b"PONG"  # its connection is free again
    client.close()


def test_sync_sleeping_acquire_holds_no_connection(server: RedisServer,
                                                   observer: redis.Redis) -> None:
    holder = redpat.Client(server.url)
    held = holder.lock("one", timeout=60)
    assert held.acquire()
    client = redpat.Client(server.url, max_connections=1, command_timeout=5)
    outcome: List[bool] = []
    waiter = threading.Thread(
        target=lambda: outcome.append(client.lock("one", timeout=30).acquire(
            retry_min=0.01, retry_max=0.02)))
    start = lock_attempts(observer)
    waiter.start()
    eventually(lambda: lock_attempts(observer) >= start + 3, "the waiter never retried")
    for _ in range(20):  # each gets the connection while the acquire sleeps
        assert client.execute_command("PING") == b"PONG"
    assert waiter.is_alive()  # it was waiting all along
    held.release()
    waiter.join()
    assert outcome == [True]
    holder.close()
    client.close()


def test_sync_using_lends_its_connection_to_its_function(server: RedisServer) -> None:
    client = redpat.Client(server.url, max_connections=1, command_timeout=1)
    lock = client.lock("using", timeout=10)

    def work(n: int) -> bytes:
        inner = client.lock("inner", timeout=10)  # the same client, within the one connection
        assert inner.using(lambda: client.execute_command("PING")) == b"PONG"
        out: bytes = client.execute_command("ECHO", b"x%d" % n)
        return out

    assert lock.using(work, 7) == b"x7"
    assert not lock.locked()  # released over the connection it took back
    client.close()


# -- asyncio ---------------------------------------------------------------------------------


def test_tasks_waiting_on_one_lock_share_max_connections(server: RedisServer,
                                                         observer: redis.Redis) -> None:
    async def main() -> List[int]:
        client = redpat.asyncio.Client(server.url, max_connections=N, command_timeout=30)
        got: List[int] = []

        async def worker(i: int) -> None:
            async with client.lock("one", timeout=30):
                got.append(i)
                await asyncio.sleep(0.002)

        await asyncio.gather(*(worker(i) for i in range(200)))
        await client.close()
        return got

    before = accepted(observer)
    got = asyncio.run(main())
    assert sorted(got) == list(range(200))
    assert accepted(observer) - before <= N


def test_asyncio_waiting_beyond_command_timeout_is_a_clear_error(server: RedisServer) -> None:
    async def main() -> None:
        client = redpat.asyncio.Client(server.url, max_connections=1, command_timeout=0.3)
        sub = client.pubsub()
        await sub.subscribe("news")  # holds the only connection
        with pytest.raises(RedpatConnectionError,
                           match=r"too many connections: all 1 of the client's connections "
                                 r"to 127\.0\.0\.1:\d+/0 \(max_connections=1\) stayed in use "
                                 r"for 300 ms \(command_timeout\)"):
            await client.execute_command("PING")
        decision = await client.ratelimiter("r", "gcra", limit=1, window=1,
                                            on_error="fail_open").check("u")
        assert decision.allowed and decision.degraded
        assert isinstance(decision.error, RedpatConnectionError)
        other = client.pubsub()
        with pytest.raises(RedpatConnectionError, match="too many connections"):
            await other.subscribe("more")
        await other.close()
        await sub.close()
        assert await client.execute_command("PING") == b"PONG"
        await client.close()

    asyncio.run(main())


def test_asyncio_sleeping_acquire_holds_no_connection(server: RedisServer,
                                                      observer: redis.Redis) -> None:
    async def main() -> None:
        holder = redpat.asyncio.Client(server.url)
        held = holder.lock("one", timeout=60)
        assert await held.acquire()
        client = redpat.asyncio.Client(server.url, max_connections=1, command_timeout=5)
        start = lock_attempts(observer)
        waiter = asyncio.ensure_future(client.lock("one", timeout=30).acquire(
            retry_min=0.01, retry_max=0.02))
        while lock_attempts(observer) < start + 3:
            await asyncio.sleep(0.005)
        for _ in range(20):
            assert await client.execute_command("PING") == b"PONG"
        assert not waiter.done()
        await held.release()
        assert await waiter
        await holder.close()
        await client.close()

    asyncio.run(main())


def test_asyncio_using_holds_no_connection_while_its_function_runs(
        server: RedisServer) -> None:
    async def main() -> None:
        client = redpat.asyncio.Client(server.url, max_connections=1, command_timeout=1)

        async def work(n: int) -> bytes:
            out: bytes = await client.execute_command("ECHO", b"x%d" % n)
            return out

        assert await client.lock("using", timeout=10).using(work, 7) == b"x7"
        await client.close()

    asyncio.run(main())


def test_asyncio_subscription_keeps_its_place_across_a_reconnect(
        server: RedisServer, observer: redis.Redis) -> None:
    async def main() -> None:
        client = redpat.asyncio.Client(server.url, max_connections=1, command_timeout=0.3)
        sub = client.pubsub()
        await sub.subscribe("news")
        observer.client_kill_filter(_type="pubsub")  # its connection drops
        with pytest.raises(RedpatConnectionError, match="too many connections"):
            await client.execute_command("PING")  # the place is still the subscription's
        end = time.monotonic() + 30
        while observer.pubsub_numsub("news")[0][1] < 1:  # it reconnects, re-subscribes
            assert time.monotonic() < end, "the subscription never came back"
            await sub.get_message(timeout=0.05)
        observer.publish("news", "back")
        got = None
        while got is None or got["type"] != "message":
            assert time.monotonic() < end, "no message after the reconnect"
            got = await sub.get_message(timeout=0.05)
        assert got["data"] == b"back"
        await sub.close()
        assert await client.execute_command("PING") == b"PONG"  # its place is free now
        await client.close()

    asyncio.run(main())


# -- asyncio: a second asyncio.run ------------------------------------------------------------


def test_asyncio_client_under_a_second_asyncio_run(server: RedisServer,
                                                   observer: redis.Redis) -> None:
    client = redpat.asyncio.Client(server.url, max_connections=2)

    async def use() -> bytes:
        async with client.lock("twice", timeout=5):
            pass
        out: bytes = await client.execute_command("PING")
        return out

    assert asyncio.run(use()) == b"PONG"  # leaves pooled connections of that loop
    assert asyncio.run(use()) == b"PONG"  # another loop: they are dropped, new ones open
    assert asyncio.run(use()) == b"PONG"
    # the old loops' connections were closed, not left open
    eventually(lambda: int(observer.info("clients")["connected_clients"]) <= 1 + 2,
               "the old loops' connections stayed open")


# -- a Redlock: the bound is per server --------------------------------------------------------


def test_redlock_bound_is_per_server(servers: Any) -> None:
    urls = servers.urls[:3]
    observers = [redis.Redis.from_url(u) for u in urls]
    for r in observers:
        r.ping()
    before = [accepted(r) for r in observers]
    client = redpat.Client(urls, max_connections=2, command_timeout=30)
    got: List[int] = []

    def worker(i: int) -> None:
        with client.redlock("r", timeout=30):
            got.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def tasks() -> None:
        aclient = redpat.asyncio.Client(urls, max_connections=2, command_timeout=30)

        async def one(i: int) -> None:
            async with aclient.redlock("r", timeout=30):
                got.append(i)

        await asyncio.gather(*(one(i) for i in range(20, 60)))
        await aclient.close()

    asyncio.run(tasks())
    assert sorted(got) == list(range(60))
    # each server: at most 2 of the sync client's and 2 of the asyncio one's
    opened = [accepted(r) - b for r, b in zip(observers, before)]
    assert all(n <= 4 for n in opened), opened
    client.close()
    for r in observers:
        r.close()
