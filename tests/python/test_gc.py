"""Garbage-collected handles: a Lock keeps what it borrows alive, dropped handles free
their C memory (no growth over many cycles), and nothing leaks a Client."""
from __future__ import annotations

import gc
import resource
import weakref

import redpat
from redpat import _core


def test_lock_outlives_its_client_object(url: str, namespace: str) -> None:
    lock = redpat.Client(url, namespace=namespace).lock("r", timeout=5)
    gc.collect()
    assert lock.acquire()
    assert lock.owned()
    lock.release()


def test_core_lock_keeps_core_client_alive() -> None:
    template = _core.Client(None, b"ns", 1000, 1000, 1)
    handle = _core.Lock(template, b"name", 1000, 1)
    del template
    gc.collect()
    # The fenced acquire uses the client's namespace and script registry.
    op = _core.lock_acquire_op(handle, 0, None, None, b"tok")
    assert op.step() == _core.STEP_IO
    request = op.request(0)
    assert b"EVALSHA" in request and b"ns:lock:{name}" in request


def test_op_keeps_its_lock_alive() -> None:
    template = _core.Client(None, b"ns", 1000, 1000, 1)
    op = _core.lock_acquire_op(_core.Lock(template, b"n", 1000, 0), 0, None, None, b"tok")
    del template
    gc.collect()
    assert op.step() == _core.STEP_IO
    assert b"tok" in op.request(0)


def test_client_is_collectable(url: str) -> None:
    c = redpat.Client(url, namespace="gc")
    c.lock("x").acquire()
    ref = weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None


def rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def test_no_growth_over_many_handles(client: redpat.Client) -> None:
    def churn(n: int) -> None:
        for i in range(n):
            lock = client.lock(b"churn-%d" % (i % 50), timeout=5, fenced=i % 2 == 0)
            lock.acquire()
            lock.release()
            op = _core.command_op(client._template, [b"PING"])
            del op, lock

    churn(3000)  # warm up allocator pools
    before = rss_kb()
    churn(20000)
    grown = rss_kb() - before
    # A leak of even one small allocation per cycle would be > 2 MB here.
    assert grown < 2048, "RSS grew by %d kB" % grown
