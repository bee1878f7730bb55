"""The opt-in auto-renew watchdog: renews at ttl/3, stops at the hold cap, and a failed
renewal is never silent (callback, lock.lost, LockLostError when leaving `with`)."""
from __future__ import annotations

import gc
import threading
import time
from typing import List

import pytest

import redpat


def key(client: redpat.Client, name: bytes) -> bytes:
    return b"%s:lock:{%s}" % (client.namespace, name)


def test_renews_past_the_ttl(client: redpat.Client) -> None:
    lost: List[BaseException] = []
    lock = client.lock("job", timeout=0.3, auto_renew=True,
                       on_lost=lambda l, e: lost.append(e))
    with lock:
        time.sleep(1.0)  # more than three TTLs
        assert lock.owned()
        assert 0 < client.execute_command("PTTL", key(client, b"job")) <= 300
    assert not lost and not lock.lost
    assert client.execute_command("EXISTS", key(client, b"job")) == 0


def test_lost_renewal_calls_back_and_raises_at_exit(client: redpat.Client) -> None:
    called = threading.Event()
    seen: List[BaseException] = []

    def on_lost(lock: redpat.Lock, err: BaseException) -> None:
        seen.append(err)
        called.set()

    lock = client.lock("job", timeout=0.3, auto_renew=True, on_lost=on_lost)
    with pytest.raises(redpat.LockLostError) as info:
        with lock:
            # Someone else's hands on the key (or an expiry during a long pause).
            client.execute_command("DEL", key(client, b"job"))
            assert called.wait(2.0)
            assert lock.lost
    assert isinstance(seen[0], redpat.LockLostError)
    assert isinstance(info.value.__cause__, redpat.LockNotOwnedError)


def test_lost_renewal_on_connection_failure(server: object) -> None:
    from harness import RedisServer
    assert isinstance(server, RedisServer)
    client = redpat.Client(server.url, namespace="wd", command_timeout=0.2,
                           connect_timeout=0.2)
    called = threading.Event()
    lock = client.lock("job", timeout=0.3, auto_renew=True, on_lost=lambda l, e: called.set())
    assert lock.acquire()
    server.stop()
    assert called.wait(3.0)
    assert lock.lost


def test_max_hold_caps_the_renewals(client: redpat.Client) -> None:
    lost: List[BaseException] = []
    lock = client.lock("job", timeout=0.3, auto_renew=True, max_hold=0.5,
                       on_lost=lambda l, e: lost.append(e))
    assert lock.acquire()
    time.sleep(0.3)
    assert lock.owned()  # renewed once already
    time.sleep(0.8)  # past the cap: the lock ran out on its own
    assert not lock.locked()
    assert not lost  # reaching the cap is not a failure...
    with pytest.raises(redpat.LockNotOwnedError):
        lock.release()  # ...but the holder learns it no longer holds the lock


def test_release_stops_the_watchdog(client: redpat.Client) -> None:
    lost: List[BaseException] = []
    lock = client.lock("job", timeout=0.15, auto_renew=True,
                       on_lost=lambda l, e: lost.append(e))
    assert lock.acquire()
    lock.release()
    other = client.lock("job", timeout=5)
    assert other.acquire(blocking=False)
    time.sleep(0.3)
    assert not lost  # no renewal attempt (which would fail) after the release
    assert other.owned()


def test_garbage_collected_lock_stops_renewing(client: redpat.Client) -> None:
    lock = client.lock("job", timeout=0.2, auto_renew=True)
    assert lock.acquire()
    del lock
    gc.collect()
    time.sleep(0.5)
    assert client.execute_command("EXISTS", key(client, b"job")) == 0


def test_bad_max_hold(client: redpat.Client) -> None:
    with pytest.raises(redpat.InvalidArgument, match="max_hold"):
        client.lock("job", auto_renew=True, max_hold=0)
