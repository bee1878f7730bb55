"""redis-py Lock parity (issue 11, items 4-6): redis-py's arguments in its order, sleep as the
retry delay with a wait that gives up when the next attempt would come after
blocking_timeout, thread_local, raise_on_release_error, LockError.lock_name, lock_class,
timeout=None refused in words; an asyncio release cancelled with its request in flight
leaves the handle saying what became of the lock; the reprs say what things are (never a
password). Real redis-servers (the harness's), no mocks; nothing here is timed: a wait's
give-up is seen in its attempt count."""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import sys
import threading
from typing import Any, Callable, Coroutine, List, TypeVar

import pytest
import redis
import redis.asyncio.lock
import redis.lock

import redpat
import redpat.asyncio as rpa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))

from delay_proxy import DelayProxy  # noqa: E402

T = TypeVar("T")


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def key(namespace: str, name: bytes = b"r") -> bytes:
    return b"%s:lock:{%s}" % (namespace.encode(), name)


def positional(fn: Callable[..., Any]) -> List[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind == p.POSITIONAL_OR_KEYWORD]


# -- item 4: the interface -------------------------------------------------------------------

@pytest.mark.parametrize("flavour", [redpat, rpa], ids=["sync", "asyncio"])
def test_arguments_in_redis_pys_order(flavour: Any) -> None:
    # Lock(redis, name, timeout, sleep, blocking, blocking_timeout, thread_local,
    # raise_on_release_error): the same positions (the first is our client)
    assert positional(flavour.Lock.__init__)[2:] == positional(redis.lock.Lock.__init__)[2:]
    assert positional(flavour.Lock.__init__)[2:] == [
        "name", "timeout", "sleep", "blocking", "blocking_timeout", "thread_local",
        "raise_on_release_error"]
    assert positional(flavour.Client.lock) == positional(redis.Redis.lock)
    # acquire: each flavour in its redis-py counterpart's order (sync: sleep first;
    # asyncio: blocking, blocking_timeout, token, with sleep a keyword)
    if flavour is redpat:
        assert positional(flavour.Lock.acquire) == positional(redis.lock.Lock.acquire) == [
            "self", "sleep", "blocking", "blocking_timeout", "token"]
        bound = flavour.Client().lock("r").acquire
        assert list(inspect.signature(bound).parameters)[:4] == [
            "sleep", "blocking", "blocking_timeout", "token"]
    else:
        assert positional(flavour.Lock.acquire) == positional(redis.asyncio.lock.Lock.acquire)
        assert inspect.signature(flavour.Lock.acquire).parameters["sleep"].kind == \
            inspect.Parameter.KEYWORD_ONLY


def test_positional_arguments_land_where_redis_py_puts_them(client: redpat.Client) -> None:
    lock = client.lock("r", 5, 0.05, False, 2.5, None, False, False)
    assert (lock.timeout, lock.sleep, lock.blocking, lock.blocking_timeout, lock.thread_local,
            lock.raise_on_release_error) == (5.0, 0.05, False, 2.5, False, False)
    direct = redpat.Lock(client, "r", 5, 0.05, True, None, True, False)
    assert (direct.sleep, direct.thread_local, direct.raise_on_release_error) == \
        (0.05, True, False)
    # redis-py's sync acquire(sleep, blocking, blocking_timeout, token)
    assert direct.acquire(0.01, False, None, b"tok") and direct.token == b"tok"
    direct.release()
    assert direct.acquire(None, False) and direct.token != b"tok"


def test_timeout_none_says_locks_always_expire(client: redpat.Client) -> None:
    for make in (lambda: client.lock("r", None), lambda: client.lock("r", timeout=None),
                 lambda: client.redlock("r", timeout=None)):
        with pytest.raises(redpat.InvalidArgument) as info:
            make()  # type: ignore[no-untyped-call]
        assert str(info.value).startswith("timeout must be a number of seconds (got None)")
        assert "always expire" in str(info.value)


