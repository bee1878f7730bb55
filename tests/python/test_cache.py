"""Caches through redpat.Client (sync): stampede protection under 200 concurrent callers
(threads, and processes with a Client each), the stale-fill race made deterministic, a
loader that raises or is interrupted (its lock released at once), XFetch's draw, the
near-cache with its subscriber (no round trip on a hit, invalidations from another client,
a killed subscription), serializers, decorators and bad input named in Python's words.
The asyncio flavour: test_cache_asyncio.py."""
from __future__ import annotations

import datetime
import multiprocessing
import os
import pickle
import signal
import threading
import time
from typing import Any, Callable, Dict, List

import pytest

import redpat

CALLERS = 200
PROCESSES = 50
LOAD_TIME = 0.05


def cache_key(client: redpat.Client, name: str, key: str, suffix: str = "") -> bytes:
    return b"%s:cache:{%s:%s}%s" % (client.namespace, name.encode(), key.encode(),
                                    suffix.encode())


def script_calls(client: redpat.Client) -> int:
    """How many scripts the server has run (INFO commandstats: EVALSHA and its kin)."""
    info = client.execute_command("INFO", "commandstats").decode()
    total = 0
    for line in info.splitlines():
        name, _, stats = line.partition(":")
        if name in ("cmdstat_evalsha", "cmdstat_evalsha_ro", "cmdstat_eval", "cmdstat_eval_ro",
                    "cmdstat_fcall", "cmdstat_fcall_ro"):
            total += int(dict(kv.split("=", 1) for kv in stats.split(","))["calls"])
    return total


