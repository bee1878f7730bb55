"""Garbage-collected handles: a Lock or RateLimiter keeps what it borrows alive, dropped handles free
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


def test_limiter_ops_keep_their_limiters_alive() -> None:
    template = _core.Client(None, b"ns", 1000, 1000, 1)
    limiters = [_core.Limiter(template, "a", "gcra", 5, 1000, 0, "report"),
                _core.Limiter(template, "b", "fixed_window", 5, 1000, 0, "report")]
    check = _core.ratelimit_check_op(limiters[0], b"subj", 1)
    multi = _core.ratelimit_multi_op(limiters, b"subj", 1)
    batch = _core.ratelimit_batch_op(limiters[1], [b"x", b"y"], None)
    limiters.clear()  # the multi op holds a copy of the sequence, not the list itself
    del template
    gc.collect()
    assert check.step() == _core.STEP_IO and b"ns:rl:a:{subj}" in check.request(0)
    assert multi.step() == _core.STEP_IO
    request = multi.request(0)
    assert b"ns:rl:a:{subj}" in request and b"ns:rl:b:{subj}" in request
    assert batch.step() == _core.STEP_IO and batch.request(0).count(b"EVALSHA") == 2


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
            limiter = client.ratelimiter(b"churn-%d" % (i % 50), "sliding_log", limit=5,
                                         window=1.0, on_error="fail_open")
            limiter.check(b"s-%d" % (i % 7))
            limiter.batch([b"a", b"b"], [1, 2])
            client.ratelimit_multi([limiter], b"m")
            del op, lock, limiter

    churn(3000)  # warm up allocator pools
    before = rss_kb()
    churn(20000)
    grown = rss_kb() - before
    # A leak of even one small allocation per cycle would be > 2 MB here.
    assert grown < 2048, "RSS grew by %d kB" % grown
