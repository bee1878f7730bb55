"""Caches through redpat.asyncio: stampede protection under 200 concurrent tasks (and
processes with an event loop and a Client each), the stale-fill race made deterministic,
a loader that raises or whose task is cancelled (its lock released at once), XFetch's
draw, the near-cache with its subscriber task, the async decorator and the refusal of
plain functions. The sync flavour: test_cache.py."""
from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any, Awaitable, Callable, Dict, List, TypeVar

import pytest

import redpat
import redpat.asyncio as rpa
from test_cache import CALLERS, LOAD_TIME, PROCESSES, DatabaseDown

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()
    return asyncio.run(wrapper())


def cache_key(client: rpa.Client, name: str, key: str, suffix: str = "") -> bytes:
    return b"%s:cache:{%s:%s}%s" % (client.namespace, name.encode(), key.encode(),
                                    suffix.encode())


async def script_calls(client: rpa.Client) -> int:
    info = (await client.execute_command("INFO", "commandstats")).decode()
    total = 0
    for line in info.splitlines():
        name, _, stats = line.partition(":")
        if name in ("cmdstat_evalsha", "cmdstat_evalsha_ro", "cmdstat_eval", "cmdstat_eval_ro",
                    "cmdstat_fcall", "cmdstat_fcall_ro"):
            total += int(dict(kv.split("=", 1) for kv in stats.split(","))["calls"])
    return total


async def wait_for(what: Callable[[], Any], timeout: float = 5.0) -> None:
    """Until what() (awaited when it returns an awaitable) is true."""
    end = time.monotonic() + timeout
    while True:
        got = what()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if time.monotonic() > end:
            raise AssertionError("not within %g s" % timeout)
        await asyncio.sleep(0.005)


async def near_hit(cache: rpa.Cache, key: str) -> bool:
    return bool((await cache.lookup(key)).near)


async def expire_hot_key(client: rpa.Client, stampede: str) -> Dict[str, Any]:
    """As test_cache.expire_hot_key: lock mode, the entry gone; swr, past its soft expiry."""
    if stampede == "lock":
        await client.cache("hot", ttl=0.05).set("k", "old")
        await wait_for(lambda: _gone(client))
        return {"ttl": 10.0, "stampede": "lock"}
    options: Dict[str, Any] = {"ttl": 1.0, "stampede": "swr", "stale": 30.0}
    await client.cache("hot", **options).set("k", "old")
    await asyncio.sleep(1.1)
    assert await client.execute_command("EXISTS", cache_key(client, "hot", "k")) == 1
    return options


async def _gone(client: rpa.Client) -> bool:
    return bool(await client.execute_command("EXISTS", cache_key(client, "hot", "k")) == 0)


async def fresh_client(url: str, namespace: str) -> rpa.Client:
    client = rpa.Client(url, namespace=namespace)
    await client.execute_command("FLUSHALL")
    return client


# -- stampede protection -------------------------------------------------------------------

