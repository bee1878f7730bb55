"""redpat.asyncio: the same Client and Lock API with async/await, driving the core's ops
over its own stream connections (no threads)."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, Awaitable, Callable, List, TypeVar

import pytest

import redpat
import redpat.asyncio as rpa

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()
    return asyncio.run(wrapper())


def key(namespace: str, name: bytes) -> bytes:
    return b"%s:lock:{%s}" % (namespace.encode(), name)


def test_lock_cycle_and_queries(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as c:
            lock = c.lock(b"a\x00b", timeout=5, fenced=True)
            assert await lock.acquire()
            assert lock.fence == 1 and lock.token is not None
            assert await c.execute_command("GET", key(namespace, b"a\x00b")) == lock.token
            assert await lock.owned() and await lock.locked()
            assert await lock.extend(1) and await lock.reacquire()
            await lock.release()
            assert not await lock.locked()
            with pytest.raises(redpat.LockNotOwnedError):
                await lock.release()
            assert await c.fence_check("db", 4) == (True, 4)
            assert (await c.fence_check("db", 3)).accepted is False
    run(main)


def test_async_with_and_busy_lock(url: str, namespace: str) -> None:
    async def main() -> None:
        c = rpa.Client(url, namespace=namespace)
        holder = c.lock("job", timeout=5)
        async with holder:
            other = c.lock("job", blocking_timeout=0.1)
            with pytest.raises(redpat.LockError):
                async with other:
                    pytest.fail("entered a held lock")
        assert not await holder.locked()
        await c.close()
    run(main)


def test_tasks_share_a_client_with_mutual_exclusion(url: str, namespace: str) -> None:
    async def main() -> int:
        c = rpa.Client(url, namespace=namespace)

        async def worker() -> None:
            lock = c.lock("counter", timeout=5, retry_min=0.001, retry_max=0.005)
            for _ in range(10):
                async with lock:
                    n = int(await c.execute_command("GET", "n") or 0)
                    await asyncio.sleep(0)  # let the others run while we hold it
                    await c.execute_command("SET", "n", n + 1)

        await asyncio.gather(*(worker() for _ in range(8)))
        n = int(await c.execute_command("GET", "n"))
        await c.close()
        return n

    assert run(main) == 80


def test_waiting_does_not_block_the_loop(url: str, namespace: str) -> None:
    async def main() -> None:
        c = rpa.Client(url, namespace=namespace)
        holder = c.lock("job", timeout=0.3)
        assert await holder.acquire()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        threads = threading.active_count()
        waiter = c.lock("job", timeout=5)
        t0 = time.monotonic()
        assert await waiter.acquire(blocking_timeout=3, retry_min=0.01, retry_max=0.02)
        assert time.monotonic() - t0 > 0.15
        assert ticks >= 10  # the loop kept running during the wait
        assert threading.active_count() == threads  # and no thread did the waiting
        task.cancel()
        await c.close()
    run(main)


def test_errors_map_the_same_way(url: str, namespace: str) -> None:
    async def main() -> None:
        c = rpa.Client(url, namespace=namespace, command_timeout=0.2)
        with pytest.raises(redpat.InvalidArgument,
                           match=r"^timeout must be > 0 seconds \(got -1\)$"):
            c.lock("r", timeout=-1)
        with pytest.raises(redpat.InvalidArgument,
                           match=r"^blocking_timeout must be >= 0 seconds \(got -1\)$"):
            await c.lock("r").acquire(blocking_timeout=-1)
        await c.execute_command("SET", "plain", "v")
        with pytest.raises(redpat.ResponseError, match="WRONGTYPE"):
            await c.execute_command("HGET", "plain", "f")
        with pytest.raises(redpat.TimeoutError):
            await c.execute_command("DEBUG", "SLEEP", "0.5")
        await asyncio.sleep(0.5)
        assert await c.ping()  # a fresh connection after the timed-out one
        await c.close()
    run(main)


def test_refused_connection(namespace: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        c = rpa.Client("redis://127.0.0.1:%d/0" % port, namespace=namespace)
        with pytest.raises(redpat.ConnectionError):
            await c.lock("r").acquire()
    run(main)


def test_cancellation_closes_the_connection_and_the_client_goes_on(url: str,
                                                                      namespace: str) -> None:
    async def main() -> None:
        c = rpa.Client(url, namespace=namespace)
        task = asyncio.ensure_future(c.execute_command("BLPOP", "nothing", "5"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled request's reply must never reach a later caller.
        assert await c.execute_command("SET", "k", "v") == b"OK"
        assert await c.execute_command("GET", "k") == b"v"
        await c.close()
    run(main)


def test_url_with_database(url: str, namespace: str) -> None:
    db_url = url.rsplit("/", 1)[0] + "/3"

    async def main() -> Any:
        c = rpa.Client(db_url, namespace=namespace)
        await c.execute_command("SET", "in-db-3", "x")
        await c.close()
    run(main)
    sync = redpat.Client(url, namespace=namespace)
    assert sync.execute_command("EXISTS", "in-db-3") == 0
    sync3 = redpat.Client(db_url, namespace=namespace)
    assert sync3.execute_command("EXISTS", "in-db-3") == 1


def test_watchdog_renews_and_reports_loss(url: str, namespace: str) -> None:
    async def main() -> None:
        c = rpa.Client(url, namespace=namespace)
        lost: List[BaseException] = []

        async def on_lost(lock: rpa.Lock, err: BaseException) -> None:
            lost.append(err)

        lock = c.lock("job", timeout=0.3, auto_renew=True, on_lost=on_lost)
        async with lock:
            await asyncio.sleep(1.0)
            assert await lock.owned()
        assert not lost
        with pytest.raises(redpat.LockLostError):
            async with lock:
                await c.execute_command("DEL", key(namespace, b"job"))
                await asyncio.sleep(0.4)
                assert lock.lost
        assert len(lost) == 1
        await c.close()
    run(main)


def test_driving_an_op_by_hand(url: str, namespace: str) -> None:
    # The op API as the extension exposes it: begin, then step / feed until DONE.
    from redpat import _core
    template = _core.make("client.new", None, namespace)
    op = _core.begin("client.command", template, [b"ECHO", bytearray(b"\x00hi\r\n")])
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as s:
        while True:
            step, what = _core.step(op)
            if step != _core.STEP_IO:
                break
            assert len(what) == 1  # one node: its request
            s.sendall(what[0])
            while True:
                # Feed one byte at a time: replies may arrive in any split.
                rc = _core.feed(op, 0, s.recv(1))
                if rc != _core.MORE:
                    break
            assert rc == _core.OK
    assert step == _core.STEP_DONE
    assert what.reply == b"\x00hi\r\n"


def test_a_failed_op_raises_at_its_step() -> None:
    from redpat import _core
    lock = _core.make("lock.new", _core.make("client.new"), b"r", 5)
    op = _core.begin("lock.locked", lock)
    step, requests = _core.step(op)
    assert step == _core.STEP_IO and b"EXISTS" in requests[0]
    _core.fail_node(op, 0, _core.ETIMEOUT, "the driver gave up")
    with pytest.raises(redpat.TimeoutError, match="the driver gave up"):
        _core.step(op)
    with pytest.raises(TypeError, match="^op must be a redpat._core.Op, not redpat._core.Handle$"):
        _core.step(lock)  # type: ignore[arg-type]
    assert _core.call(None, "lock.info", lock).token is None  # answered without I/O


def test_locked_decorator(url: str, namespace: str) -> None:
    async def main() -> None:
        c = rpa.Client(url, namespace=namespace)
        inside: List[bool] = []

        @c.locked("job", timeout=5, blocking_timeout=2, retry_min=0.001, retry_max=0.005)
        async def job(n: int) -> int:
            inside.append(await c.lock("job").locked())
            await asyncio.sleep(0.01)
            return n

        assert sorted(await asyncio.gather(*(job(i) for i in range(4)))) == [0, 1, 2, 3]
        assert inside == [True] * 4
        await c.close()
    run(main)