def test_bad_sleep_and_a_sync_style_acquire_are_named(client: redpat.Client) -> None:
    with pytest.raises(redpat.InvalidArgument, match=r"^sleep must be >= 0.001 seconds \(got 0\)"):
        client.lock("r", sleep=0)
    with pytest.raises(TypeError, match="sleep must be a number of seconds, not bool"):
        client.lock("r", sleep=True)
    lock = client.lock("r")
    with pytest.raises(redpat.InvalidArgument, match=r"^sleep must be >= 0.001 seconds"):
        lock.acquire(sleep=-1)
    with pytest.raises(TypeError, match=r"^blocking must be a bool, not float"):
        lock.acquire(None, 0.5)  # type: ignore[arg-type]
    with pytest.raises(redpat.InvalidArgument, match=r"^sleep must be >= 0.001 seconds"):
        lock.acquire(0)  # sync: sleep comes first, as in redis-py
    assert lock.token is None


@pytest.mark.parametrize("how", ["lock", "acquire"])
def test_sleep_past_blocking_timeout_gives_up_at_once(client: redpat.Client, how: str) -> None:
    holder = client.lock("r", timeout=30)
    assert holder.acquire(blocking=False)
    if how == "lock":  # redis-py: sleep=60, blocking_timeout=1 returns False at once
        waiter = client.lock("r", timeout=5, sleep=60, blocking_timeout=1)
        assert waiter.acquire() is False
    else:
        waiter = client.lock("r", timeout=5)
        assert waiter.acquire(blocking_timeout=1, sleep=60) is False
    assert waiter.attempts == 1  # before: it slept the whole second and tried again
    assert waiter.token is None and holder.owned()


def test_sleep_is_the_retry_delay(client: redpat.Client) -> None:
    holder = client.lock("r", timeout=30)
    assert holder.acquire(blocking=False)
    waiter = client.lock("r", timeout=5, sleep=0.2)
    assert waiter.acquire(blocking_timeout=0.5) is False
    # delays jittered to [0.1, 0.2] s while the next attempt comes within 0.5 s: 2..6 tries
    assert 2 <= waiter.attempts <= 6