@pytest.mark.parametrize("stampede", ["lock", "swr"])
def test_stampede_tasks(url: str, namespace: str, stampede: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        options = await expire_hot_key(client, stampede)
        cache = client.cache("hot", **options)
        runs: List[str] = []
        start = asyncio.Event()

        async def loader(key: str) -> str:
            runs.append(key)
            await asyncio.sleep(LOAD_TIME)
            return "fresh"

        async def caller() -> Any:
            await start.wait()
            return await cache.get_or_load("k", loader)

        tasks = [asyncio.ensure_future(caller()) for _ in range(CALLERS)]
        await asyncio.sleep(0)
        start.set()
        results = await asyncio.gather(*tasks)
        assert runs == ["k"]  # once, with the key as given
        want = {"fresh"} if stampede == "lock" else {"old", "fresh"}
        assert all(r in want for r in results), [r for r in results if r not in want][:3]
        assert await cache.get("k") == "fresh"
        await client.close()
    run(main)


def _process_caller(url: str, namespace: str, options: Dict[str, Any], start: Any,
                    results: Any) -> None:
    """One of PROCESSES processes with an event loop and a Client of its own: CALLERS /
    PROCESSES tasks call get_or_load together once every process is ready; the loader
    counts its runs with INCR."""
    async def main() -> List[Any]:
        client = rpa.Client(url, namespace=namespace)
        cache = client.cache("hot", **options)

        async def loader(key: str) -> str:
            await client.execute_command("INCR", "loads")
            await asyncio.sleep(LOAD_TIME)
            return "fresh"

        await asyncio.get_running_loop().run_in_executor(None, start.wait)
        return list(await asyncio.gather(*(cache.get_or_load("k", loader)
                                           for _ in range(CALLERS // PROCESSES)),
                                         return_exceptions=True))

    got = asyncio.run(main())
    results.put([r if isinstance(r, str) else repr(r) for r in got])


@pytest.mark.parametrize("stampede", ["lock", "swr"])
def test_stampede_processes(url: str, namespace: str, stampede: str) -> None:
    client = redpat.Client(url, namespace=namespace)

    async def prepare() -> Dict[str, Any]:
        return await expire_hot_key(await fresh_client(url, namespace), stampede)

    options = run(prepare)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(PROCESSES + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_process_caller, args=(url, namespace, options, start, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    try:
        start.wait(timeout=30)
        got = [r for _ in procs for r in results.get(timeout=30)]
    finally:
        for p in procs:
            p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)
    assert len(got) == CALLERS
    assert client.execute_command("GET", "loads") == b"1"
    want = {"fresh"} if stampede == "lock" else {"old", "fresh"}
    assert all(r in want for r in got), [r for r in got if r not in want][:3]


# -- versioned fills: the stale-fill race ----------------------------------------------------

@pytest.mark.parametrize("writer", ["delete", "set"])
def test_stale_fill_race(url: str, namespace: str, writer: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        reader_cache = client.cache("rows", ttl=60.0)
        writer_cache = client.cache("rows", ttl=60.0)
        loading, invalidated = asyncio.Event(), asyncio.Event()

        async def load_old_row(key: str) -> Dict[str, str]:
            loading.set()
            await asyncio.wait_for(invalidated.wait(), 10)
            return {"row": "old"}

        reader = asyncio.ensure_future(reader_cache.load("r", load_old_row))
        await asyncio.wait_for(loading.wait(), 10)
        if writer == "delete":
            await writer_cache.delete("r")
        else:
            await writer_cache.set("r", {"row": "new"})
        invalidated.set()
        got = await reader
        assert got.value == {"row": "old"} and got.loaded and not got.stored
        if writer == "delete":
            assert await reader_cache.get("r", "miss") == "miss"
        else:
            assert await reader_cache.get("r") == {"row": "new"}
        await client.close()
    run(main)


# -- the loader's failures -------------------------------------------------------------------

def test_loader_raises(url: str, namespace: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        cache = client.cache("users", ttl=60.0)
        raised = DatabaseDown("db down")
        lock = cache_key(client, "users", "u1", ":lock")
        held: List[int] = []

        async def loader(key: str) -> Any:
            held.append(await client.execute_command("EXISTS", lock))
            raise raised

        with pytest.raises(DatabaseDown) as info:
            await cache.get_or_load("u1", loader)
        assert info.value is raised and held == [1]
        assert await client.execute_command("EXISTS", lock) == 0
        assert await client.execute_command("EXISTS", cache_key(client, "users", "u1")) == 0

        async def loaded(key: str) -> str:
            return "loaded"

        assert await cache.get_or_load("u1", loaded) == "loaded"
        await client.close()
    run(main)


def test_a_cancelled_loader_releases_its_lock(url: str, namespace: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        cache = client.cache("users", ttl=60.0, lock_ttl=30.0)
        started = asyncio.Event()
        finished: List[str] = []

        async def loader(key: str) -> str:
            started.set()
            try:
                await asyncio.sleep(30)
            finally:
                finished.append("cleanup ran")
            return "never"

        task = asyncio.ensure_future(cache.get_or_load("u1", loader))
        await asyncio.wait_for(started.wait(), 10)
        lock = cache_key(client, "users", "u1", ":lock")
        assert await client.execute_command("EXISTS", lock) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == ["cleanup ran"]
        # released before the CancelledError went on, not left for lock_ttl (30 s)
        assert await client.execute_command("EXISTS", lock) == 0
        assert await client.execute_command("EXISTS", cache_key(client, "users", "u1")) == 0

        async def loaded(key: str) -> str:
            return "loaded"

        assert await cache.get_or_load("u1", loaded) == "loaded"
        await client.close()
    run(main)


def test_write_through(url: str, namespace: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        cache = client.cache("users", ttl=60.0)
        db: Dict[Any, Any] = {}

        async def write_row(key: Any, value: Any) -> None:
            await asyncio.sleep(0)
            db[key] = value

        assert (await cache.write("7", {"name": "ann"}, write_row)).stored
        assert db == {"7": {"name": "ann"}} and await cache.get("7") == {"name": "ann"}
        refused = DatabaseDown("constraint violated")

        async def failing(key: Any, value: Any) -> None:
            raise refused

        with pytest.raises(DatabaseDown) as info:
            await cache.write("7", {"name": "bob"}, failing)
        assert info.value is refused and await cache.get("7") == {"name": "ann"}
        await client.close()
    run(main)


# -- XFetch ----------------------------------------------------------------------------------

def test_xfetch_takes_the_draw_given(url: str, namespace: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        cache = client.cache("x", ttl=10.0, stampede="xfetch")
        runs: List[str] = []

        async def slow(key: str) -> str:
            runs.append(key)
            await asyncio.sleep(0.03)
            return "v%d" % len(runs)

        assert (await cache.load("k", slow)).loaded
        assert not (await cache.load("k", slow, random=1.0)).loaded
        early = await cache.load("k", slow, random=1e-300)
        assert early.loaded and early.stored and early.value == "v2" and runs == ["k", "k"]
        await client.close()
    run(main)


# -- the near-cache --------------------------------------------------------------------------

def test_near_cache(url: str, namespace: str) -> None:
    async def main() -> None:
        a_client = await fresh_client(url, namespace)
        b_client = rpa.Client(url, namespace=namespace)
        raw = rpa.Client(url, namespace=namespace)
        a = a_client.cache("users", ttl=60.0, near_size=100, near_ttl=30.0)
        b = b_client.cache("users", ttl=60.0, near_size=100, near_ttl=30.0)
        try:
            await b.set("k", {"v": 1})
            assert not (await a.lookup("k")).near  # its first operation starts its task
            await wait_for(lambda: a.info().near_armed)
            await a.lookup("k")
            before = await script_calls(raw)
            hits = [await a.lookup("k") for _ in range(100)]
            assert all(h.near and h.hit and h.value == {"v": 1} for h in hits)
            assert await script_calls(raw) == before  # no round trip

            await b.set("k", {"v": 2})
            await wait_for(lambda: a.info().near_entries == 0, 2.0)
            assert (await a.lookup("k")).value == {"v": 2}
            assert (await a.lookup("k")).near
            await b.delete("k")
            await wait_for(lambda: a.info().near_entries == 0, 2.0)
            assert await a.get("k", "miss") == "miss"

            await a.set("j", "mine")
            # (its own invalidation may come after its next read, and drop that copy)
            await wait_for(lambda: near_hit(a, "j"), 2.0)
            await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await wait_for(lambda: a.info().near_entries == 0, 2.0)
            await wait_for(lambda: a.info().near_armed, 5.0)
            await wait_for(lambda: near_hit(a, "j"), 2.0)
        finally:
            await a.close()
            await b.close()
        assert not a.info().near_armed
        assert not (await a.lookup("j")).near

        async def no_subscriber() -> bool:
            listing = await raw.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
            return b"cmd=" not in listing

        await wait_for(no_subscriber)
        for c in (a_client, b_client, raw):
            await c.close()
    run(main)


def test_the_subscriber_task_ends_with_its_loop(url: str, namespace: str) -> None:
    """A Cache used under two event loops in turn (two asyncio.run): its subscriber task
    ends with the first loop and the second one's first operation starts another."""
    client = rpa.Client(url, namespace=namespace)
    cache = client.cache("users", ttl=60.0, near_size=10)

    async def use() -> None:
        await cache.set("k", "v")
        await wait_for(lambda: cache.info().near_armed)
        await cache.lookup("k")
        assert (await cache.lookup("k")).near

    run(use)
    assert not cache.info().near_armed  # the loop's end cancelled its task: disarmed
    run(use)
    run(cache.close)


# -- the rest of the API ---------------------------------------------------------------------

def test_serializers(url: str, namespace: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        cache = client.cache("users", ttl=60.0)
        assert cache.serializer is rpa.JSON is redpat.JSON
        await cache.set("u", {"a": [1, "é"]})
        assert await cache.get("u") == {"a": [1, "é"]}
        assert await client.execute_command("HGET", cache_key(client, "users", "u"), "v") == (
            '{"a":[1,"é"]}'.encode("utf-8"))
        raw = client.cache("raw", ttl=60.0, serializer=None)
        await raw.set("b", b"\x00\xff")
        assert await raw.get("b") == b"\x00\xff"
        with pytest.raises(TypeError, match="serializer=None"):
            await raw.set("s", "a str")
        await client.close()
    run(main)


def test_cached_decorator(url: str, namespace: str) -> None:
    async def main() -> None:
        client = await fresh_client(url, namespace)
        cache = client.cache("users", ttl=60.0)
        calls: List[int] = []

        @cache.cached(key=lambda user_id: "user:%d" % user_id, tags=["users"])
        async def fetch(user_id: int) -> Dict[str, int]:
            calls.append(user_id)
            await asyncio.sleep(0)
            return {"id": user_id}

        assert await fetch(1) == {"id": 1} and await fetch(1) == {"id": 1} and calls == [1]
        await cache.invalidate_tags("users")
        assert await fetch(1) == {"id": 1} and calls == [1, 1]
        assert await fetch.invalidate(1) is True  # type: ignore[attr-defined]

        def plain(user_id: int) -> int:
            return user_id

        with pytest.raises(TypeError, match="coroutine function"):
            cache.cached()(plain)  # type: ignore[type-var]
        with pytest.raises(TypeError, match="coroutine function"):
            await cache.get_or_load("k", plain)  # type: ignore[arg-type]
        with pytest.raises(redpat.InvalidArgument, match=r"\bttl\b.*seconds"):
            client.cache("c", ttl=0)
        await client.close()
    run(main)
