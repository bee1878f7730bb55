"""Lock.using: the lock is taken, renewed by the core while the user's function runs (a
plain function in this thread under redpat.Client, while a helper thread of the core renews;
a coroutine as a task under redpat.asyncio), and released whatever happened: a return value,
an exception (re-raised as it was), a lost lock (LockLostError), a cancelled task or Ctrl-C
(the lock released before the CancelledError / KeyboardInterrupt goes on)."""
from __future__ import annotations

import asyncio
import os
import signal
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


def key(client: Any, name: bytes = b"job") -> bytes:
    return b"%s:lock:{%s}" % (client.namespace, name)


class Boom(Exception):
    pass


# -- redpat.Client -----------------------------------------------------------------------

def test_returns_what_fn_returned_and_releases(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=5)
    seen: List[Any] = []

    def work(a: int, b: int, *, scale: int) -> int:
        seen.append((client.execute_command("EXISTS", key(client)), threading.get_ident()))
        return (a + b) * scale

    assert lock.using(work, 1, 2, scale=10) == 30
    assert seen == [(1, threading.get_ident())]  # ran holding the lock, in this thread
    assert client.execute_command("EXISTS", key(client)) == 0
    assert lock.renewals == 0 and lock.token is None


def test_renews_while_fn_outlives_the_ttl(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=0.3)

    def slow() -> int:
        time.sleep(1.0)  # three TTLs: only the core's renewals keep the lock
        return int(client.execute_command("PTTL", key(client)))

    left = lock.using(slow)
    assert 0 < left <= 300
    assert 6 <= lock.renewals <= 12, lock.renewals
    assert client.execute_command("EXISTS", key(client)) == 0


def test_fn_exception_is_reraised_as_it_was_after_the_release(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=5)
    boom = Boom("disk full")

    def fail() -> None:
        assert client.execute_command("EXISTS", key(client)) == 1
        raise boom

    with pytest.raises(Boom) as info:
        lock.using(fail)
    assert info.value is boom
    assert any(frame.name == "fail" for frame in info.traceback)
    assert client.execute_command("EXISTS", key(client)) == 0


def test_busy_lock_raises_lock_error_and_never_calls_fn(client: redpat.Client) -> None:
    holder = client.lock("job", timeout=5)
    assert holder.acquire()
    calls: List[int] = []
    with pytest.raises(redpat.LockError) as info:
        client.lock("job", timeout=5).using(lambda: calls.append(1), blocking_timeout=0.1)
    assert type(info.value) is redpat.LockError
    assert calls == []
    assert holder.owned()


def test_lost_lock_raises_lock_lost_error(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=0.3)

    def stolen() -> None:
        client.execute_command("DEL", key(client))
        time.sleep(0.4)  # the next renewal finds the key gone

    with pytest.raises(redpat.LockLostError, match="lost"):
        lock.using(stolen)


def test_the_lock_is_the_cores_while_using_runs(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=5)
    errors: List[BaseException] = []

    def meddle() -> None:
        try:
            lock.extend(10)
        except redpat.StateError as exc:
            errors.append(exc)
        assert lock.token is not None  # what the handle knows may be read

    lock.using(meddle)
    assert len(errors) == 1 and "using" in str(errors[0])


def test_sync_using_refuses_a_coroutine_function(client: redpat.Client) -> None:
    async def job() -> None:
        pass

    with pytest.raises(TypeError, match="coroutine function"):
        client.lock("job").using(job)  # type: ignore[arg-type,unused-coroutine]
    with pytest.raises(TypeError, match="callable"):
        client.lock("job").using(42)  # type: ignore[arg-type]
    assert client.execute_command("EXISTS", key(client)) == 0


