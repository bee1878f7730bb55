"""Garbage-collected handles: a Lock or RateLimiter keeps what it borrows alive, dropped handles free
their C memory (no growth over many cycles), and nothing leaks a Client."""
from __future__ import annotations

import gc
import resource
import weakref

import redpat
from redpat import _core


def scripts_in(request: bytes) -> int:
    """How many scripts a request runs (EVAL with the source: a target not known to have
    it yet; EVALSHA once it is)."""
    return request.count(b"\r\nEVAL\r\n") + request.count(b"\r\nEVALSHA\r\n")


def test_lock_outlives_its_client_object(url: str, namespace: str) -> None:
    lock = redpat.Client(url, namespace=namespace).lock("r", timeout=5)
    gc.collect()
    assert lock.acquire()
    assert lock.owned()
    lock.release()


def test_core_lock_keeps_core_client_alive() -> None:
    template = _core.make("client.new", None, b"ns")
    handle = _core.make("lock.new", template, b"name", 1, True)
    del template
    gc.collect()
    # The fenced acquire uses the client's namespace and script registry.
    op = _core.begin("lock.acquire", handle, 0, None, None, b"tok")
    step, (request,) = _core.step(op)
    assert step == _core.STEP_IO
    assert scripts_in(request) == 1 and b"ns:lock:{name}" in request


def test_op_keeps_its_lock_alive() -> None:
    template = _core.make("client.new", None, b"ns")
    op = _core.begin("lock.acquire", _core.make("lock.new", template, b"n", 1), 0, None, None,
                     bytearray(b"tok"))
    del template
    gc.collect()
    step, (request,) = _core.step(op)
    assert step == _core.STEP_IO and b"tok" in request


def test_limiter_ops_keep_their_limiters_alive() -> None:
    template = _core.make("client.new", None, b"ns")
    limiters = [_core.make("ratelimit.new", template, "a", "gcra", 5, 1),
                _core.make("ratelimit.new", template, "b", "fixed_window", 5, 1)]
    check = _core.begin("ratelimit.check", limiters[0], b"subj", 1)
    multi = _core.begin("ratelimit.multi", limiters, b"subj", 1)
    batch = _core.begin("ratelimit.batch", limiters[1], iter([b"x", "y"]))
    limiters.clear()  # the multi op holds a copy of the sequence, not the list itself
    del template
    gc.collect()
    assert b"ns:rl:a:{subj}" in _core.step(check)[1][0]
    request = _core.step(multi)[1][0]
    assert b"ns:rl:a:{subj}" in request and b"ns:rl:b:{subj}" in request
    assert scripts_in(_core.step(batch)[1][0]) == 2


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
            op = _core.begin("client.command", client._x.template, [b"PING"])
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