def test_sleep_past_blocking_timeout_asyncio(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            assert await client.lock("r", timeout=30).acquire(blocking=False)
            waiter = client.lock("r", timeout=5, sleep=60, blocking_timeout=1)
            assert await waiter.acquire() is False
            assert waiter.attempts == 1
            assert await waiter.acquire(blocking_timeout=1, sleep=60) is False
            assert waiter.attempts == 1
    run(main)


def test_a_redlock_gives_up_at_once_too(servers: Any, namespace: str) -> None:
    client = redpat.Client(servers.urls[:3], namespace=namespace)
    assert client.redlock("r", timeout=30).acquire(blocking=False)
    waiter = client.redlock("r", timeout=5, sleep=60, blocking_timeout=1)
    assert waiter.acquire() is False and waiter.attempts == 1


def in_thread(fn: Callable[[], T]) -> T:
    out: List[Any] = []

    def target() -> None:
        try:
            out.append((True, fn()))
        except BaseException as exc:  # noqa: B902 - handed back to the test's thread
            out.append((False, exc))
    t = threading.Thread(target=target)
    t.start()
    t.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def test_thread_local_token_is_the_acquiring_threads(client: redpat.Client,
                                                     namespace: str) -> None:
    lock = client.lock("r", timeout=30)
    assert lock.thread_local is True  # the default, as redis-py's
    assert lock.acquire(blocking=False)
    token = lock.token
    assert token is not None
    # another thread sharing the Lock object sees no token and cannot release or extend
    assert in_thread(lambda: lock.token) is None
    assert in_thread(lock.info).token is None and lock.info().token == token
    assert in_thread(lock.owned) is False
    assert in_thread(lock.remaining).owned is False
    for op in (lock.release, lambda: lock.extend(1), lock.reacquire):
        with pytest.raises(redpat.LockNotOwnedError) as info:
            in_thread(op)
        assert "this thread does not hold it" in str(info.value)
        assert info.value.lock_name == b"r"
    assert client.execute_command("GET", key(namespace)) == token  # untouched
    assert "held by another thread" in in_thread(lambda: repr(lock))
    lock.release()  # the acquiring thread can
    assert client.execute_command("EXISTS", key(namespace)) == 0


def test_thread_local_redis_py_timeline(client: redpat.Client, namespace: str) -> None:
    # redis-py's example: thread 1's hold expires, thread 2 takes the lock with the same
    # Lock object, thread 1 then releases: it must not release thread 2's hold
    lock = client.lock("r", timeout=0.05)
    assert lock.acquire(blocking=False)
    assert in_thread(lambda: lock.acquire(blocking_timeout=5))
    theirs = client.execute_command("GET", key(namespace))
    with pytest.raises(redpat.LockError):
        lock.release()
    assert client.execute_command("GET", key(namespace)) == theirs


def test_thread_local_false_shares_the_token(client: redpat.Client, namespace: str) -> None:
    lock = client.lock("r", timeout=30, thread_local=False)
    assert lock.acquire(blocking=False)
    assert in_thread(lambda: lock.token) == lock.token
    assert in_thread(lock.owned) is True
    in_thread(lock.release)  # a worker thread releases what this one took
    assert client.execute_command("EXISTS", key(namespace)) == 0


def test_raise_on_release_error(client: redpat.Client, namespace: str,
                                caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(redpat.LockNotOwnedError) as info:
        with client.lock("r", timeout=30):
            client.execute_command("DEL", key(namespace))  # no longer held at the exit
    assert info.value.lock_name == b"r"
    with caplog.at_level(logging.WARNING, logger="redpat"):
        with client.lock("r", timeout=30, raise_on_release_error=False):
            client.execute_command("DEL", key(namespace))
    assert "no longer held when the with block ended" in caplog.text


def test_raise_on_release_error_asyncio(url: str, namespace: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            with pytest.raises(redpat.LockNotOwnedError):
                async with client.lock("r", timeout=30):
                    await client.execute_command("DEL", key(namespace))
            with caplog.at_level(logging.WARNING, logger="redpat"):
                async with client.lock("r", timeout=30, raise_on_release_error=False):
                    await client.execute_command("DEL", key(namespace))
            assert "no longer held" in caplog.text
    run(main)


def test_lock_errors_name_the_lock(client: redpat.Client) -> None:
    assert client.lock("r", timeout=30).acquire(blocking=False)
    busy = client.lock("r", timeout=30, blocking=False)
    with pytest.raises(redpat.LockError) as info:
        with busy:
            pass
    assert info.value.lock_name == b"r"
    with pytest.raises(redpat.LockError) as info:
        busy.using(lambda: None)
    assert info.value.lock_name == b"r"
    with pytest.raises(redpat.LockNotOwnedError) as info2:
        busy.release()  # never held
    assert info2.value.lock_name == b"r"
    copy = pickle.loads(pickle.dumps(info2.value))
    assert (type(copy), copy.lock_name, copy.code, str(copy)) == \
        (redpat.LockNotOwnedError, b"r", info2.value.code, str(info2.value))
    assert redpat.LockError("x").lock_name is None


class MyLock(redpat.Lock):
    pass


class MyAsyncLock(rpa.Lock):
    pass


def test_lock_class(client: redpat.Client, url: str, namespace: str) -> None:
    lock = client.lock("r", 7, lock_class=MyLock, thread_local=False)
    assert type(lock) is MyLock and lock.timeout == 7.0 and lock.thread_local is False
    assert lock.acquire(blocking=False)
    lock.release()

    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as aclient:
            alock = aclient.lock("r", lock_class=MyAsyncLock)
            assert type(alock) is MyAsyncLock
            assert await alock.acquire(blocking=False)
            await alock.release()
    run(main)


# -- item 5: an asyncio release cancelled with its request in flight --------------------------

HOLD = 30.0  # the proxy holds far longer than any test here waits
RELEASE = rb"EVALSHA|EVAL"  # the release script (the acquire is SET ... NX: not matched)


async def eventually(check: Callable[[], Coroutine[Any, Any, bool]], within: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not await check():
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("held", ["reply", "request"])
def test_cancelled_release_leaves_the_handle_saying_what_happened(url: str, namespace: str,
                                                                  held: str) -> None:
    """The release goes out and is cancelled before its reply: the key is gone (it ran, or
    the op asked again), and the handle must say so, not keep a token whose retry raised
    LockNotOwnedError. held="request": the proxy sat on the request itself (Redis never saw
    it): the op's second ask is what releases it."""
    async def main() -> None:
        kw = {"hold_replies": RELEASE} if held == "reply" else {"hold_requests": RELEASE}
        proxy = await DelayProxy.start(url, HOLD, **kw)  # type: ignore[arg-type]
        direct = rpa.Client(url, namespace=namespace)
        client = rpa.Client(proxy.url, namespace=namespace)

        async def held_by() -> bool:
            return bool(proxy.replies_held or proxy.requests_held)
        try:
            # the release script is in Redis' cache first, so the one held is the release
            warm = direct.lock("warm")
            assert await warm.acquire(blocking=False)
            await warm.release()
            lock = client.lock("r", timeout=30)
            assert await lock.acquire(blocking=False)
            task = asyncio.ensure_future(lock.release())
            assert await eventually(held_by, 5)
            # what the op asks next (its clean-up) passes: only the first one is held
            proxy._reply_re = proxy._request_re = None
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert int(await direct.execute_command("EXISTS", key(namespace))) == 0
            assert lock.token is None  # before: the token stayed, though the key was gone
            assert await lock.owned() is False
            assert "not held" in repr(lock)
            # and the lock is free for anyone
            assert await direct.lock("r", timeout=5).acquire(blocking=False)
        finally:
            await client.close()
            await direct.close()
            await proxy.close()

    run(main)


def test_release_cancelled_before_it_went_out_keeps_the_lock(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            lock = client.lock("r", timeout=30)
            assert await lock.acquire(blocking=False)
            task = asyncio.ensure_future(lock.release())
            task.cancel()  # before it ran at all
            with pytest.raises(asyncio.CancelledError):
                await task
            assert lock.token is not None and await lock.owned()
            await lock.release()
            assert int(await client.execute_command("EXISTS", key(namespace))) == 0
    run(main)


# -- item 6: reprs ---------------------------------------------------------------------------

SECRET = "s3cret-pw"


def test_reprs_say_what_things_are(client: redpat.Client, url: str, servers: Any) -> None:
    host = url.split("://", 1)[1].split("/", 1)[0]
    for shown in (redpat.Client("redis://user:%s@%s" % (SECRET, host)),
                  rpa.Client("redis://:%s@%s" % (SECRET, host)),
                  redpat.Client("unix:///tmp/x.sock?db=2&password=%s" % SECRET),
                  redpat.Client("unix://u:%s@/tmp/x.sock" % SECRET),
                  redpat.Client(["redis://:%s@%s" % (SECRET, host), "redis://%s" % host])):
        text = repr(shown)
        assert SECRET not in text and "***" in text and "namespace=b'redpat'" in text
        assert text.startswith("<Client ")
    assert repr(redpat.Client("redis://%s/3" % host, namespace="app")) == \
        "<Client redis://%s/3 namespace=b'app'>" % host

    lock = client.lock("job", timeout=10)
    assert repr(lock) == "<Lock b'job' timeout=10s not held>"
    assert lock.acquire(blocking=False)
    assert repr(lock) == "<Lock b'job' timeout=10s held>"
    assert lock.token is not None and lock.token.decode() not in repr(lock)
    lock.release()
    assert repr(client.lock("f", timeout=1.5, fenced=True)) == \
        "<Lock b'f' timeout=1.5s fenced not held>"
    red = redpat.Client(servers.urls[:3]).redlock("x", timeout=2)
    assert repr(red) == "<Lock b'x' timeout=2s Redlock over 3 servers not held>"

    limiter = client.ratelimiter("api", "gcra", limit=10, window=60)
    assert repr(limiter) == "<RateLimiter 'api' gcra limit=10 window=60s on_error=report>"
    decision = limiter.check("u")
    assert repr(decision).startswith("Decision(allowed=True, limit=10, remaining=9, ")
    assert repr(client.fence_check("res", 3)) == "FenceResult(accepted=True, highest=3)"
    pubsub = client.pubsub(channels=["a", "b"])
    assert repr(pubsub) == "<PubSub channels=2 patterns=0>"
    pubsub.close()
