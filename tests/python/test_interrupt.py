"""A blocking Lock.acquire waits inside the extension with the GIL released, yet a signal
ends the wait promptly: Ctrl-C (KeyboardInterrupt) or any handler that raises. The waits
between attempts are slept in short slices with Python's signal handlers run between
them; the connection stays usable afterwards."""
from __future__ import annotations

import _thread
import signal
import threading
import time
from typing import Any, Iterator

import pytest

import redpat

# Well below the 5 s the waiter is willing to wait: only an interruption explains it.
PROMPT = 0.5


class Interrupted(Exception):
    pass


@pytest.fixture
def held(client: redpat.Client) -> Iterator[redpat.Lock]:
    holder = client.lock("busy", timeout=30)
    assert holder.acquire(blocking=False)
    yield holder
    holder.release()


def test_ctrl_c_ends_a_waiting_acquire(client: redpat.Client, held: redpat.Lock) -> None:
    waiter = client.lock("busy", timeout=30)
    timer = threading.Timer(0.2, _thread.interrupt_main)  # as if Ctrl-C were pressed
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire(blocking_timeout=5, retry_min=0.2, retry_max=0.4)
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
    assert 0.15 < elapsed < 0.2 + PROMPT, elapsed
    assert not waiter.owned() and held.owned()
    # No request was left unanswered: the pooled connection still works.
    assert client.ping()
    assert waiter.acquire(blocking=False) is False


def test_a_raising_signal_handler_ends_a_wait_forever(client: redpat.Client,
                                                      held: redpat.Lock) -> None:
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted()

    waiter = client.lock("busy", timeout=30)
    old = signal.signal(signal.SIGALRM, handler)
    t0 = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(Interrupted):
            # No blocking_timeout: without the interruption this would wait for ever
            # (until the holder's 30 s TTL), and the test would time out.
            waiter.acquire(retry_min=1.0, retry_max=2.0)
        elapsed = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert elapsed < 0.3 + PROMPT, elapsed
    held.release()
    assert waiter.acquire(blocking=False)  # the same handle and client carry on
    waiter.release()
    assert held.acquire(blocking=False)


def test_a_handler_that_returns_lets_the_wait_go_on(client: redpat.Client) -> None:
    calls = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    holder = client.lock("short", timeout=0.6)
    assert holder.acquire(blocking=False)
    waiter = client.lock("short", timeout=5)
    signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
    try:
        t0 = time.monotonic()
        assert waiter.acquire(blocking_timeout=3, retry_min=0.05, retry_max=0.1)
        elapsed = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    waiter.release()
    assert calls, "the handler ran during the wait"
    assert 0.4 < elapsed < 1.5, elapsed  # acquired once the holder's TTL ran out
