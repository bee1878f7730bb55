"""Lock as a context manager, and redis-py's Lock interface."""
from __future__ import annotations

import time

import pytest

import redpat


def key(client: redpat.Client, name: bytes) -> bytes:
    return b"%s:lock:{%s}" % (client.namespace, name)


def test_with_acquires_and_releases(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=5)
    with lock as held:
        assert held is lock
        assert lock.owned() and lock.locked()
        assert client.execute_command("GET", key(client, b"job")) == lock.token
    assert not lock.locked()
    assert lock.token is None


def test_with_releases_when_the_body_raises(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=5)
    with pytest.raises(ZeroDivisionError):
        with lock:
            1 / 0
    assert not lock.locked()


def test_with_raises_lock_error_when_busy(client: redpat.Client) -> None:
    holder = client.lock("job", timeout=5)
    assert holder.acquire()
    other = client.lock("job", timeout=5, blocking_timeout=0.1)
    with pytest.raises(redpat.LockError):
        with other:
            pytest.fail("entered a held lock")
    # it waited, retrying, and gave up once the next attempt would come after 0.1 s (as
    # redis-py: never sleeping past blocking_timeout, so possibly a little before it)
    assert other.attempts >= 2
    non_blocking = client.lock("job", blocking=False)
    with pytest.raises(redpat.LockError):
        with non_blocking:
            pytest.fail("entered a held lock")
    assert holder.owned()


def test_with_exit_after_expiry_raises_not_owned(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=0.1)
    with pytest.raises(redpat.LockNotOwnedError):
        with lock:
            time.sleep(0.2)


def test_redis_py_interface(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=2.0)
    assert lock.timeout == 2.0
    assert lock.name == b"job"
    assert lock.acquire(blocking=True, blocking_timeout=None, token="my-token") is True
    assert lock.token == b"my-token"
    assert lock.extend(10, replace_ttl=False) is True
    pttl = client.execute_command("PTTL", key(client, b"job"))
    assert 10000 < pttl <= 12000
    assert lock.extend(1.5, replace_ttl=True) is True
    assert client.execute_command("PTTL", key(client, b"job")) <= 1500
    assert lock.reacquire() is True
    assert 1500 < client.execute_command("PTTL", key(client, b"job")) <= 2000
    assert lock.acquire(blocking=False) is False  # already held (by this handle): busy
    lock.release()
    assert lock.acquire(blocking=False) is True
    lock.release()


def test_blocking_acquire_waits_for_expiry(client: redpat.Client) -> None:
    first = client.lock("job", timeout=0.2)
    assert first.acquire()
    second = client.lock("job", timeout=5)
    t0 = time.monotonic()
    assert second.acquire(blocking_timeout=3, retry_min=0.01, retry_max=0.05)
    assert 0.1 < time.monotonic() - t0 < 2.0


def test_sleep_sets_the_retry_delay(client: redpat.Client) -> None:
    holder = client.lock("job", timeout=5)
    assert holder.acquire()
    waiter = client.lock("job", sleep=0.05, blocking_timeout=0.3)
    t0 = time.monotonic()
    assert waiter.acquire() is False
    assert 0.25 < time.monotonic() - t0 < 1.5


def test_fenced_lock_and_fence_check(client: redpat.Client) -> None:
    a = client.lock("job", timeout=0.1, fenced=True)
    b = client.lock("job", timeout=5, fenced=True)
    assert a.acquire() and a.fence == 1
    time.sleep(0.2)  # a's lock expires: a is now a stale holder
    assert b.acquire() and b.fence == 2
    assert client.fence_check("db", b.fence) == (True, 2)
    r = client.fence_check("db", a.fence)
    assert r.accepted is False and r.highest == 2
    unfenced = client.lock("other")
    assert unfenced.acquire() and unfenced.fence == 0


def test_client_context_manager(url: str, namespace: str) -> None:
    with redpat.Client.from_url(url, namespace=namespace) as c:
        with c.lock("x"):
            pass
    assert c.ping()  # usable after close: it reconnects


def test_locked_decorator(client: redpat.Client) -> None:
    seen = []

    @client.locked("report", timeout=5, blocking_timeout=0.1)
    def report(x: int) -> int:
        """Docstring kept."""
        seen.append(client.lock("report").locked())
        return x * 2

    assert report(21) == 42 and seen == [True]
    assert report.__doc__ == "Docstring kept."
    assert not client.lock("report").locked()
    holder = client.lock("report", timeout=5)
    assert holder.acquire()
    with pytest.raises(redpat.LockError):
        report(1)
    with pytest.raises(redpat.InvalidArgument, match=r"^timeout must be > 0 seconds \(got -1\)$"):
        client.locked("report", timeout=-1)
