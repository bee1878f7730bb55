"""Redis Cluster through redpat.asyncio (issue 12): test_cluster.py's cases with tasks in
one event loop instead of threads; the harness's blocking cluster admin (migrate_slot,
the master's freeze and kill) runs in a worker thread meanwhile."""
from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from typing import Any, Awaitable, Callable, Dict, List, TypeVar

import pytest

import redpat
import redpat.asyncio as rpa
from conftest import (asking_calls, client_connections, error_replies, freeze_master,
                      kill_frozen, master_with_replica, names_in_slots, other_master,
                      slots_of)
from harness import RedisCluster, key_slot

T = TypeVar("T")
TIMEOUT = 1.0
MARGIN = 0.5  # see test_cluster.py
# a limit no test loop reaches (the ASK window's makes ~300-400 checks)
LIMIT = 100000


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()
    return asyncio.run(wrapper())


@pytest.fixture
def ns() -> str:
    return "c-" + uuid.uuid4().hex[:10]


def client(url: str, ns: str) -> rpa.Client:
    return rpa.Client(url, namespace=ns, command_timeout=TIMEOUT, connect_timeout=TIMEOUT)


async def command(c: rpa.Client, *argv: object, key: object = None) -> Any:
    """conftest.cluster_command's asyncio twin."""
    import inspect
    if key is None:
        return await c.execute_command(*argv)
    if "key" in inspect.signature(c.execute_command).parameters:
        return await c.execute_command(*argv, key=key)  # type: ignore[call-arg]
    x = c._x
    args = [a if isinstance(a, bytes) else str(a).encode() for a in argv]
    reply = (await x.call("client.command", x.template, args,
                          key if isinstance(key, bytes) else str(key).encode())).reply
    if isinstance(reply, BaseException):
        raise reply
    return reply