def wait_for(what: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            raise AssertionError("not within %g s" % timeout)
        time.sleep(0.005)


def in_threads(n: int, fn: Callable[[], Any]) -> List[Any]:
    """fn() in n threads started together; their results (an exception as raised)."""
    barrier = threading.Barrier(n)
    results: List[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: B902 - handed back to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def expire_hot_key(client: redpat.Client, stampede: str) -> Dict[str, Any]:
    """The hot key "k" of the cache "hot", expired: lock mode, its entry gone (it lived
    50 ms); swr, its entry past its soft expiry (it was fresh for 1 s, and may be served
    stale for 30 s more). The options of the cache the callers use."""
    if stampede == "lock":
        client.cache("hot", ttl=0.05).set("k", "old")
        wait_for(lambda: client.execute_command("EXISTS", cache_key(client, "hot", "k")) == 0)
        return {"ttl": 10.0, "stampede": "lock"}
    options: Dict[str, Any] = {"ttl": 1.0, "stampede": "swr", "stale": 30.0}
    client.cache("hot", **options).set("k", "old")
    time.sleep(1.1)
    assert client.execute_command("EXISTS", cache_key(client, "hot", "k")) == 1
    return options


# -- stampede protection -------------------------------------------------------------------

@pytest.mark.parametrize("stampede", ["lock", "swr"])
def test_stampede_threads(client: redpat.Client, stampede: str) -> None:
    options = expire_hot_key(client, stampede)
    cache = client.cache("hot", **options)
    runs: List[str] = []

    def loader(key: str) -> str:
        runs.append(key)
        time.sleep(LOAD_TIME)
        return "fresh"

    results = in_threads(CALLERS, lambda: cache.get_or_load("k", loader))
    assert runs == ["k"]  # the loader ran exactly once, with the key as given (a str)
    want = {"fresh"} if stampede == "lock" else {"old", "fresh"}  # swr: stale, at once
    assert all(r in want for r in results), [r for r in results if r not in want][:3]
    assert cache.get("k") == "fresh"


def _process_caller(url: str, namespace: str, options: Dict[str, Any], start: Any,
                    results: Any) -> None:
    """One of PROCESSES processes, with a Client of its own: CALLERS / PROCESSES threads
    call get_or_load together once every process is ready; the loader counts its runs
    with INCR."""
    client = redpat.Client(url, namespace=namespace)
    cache = client.cache("hot", **options)

    def loader(key: str) -> str:
        client.execute_command("INCR", "loads")
        time.sleep(LOAD_TIME)
        return "fresh"

    start.wait()
    got = in_threads(CALLERS // PROCESSES, lambda: cache.get_or_load("k", loader))
    results.put([r if isinstance(r, str) else repr(r) for r in got])


@pytest.mark.parametrize("stampede", ["lock", "swr"])
def test_stampede_processes(client: redpat.Client, url: str, namespace: str,
                            stampede: str) -> None:
    options = expire_hot_key(client, stampede)
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
    assert client.execute_command("GET", "loads") == b"1"  # one load among 200 callers
    want = {"fresh"} if stampede == "lock" else {"old", "fresh"}
    assert all(r in want for r in got), [r for r in got if r not in want][:3]


# -- versioned fills: the stale-fill race ----------------------------------------------------

@pytest.mark.parametrize("writer", ["delete", "set"])
def test_stale_fill_race(client: redpat.Client, writer: str) -> None:
    """The reader misses and loads the old row; meanwhile the writer commits and
    invalidates; the reader gets the old row, the cache does not keep it."""
    reader_cache = client.cache("rows", ttl=60.0)
    writer_cache = client.cache("rows", ttl=60.0)
    loading, invalidated = threading.Event(), threading.Event()
    got: List[redpat.CacheResult] = []

    def load_old_row(key: str) -> Dict[str, str]:
        loading.set()
        assert invalidated.wait(10)  # the writer's invalidation comes before the fill
        return {"row": "old"}

    reader = threading.Thread(target=lambda: got.append(reader_cache.load("r", load_old_row)))
    reader.start()
    assert loading.wait(10)
    if writer == "delete":
        writer_cache.delete("r")
    else:
        writer_cache.set("r", {"row": "new"})
    invalidated.set()
    reader.join(10)
    assert got and got[0].value == {"row": "old"} and got[0].loaded and not got[0].stored
    if writer == "delete":
        assert reader_cache.get("r", "miss") == "miss"
    else:
        assert reader_cache.get("r") == {"row": "new"}


# -- the loader's failures -------------------------------------------------------------------

class DatabaseDown(Exception):
    pass


def test_loader_raises(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60.0)
    raised = DatabaseDown("db down")
    lock = cache_key(client, "users", "u1", ":lock")
    held: List[int] = []

    def loader(key: str) -> Any:
        held.append(client.execute_command("EXISTS", lock))  # (the loader may use the client)
        raise raised

    with pytest.raises(DatabaseDown) as info:
        cache.get_or_load("u1", loader)
    assert info.value is raised  # as raised, not wrapped
    assert held == [1]
    assert client.execute_command("EXISTS", lock) == 0  # released at once
    assert client.execute_command("EXISTS", cache_key(client, "users", "u1")) == 0
    assert cache.get("u1", "miss") == "miss"
    assert cache.get_or_load("u1", lambda key: "loaded") == "loaded"  # and it carries on


def test_ctrl_c_in_the_loader_releases_its_lock(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60.0, lock_ttl=30.0)
    finished: List[str] = []

    def loader(key: str) -> str:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C
        try:
            time.sleep(5)
        finally:
            finished.append("cleanup ran")
        return "never"

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_load("u1", loader)
    assert time.monotonic() - t0 < 1.5
    assert finished == ["cleanup ran"]
    # released before the KeyboardInterrupt went on, not left for lock_ttl (30 s)
    assert client.execute_command("EXISTS", cache_key(client, "users", "u1", ":lock")) == 0
    assert client.execute_command("EXISTS", cache_key(client, "users", "u1")) == 0
    assert cache.get_or_load("u1", lambda key: "loaded") == "loaded"


def test_write_through(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60.0)
    db: Dict[Any, Any] = {}

    def write_row(key: Any, value: Any) -> None:
        # the database first: the cache has not changed yet
        assert client.execute_command("HGET", cache_key(client, "users", "7"), "v") in (
            None, b'{"name":"ann"}')
        db[key] = value

    assert cache.write("7", {"name": "ann"}, write_row).stored  # key and value as given
    assert db == {"7": {"name": "ann"}}
    assert cache.get("7") == {"name": "ann"}
    refused = DatabaseDown("constraint violated")

    def failing(key: Any, value: Any) -> None:
        raise refused

    with pytest.raises(DatabaseDown) as info:
        cache.write("7", {"name": "bob"}, failing)
    assert info.value is refused
    assert cache.get("7") == {"name": "ann"}  # untouched
    assert cache.write("7", None, write_row).negative  # the row deleted: a negative entry
    assert db["7"] is None and cache.get("7", "miss") is None
    with pytest.raises(TypeError, match="key"):
        cache.get(7)  # type: ignore[arg-type]


# -- XFetch ----------------------------------------------------------------------------------

def test_xfetch_takes_the_draw_given(client: redpat.Client) -> None:
    cache = client.cache("x", ttl=10.0, stampede="xfetch")
    runs: List[str] = []

    def slow(key: str) -> str:
        runs.append(key)
        time.sleep(0.03)
        return "v%d" % len(runs)

    assert cache.load("k", slow).loaded
    # -ln(1.0) = 0: never early
    assert not cache.load("k", slow, random=1.0).loaded
    # delta (30 ms) * beta * -ln(1e-300) (~690) = ~21 s >= the ~10 s left: recomputed now
    early = cache.load("k", slow, random=1e-300)
    assert early.loaded and early.stored and early.value == "v2"
    assert runs == ["k", "k"]
    with pytest.raises(redpat.InvalidArgument, match="random"):
        cache.load("k", slow, random=2.0)


# -- the near-cache --------------------------------------------------------------------------

def test_near_cache(url: str, namespace: str) -> None:
    a_client = redpat.Client(url, namespace=namespace)
    b_client = redpat.Client(url, namespace=namespace)
    raw = redpat.Client(url, namespace=namespace)
    a = a_client.cache("users", ttl=60.0, near_size=100, near_ttl=30.0)
    b = b_client.cache("users", ttl=60.0, near_size=100, near_ttl=30.0)
    try:
        b.set("k", {"v": 1})
        assert not a.lookup("k").near  # its first operation starts its subscriber
        wait_for(lambda: a.info().near_armed)
        a.lookup("k")
        before = script_calls(raw)
        hits = [a.lookup("k") for _ in range(100)]
        assert all(h.near and h.hit and h.value == {"v": 1} for h in hits)
        assert script_calls(raw) == before  # no round trip
        assert a.info().near_entries == 1

        # a near hit's object is decoded once and shared by the next near hits
        assert a.get("k") is a.get("k") is a.lookup("k").value
        assert a.get(bytearray(b"k")) == {"v": 1} and a.lookup(memoryview(b"k")).near

        b.set("k", {"v": 2})  # another client's write: A's copy drops
        wait_for(lambda: a.info().near_entries == 0, 2.0)
        assert a.lookup("k").value == {"v": 2}
        assert a.lookup("k").near
        assert a.get("k") == {"v": 2}  # (not the object decoded from the old bytes)
        b.delete("k")
        wait_for(lambda: a.info().near_entries == 0, 2.0)
        assert a.get("k", "miss") == "miss"

        a.set("j", "mine")
        # (its own invalidation may come after its next read, and drop that copy)
        wait_for(lambda: a.lookup("j").near, 2.0)
        wait_for(lambda: b.info().near_armed)
        # the subscriptions drop: the near-cache is cleared, and serves again once
        # re-subscribed
        raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        wait_for(lambda: a.info().near_entries == 0, 2.0)
        wait_for(lambda: a.info().near_armed, 5.0)
        wait_for(lambda: a.lookup("j").near, 2.0)
    finally:
        a.close()
        b.close()
    assert not a.info().near_armed and "closed" in repr(a)
    assert not a.lookup("j").near  # usable, without its near-cache
    wait_for(lambda: b"cmd=" not in raw.execute_command("CLIENT", "LIST", "TYPE", "pubsub"))


def test_near_cache_without_a_subscriber_never_serves(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60.0, near_size=10, near_subscriber=False)
    cache.set("k", "v")
    assert [cache.lookup("k").near for _ in range(3)] == [False] * 3
    assert not cache.near_apply("subscribe").cleared  # a subscription of the user's own
    cache.lookup("k")
    assert cache.lookup("k").near
    assert cache.near_apply("reconnect").cleared
    assert not cache.lookup("k").near


def _forked_reader(cache: Any, url: str, namespace: str, results: Any) -> None:
    """In a forked child: the parent's near-cache was armed by a thread that does not run
    here. Another client changes the entry; the child's first read must see it."""
    redpat.Client(url, namespace=namespace).cache("users", ttl=60.0).set("k", "changed")
    found = cache.lookup("k")
    results.put((found.value, found.near))


def test_a_forked_child_does_not_trust_the_parents_near_cache(url: str,
                                                               namespace: str) -> None:
    client = redpat.Client(url, namespace=namespace)
    cache = client.cache("users", ttl=60.0, near_size=10, near_ttl=30.0)
    cache.set("k", "v")
    wait_for(lambda: cache.info().near_armed)
    wait_for(lambda: cache.lookup("k").near, 2.0)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_forked_reader, args=(cache, url, namespace, results))
    child.start()
    got = results.get(timeout=10)
    child.join(10)
    assert got == ("changed", False)
    wait_for(lambda: cache.lookup("k").value == "changed", 2.0)  # the parent's: dropped
    cache.close()


def test_a_cache_dropped_stops_its_subscriber(url: str, namespace: str) -> None:
    client = redpat.Client(url, namespace=namespace)
    raw = redpat.Client(url, namespace=namespace)
    cache = client.cache("users", ttl=60.0, near_size=10)
    cache.get("k")
    wait_for(lambda: cache.info().near_armed)
    threads = [t for t in threading.enumerate() if t.name == "redpat-cache-near"]
    assert threads
    del cache
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    wait_for(lambda: b"cmd=" not in raw.execute_command("CLIENT", "LIST", "TYPE", "pubsub"))


# -- values ----------------------------------------------------------------------------------

def test_json_is_the_default(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60.0)
    assert cache.serializer is redpat.JSON
    row = {"name": "Zoë", "tags": [1, 2], "ok": True, "none": None}
    cache.set("u", row)
    assert cache.get("u") == row
    stored = client.execute_command("HGET", cache_key(client, "users", "u"), "v")
    assert stored == '{"name":"Zoë","tags":[1,2],"ok":true,"none":null}'.encode("utf-8")
    assert cache.get_or_load("n", lambda key: 0) == 0  # falsy values are values
    assert cache.lookup("n").hit


def test_bytes_without_a_serializer(client: redpat.Client) -> None:
    cache = client.cache("raw", ttl=60.0, serializer=None)
    blob = b"\x00\xff{}\r\n"
    cache.set(b"\x00k", blob)
    assert cache.get(b"\x00k") == blob
    assert cache.get_or_load("m", lambda key: bytearray(b"ba")) == b"ba"
    with pytest.raises(TypeError, match="serializer=None"):
        cache.set("s", "a str")
    with pytest.raises(TypeError, match="serializer=None"):
        cache.get_or_load("t", lambda key: 42)
    assert cache.get("t", "miss") == "miss"  # the loader's wrong value stored nothing


def test_a_serializer_of_ones_own(client: redpat.Client) -> None:
    cache = client.cache("objs", ttl=60.0, serializer=pickle)
    value = {"set": {1, 2}, "tuple": (1, "a"), "when": datetime.date(2026, 12, 2)}
    cache.set("o", value)
    assert cache.get("o") == value

    class Upper:
        def dumps(self, obj: Any) -> bytes:
            return str(obj).upper().encode()

        def loads(self, data: bytes) -> Any:
            return data.decode().lower()

    shout = client.cache("shout", ttl=60.0, serializer=Upper())
    shout.set("x", "hello")
    assert client.execute_command("HGET", cache_key(client, "shout", "x"), "v") == b"HELLO"
    assert shout.get("x") == "hello"
    with pytest.raises(TypeError, match="serializer"):
        client.cache("bad", ttl=1.0, serializer=object())  # type: ignore[arg-type]


# -- the rest of the API ---------------------------------------------------------------------

def test_get_lookup_negative_and_tags(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60.0, negative_ttl=10.0)
    assert cache.get("nobody", "default") == "default"  # a miss
    assert cache.get_or_load("nobody", lambda key: None) is None
    found = cache.lookup("nobody")
    assert found.hit and found.negative and found.value is None
    assert cache.get("nobody", "default") is None  # a negative hit: None, not the default
    assert 9.0 < found.ttl <= 10.0
    cache.set("u", "ann", tags=["team:1", "org"])
    assert cache.get("u", tags=["team:1", "org"]) == "ann"
    cache.invalidate_tags("org")
    assert cache.get("u", "miss") == "miss"
    assert cache.delete("nobody") and not cache.delete("nobody")


def test_cached_decorator(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60.0)
    calls: List[Any] = []

    @cache.cached(key=lambda user_id, **kw: "user:%d" % user_id, tags=lambda user_id, **kw: ["u"])
    def fetch(user_id: int, full: bool = False) -> Dict[str, Any]:
        calls.append(user_id)
        return {"id": user_id, "full": full}

    assert fetch(1) == {"id": 1, "full": False}
    assert fetch(1, full=True) == {"id": 1, "full": False}  # the key ignores full
    assert calls == [1] and fetch.__name__ == "fetch"
    assert cache.get("user:1") == {"id": 1, "full": False}
    assert fetch.invalidate(1) is True  # type: ignore[attr-defined]
    fetch(1)
    assert calls == [1, 1]

    @cache.cached()
    def add(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, b=2) == 3 and add(1, b=2) == 3 and calls[-1] == (1, 2) and len(calls) == 3
    assert cache.get("%s.%s(1, b=2)" % (__name__, add.__qualname__)) == 3

    async def coroutine_fn() -> None:
        pass

    with pytest.raises(TypeError, match="coroutine function"):
        cache.cached()(coroutine_fn)


def test_bad_input_is_named_in_seconds(client: redpat.Client) -> None:
    with pytest.raises(redpat.InvalidArgument, match=r"\bttl\b.*seconds"):
        client.cache("c", ttl=0)
    with pytest.raises(redpat.InvalidArgument, match=r"\bjitter\b.*seconds"):
        client.cache("c", ttl=1.0, jitter=2.0)
    with pytest.raises(redpat.InvalidArgument, match=r"\block_ttl\b"):
        client.cache("c", ttl=10.0, lock_ttl=70.0)
    with pytest.raises(redpat.InvalidArgument, match=r"\bstampede\b"):
        client.cache("c", ttl=10.0, stampede="dogpile")
    with pytest.raises(redpat.InvalidArgument, match=r"\bnear_size\b"):
        client.cache("c", ttl=10.0, near_size=-1)
    with pytest.raises(redpat.InvalidArgument, match=r"\bname\b"):
        client.cache("a{b}", ttl=10.0)
    with pytest.raises(TypeError, match="ttl"):
        client.cache("c", ttl="soon")  # type: ignore[arg-type]
    cache = client.cache("c", ttl=datetime.timedelta(minutes=1), stale=datetime.timedelta(0))
    assert cache.info().ttl == 60.0 and cache.info().stale == 0.0
    with pytest.raises(redpat.InvalidArgument, match=r"\bkey\b"):
        cache.get("")
    with pytest.raises(redpat.InvalidArgument, match=r"\btags\b"):
        cache.get("k", tags=[str(i) for i in range(17)])
    with pytest.raises(TypeError, match="tags"):
        cache.get("k", tags="one")
    with pytest.raises(redpat.InvalidArgument, match=r"\btags\b"):
        cache.invalidate_tags()
    with pytest.raises(TypeError, match="callable"):
        cache.get_or_load("k", 42)  # type: ignore[arg-type]

    async def coroutine_loader(key: str) -> str:
        return key

    with pytest.raises(TypeError, match="coroutine function"):
        cache.get_or_load("k", coroutine_loader)
    assert client.execute_command("DBSIZE") == 0  # refused before any I/O


def test_info_and_repr(client: redpat.Client) -> None:
    cache = client.cache("users", ttl=60, stampede="swr", near_size=100)
    info = cache.info()
    assert isinstance(info, redpat.CacheInfo)
    assert (info.name, info.ttl, info.stampede, info.near_size, info.near_armed) == (
        b"users", 60.0, "swr", 100, False)
    assert cache.channel == info.channel == client.namespace + b":cache:users:inv"
    assert repr(cache) == ("<Cache 'users' ttl=60s stampede=swr serializer=redpat.JSON "
                           "near=100 (not armed, 0 entries)>")
    with cache:
        pass
    assert repr(cache).endswith(" closed>")
    assert isinstance(cache.lookup("k"), redpat.CacheResult)


def test_threads_share_a_cache(client: redpat.Client) -> None:
    cache = client.cache("shared", ttl=60.0, near_size=50)

    def work() -> None:
        for i in range(50):
            key = "k%d" % (i % 10)
            assert cache.get_or_load(key, lambda k: k.upper()) == key.upper()
            if i % 7 == 0:
                cache.delete(key)

    failures = [r for r in in_threads(8, work) if isinstance(r, BaseException)]
    cache.close()
    assert not failures, failures