def test_ctrl_c_inside_fn_releases_the_lock(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=30)
    finished: List[str] = []

    def long_job() -> None:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C
        try:
            time.sleep(5)
        finally:
            finished.append("cleanup ran")

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        lock.using(long_job)
    assert time.monotonic() - t0 < 1.5
    assert finished == ["cleanup ran"]
    # released before the KeyboardInterrupt went on, not left to expire in 30 s
    assert client.execute_command("EXISTS", key(client)) == 0
    assert lock.acquire(blocking=False)  # the handle and the client carry on
    lock.release()


def test_redlock_using(five: Any, namespace: str) -> None:
    client = redpat.Client(five.urls[:3], namespace=namespace)
    lock = client.redlock("job", timeout=0.3)
    per_server = [redpat.Client(url, namespace=namespace) for url in five.urls[:3]]

    def slow() -> List[int]:
        time.sleep(0.7)
        return [int(c.execute_command("PTTL", key(client))) for c in per_server]

    assert all(0 < left <= 300 for left in lock.using(slow))
    assert lock.renewals >= 4
    assert all(c.execute_command("EXISTS", key(client)) == 0 for c in per_server)


# -- redpat.asyncio ----------------------------------------------------------------------

def test_asyncio_using_renews_while_the_task_outlives_the_ttl(url: str,
                                                               namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            lock = client.lock("job", timeout=0.3)
            ticks: List[float] = []

            async def slow(n: int) -> int:
                for _ in range(n):
                    await asyncio.sleep(0.1)  # the loop runs: renewals and this task
                    ticks.append(time.monotonic())
                return int(await client.execute_command("PTTL", key(client)))

            left = await lock.using(slow, 10)
            assert 0 < left <= 300 and len(ticks) == 10
            assert 6 <= lock.renewals <= 12, lock.renewals
            assert await client.execute_command("EXISTS", key(client)) == 0
    run(main)


def test_asyncio_fn_exception_is_reraised_as_it_was(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            boom = Boom("no")

            async def fail() -> None:
                raise boom

            with pytest.raises(Boom) as info:
                await client.lock("job", timeout=5).using(fail)
            assert info.value is boom
            assert await client.execute_command("EXISTS", key(client)) == 0
    run(main)


def test_asyncio_cancelled_task_releases_the_lock(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            lock = client.lock("job", timeout=30)
            inside = asyncio.Event()
            fn_saw: List[str] = []

            async def long_job() -> None:
                inside.set()
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    fn_saw.append("cancelled")
                    raise

            task = asyncio.ensure_future(lock.using(long_job))
            await inside.wait()
            assert await client.execute_command("EXISTS", key(client)) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert fn_saw == ["cancelled"]  # the function was cancelled with the task
            # released before the CancelledError went on, not left to expire in 30 s
            assert await client.execute_command("EXISTS", key(client)) == 0
            assert await lock.acquire(blocking=False)
            await lock.release()
    run(main)


def test_asyncio_cancelled_while_waiting_for_a_busy_lock(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            holder = client.lock("job", timeout=30)
            assert await holder.acquire()
            calls: List[int] = []

            async def job() -> None:
                calls.append(1)

            task = asyncio.ensure_future(
                client.lock("job").using(job, blocking_timeout=10, retry_min=0.05))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert calls == [] and await holder.owned()
    run(main)


def test_asyncio_using_refuses_a_plain_function(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            with pytest.raises(TypeError, match="not a coroutine function"):
                await client.lock("job").using(lambda: None)  # type: ignore[arg-type,return-value]
            assert await client.execute_command("EXISTS", key(client)) == 0
    run(main)


def test_asyncio_busy_and_lost(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            holder = client.lock("job", timeout=5)
            assert await holder.acquire()

            async def nothing() -> None:
                pass

            with pytest.raises(redpat.LockError) as info:
                await client.lock("job").using(nothing, blocking=False)
            assert type(info.value) is redpat.LockError
            await holder.release()

            async def stolen() -> None:
                await client.execute_command("DEL", key(client))
                await asyncio.sleep(0.4)

            with pytest.raises(redpat.LockLostError):
                await client.lock("job", timeout=0.3).using(stolen)
    run(main)