def test_names_land_on_every_master(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    cluster.refresh()
    masters = cluster.masters()
    assert len(masters) == 3
    names = [n for m in masters for n in names_in_slots(slots_of(cluster, m), 8, "a" + m.addr)]

    async def main() -> None:
        async with client(cluster_url, ns) as c:
            locks = [c.lock(n, timeout=30, fenced=True) for n in names]
            got = await asyncio.gather(*(lock.acquire(blocking=False) for lock in locks))
            assert all(got)
            others = await asyncio.gather(*(c.lock(n, timeout=30).acquire(blocking=False)
                                            for n in names))
            assert not any(others)
            fences = [lock.fence for lock in locks]
            await asyncio.gather(*(lock.release() for lock in locks))
            again = [c.lock(n, timeout=30, fenced=True) for n in names]
            assert all(await asyncio.gather(*(lock.acquire(blocking=False) for lock in again)))
            assert all(lock.fence > before for lock, before in zip(again, fences))
            await asyncio.gather(*(lock.release() for lock in again))
            api = c.ratelimiter("api", "fixed_window", limit=2, window=60.0)
            for n in names:
                decisions = [await api.check(n) for _ in range(3)]
                assert [d.allowed for d in decisions] == [True, True, False], n
            assert [d.allowed for d in await c.ratelimiter(
                "g", "gcra", limit=5, window=1.0).batch(names)] == [True] * len(names)
    run(main)
    for m in masters:  # each name's keys are on the master of its slot, and only there
        mine = slots_of(cluster, m)
        for n in names:
            count = m.call("CLUSTER", "COUNTKEYSINSLOT", key_slot(n))
            assert (count >= 1) == (key_slot(n) in mine), (n, m.addr, count)


def test_reshard_under_load(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    cluster.refresh()
    a, b = cluster.masters()[:2]
    lock_name = names_in_slots(slots_of(cluster, a), 1, "alk")[0]
    subject = names_in_slots(slots_of(cluster, b), 1, "asj")[0]
    fences: List[int] = []
    remaining: List[int] = []
    limit = 100000
    cap = limit - 1

    def reshard() -> int:
        moves = 0
        for _ in range(2):
            for slot in (key_slot(lock_name), key_slot(subject)):
                cluster.migrate_slot(slot, other_master(cluster, slot), batch=1,
                                     between_batches=0.05)
                moves += 1
                time.sleep(0.1)
        return moves

    async def main() -> None:
        async with client(cluster_url, ns) as c:
            limiter = c.ratelimiter("rs", "fixed_window", limit=limit, window=600.0)
            done = asyncio.Event()

            async def locker() -> None:
                lock = c.lock(lock_name, timeout=10, fenced=True)
                while not done.is_set():
                    assert await lock.acquire(blocking_timeout=10)
                    fences.append(lock.fence)
                    await lock.release()

            async def checker() -> None:
                while not done.is_set() and len(remaining) < cap:
                    d = await limiter.check(subject)
                    assert d.allowed and not d.degraded, d
                    remaining.append(d.remaining)

            workers = [asyncio.ensure_future(locker()) for _ in range(3)]
            workers += [asyncio.ensure_future(checker()) for _ in range(3)]
            moved_before = await asyncio.to_thread(error_replies, cluster, "MOVED")
            try:
                await asyncio.sleep(0.2)
                assert await asyncio.to_thread(reshard) == 4
            finally:
                done.set()
                results = await asyncio.gather(*workers, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            assert not errors, errors
            assert await asyncio.to_thread(error_replies, cluster, "MOVED") > moved_before
            n = len(remaining)
            assert n > 10 and len(fences) > 10
            assert all(x < y for x, y in zip(fences, fences[1:])), fences
            assert sorted(remaining) == list(range(limit - n, limit))
            assert (await limiter.check(subject, cost=0)).remaining == limit - n
    run(main)


def test_ask_window(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    cluster.refresh()
    src = cluster.masters()[1]
    slot = key_slot(names_in_slots(slots_of(cluster, src), 1, "aask")[0])
    names = names_in_slots({slot}, 8, "aask")
    dst = other_master(cluster, slot)
    before = asking_calls(dst)
    asked_before = error_replies(cluster, "ASK")

    async def main() -> None:
        async with client(cluster_url, ns) as c:
            limiter = c.ratelimiter("ask", "fixed_window", limit=LIMIT, window=600.0)
            held = [c.lock(n, timeout=30) for n in names[:4]]
            assert all(await asyncio.gather(*(lock.acquire(blocking=False) for lock in held)))
            checks = 1
            assert (await limiter.check(names[0])).remaining == LIMIT - 1
            moving = asyncio.ensure_future(asyncio.to_thread(
                cluster.migrate_slot, slot, dst, pause=0.5, batch=1, between_batches=0.1))
            rounds = 0
            while not moving.done() or rounds < 3:
                rounds += 1
                for n in names[4:]:
                    lock = c.lock(n, timeout=30)
                    assert await lock.acquire(blocking=False), n
                    await lock.release()
                assert all(await asyncio.gather(*(lock.extend(1.0) for lock in held)))
                d = await limiter.check(names[0])
                checks += 1
                assert d.allowed and d.remaining == LIMIT - checks, d
            await moving
            await asyncio.gather(*(lock.release() for lock in held))
            assert (await limiter.check(names[0], cost=0)).remaining == LIMIT - checks
    run(main)
    assert cluster.slot_owner(slot).addr == dst.addr
    assert error_replies(cluster, "ASK") > asked_before
    assert asking_calls(dst) > before


def test_pool_per_node(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    """max_connections bounds the connections to each node (test_cluster.py's, with 24
    tasks)."""
    cluster.refresh()
    names = [n for m in cluster.masters() for n in names_in_slots(slots_of(cluster, m), 4,
                                                                   "ap" + m.addr)]
    peak: Dict[str, int] = {}

    async def main() -> None:
        async with rpa.Client(cluster_url, namespace=ns, max_connections=2,
                              command_timeout=5.0) as c:
            limiter = c.ratelimiter("pool", "fixed_window", limit=10000, window=600.0)

            async def work() -> None:
                for _ in range(10):
                    for n in names:
                        assert (await limiter.check(n)).allowed

            before = await asyncio.to_thread(client_connections, cluster)

            async def sample(done: asyncio.Event) -> None:
                while not done.is_set():
                    now = await asyncio.to_thread(client_connections, cluster)
                    for addr, ids in now.items():
                        peak[addr] = max(peak.get(addr, 0), len(ids - before.get(addr, set())))
                    await asyncio.sleep(0.02)

            done = asyncio.Event()
            sampler = asyncio.ensure_future(sample(done))
            try:
                await asyncio.gather(*(work() for _ in range(24)))
            finally:
                done.set()
                await sampler
            assert (await limiter.check(names[0], cost=0)).remaining == 10000 - 24 * 10
    run(main)
    assert len(peak) == 3 and all(1 <= n <= 2 for n in peak.values()), peak


def test_cross_slot_and_keyless_refused_before_io(cluster_url: str, ns: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = "redis+cluster://127.0.0.1:%d" % s.getsockname()[1]

    async def main() -> None:
        for url in (nowhere, cluster_url):
            async with client(url, ns) as c:
                with pytest.raises(redpat.InvalidArgument) as refused:
                    await c.execute_command("MGET", "a", "b")
                message = str(refused.value)
                assert "slot" in message and re.search(r"\ba\b", message) and \
                    re.search(r"\bb\b", message), message
                with pytest.raises(redpat.InvalidArgument) as keyless:
                    await c.execute_command("DBSIZE")
                assert "key" in str(keyless.value)
        async with client(cluster_url, ns) as c:
            assert await c.execute_command("SET", "{t}a", "1") == b"OK"
            assert await c.execute_command("MGET", "{t}a", "{t}b") == [b"1", None]
            assert await command(c, "DBSIZE", key="{t}") == 1
            with pytest.raises(redpat.InvalidArgument):
                await c.execute_command("PING")
            assert await command(c, "PING", key="anything") == b"PONG"
            assert await c.ping() is True  # Client.ping asks slot 0's master
    run(main)


def test_failover(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    victim = master_with_replica(cluster)
    name = names_in_slots(slots_of(cluster, victim), 1, "afo")[0]

    async def main() -> None:
        async with client(cluster_url, ns) as c:
            limiter = c.ratelimiter("fo", "fixed_window", limit=100, window=600.0)
            lock = c.lock(name, timeout=5)
            assert await lock.acquire(blocking=False)
            await lock.release()
            assert (await limiter.check(name)).allowed
            ended: Dict[str, float] = {}

            async def timed(what: str, aw: Awaitable[Any]) -> Any:
                try:
                    return await aw
                finally:
                    ended[what] = time.monotonic()

            pid = await asyncio.to_thread(freeze_master, cluster, victim)
            try:
                flying = [asyncio.ensure_future(timed("lock", c.lock(name, timeout=5).acquire(
                              blocking=False))),
                          asyncio.ensure_future(timed("check", limiter.check(name)))]
                await asyncio.sleep(0.3)
            finally:
                kill_frozen(victim, pid)
            killed = time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(*flying, return_exceptions=True), 10)
            for what, result in zip(("lock", "check"), results):
                assert isinstance(result, redpat.ConnectionError), (what, result)
                assert ended[what] - killed < TIMEOUT + MARGIN, (what, ended[what] - killed)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    probe = c.lock(name, timeout=5)
                    if await probe.acquire(blocking=False):
                        await probe.release()
                        break
                except (redpat.ConnectionError, redpat.TimeoutError, redpat.ResponseError) as exc:
                    assert time.monotonic() - started < 3 * TIMEOUT + MARGIN, exc
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("no lock on %s's slot within 30 s of its master's death" % name)
            new_master = await asyncio.to_thread(cluster.wait_failover, victim)
            assert new_master.addr != victim.addr
            lock = c.lock(name, timeout=5, fenced=True)
            assert await lock.acquire(blocking_timeout=10)
            await lock.release()
            assert (await limiter.check(name)).allowed
            assert await command(c, "DBSIZE", key="{%s}" % name) >= 0
    run(main)
