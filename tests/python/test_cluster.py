"""Redis Cluster through redpat.Client (issue 12): a redis+cluster:// URL and nothing else.

Runs under `harness.py run --cluster --servers 1 --replicas 1` (mk/python.mk): three
masters with a replica each, found through tests/harness (attach_cluster), which moves
slots (migrate_slot) and kills masters here. The routing, MOVED / ASK / TRYAGAIN, topology
refreshes and retries are the core's: these tests only look at what a user sees.
(a) locks and limiters over many names land on every master and behave as on one node;
(b) a reshard of a live lock's slot and a live limiter subject's, back and forth while
threads loop on them: no error reaches the user, no decision lost or doubled, fenced tokens
strictly increase; (c) the ASK window (slot MIGRATING, keys moving one by one) is invisible;
(d) a master SIGKILLed: the calls in flight fail with a ConnectionError within the command
timeout, and once its replica is promoted the same Client works again; (e) a raw command
whose keys span slots, or with no key to route by, is refused before any I/O.
test_cluster_asyncio.py does the same through redpat.asyncio.
"""
from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from typing import Any, Dict, List

import pytest

import redpat
from conftest import (asking_calls, client_connections, cluster_command, error_replies,
                      freeze_master, kill_frozen, master_with_replica, names_in_slots,
                      other_master, slots_of)
from harness import RedisCluster, key_slot

# every call of a test's client ends within this (command and connect timeouts)
TIMEOUT = 1.0
# slack on TIMEOUT for a loaded machine (the core's retries of a request that could not be
# sent, a refused connect, pause within the command timeout)
MARGIN = 0.5
# a limit no test loop reaches (the ASK window's makes ~300-400 checks)
LIMIT = 100000


@pytest.fixture
def ns() -> str:
    return "c-" + uuid.uuid4().hex[:10]


def client(url: str, ns: str) -> redpat.Client:
    return redpat.Client(url, namespace=ns, command_timeout=TIMEOUT, connect_timeout=TIMEOUT)


def test_key_slot_is_redis_own(cluster: RedisCluster) -> None:
    node = cluster.masters()[0]
    for key in ("a", "{r-1}", "redpat:lock:{x}", "x{}y", "{}{a}", "{a}{b}", "\u00e9t\u00e9"):
        assert node.call("CLUSTER", "KEYSLOT", key) == key_slot(key), key


def test_names_land_on_every_master(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    cluster.refresh()
    masters = cluster.masters()
    assert len(masters) == 3
    names = [n for m in masters for n in names_in_slots(slots_of(cluster, m), 8, "n" + m.addr)]
    c = client(cluster_url, ns)
    try:
        locks = [c.lock(n, timeout=30, fenced=True) for n in names]
        for lock in locks:
            assert lock.acquire(blocking=False), lock.name
            assert lock.fence >= 1
        for n in names:  # held: a second owner is refused, wherever the name lives
            assert not c.lock(n, timeout=30).acquire(blocking=False), n
        for m in masters:  # each name's keys are on the master of its slot, and only there
            mine = slots_of(cluster, m)
            for n in names:
                count = m.call("CLUSTER", "COUNTKEYSINSLOT", key_slot(n))
                assert (count >= 1) == (key_slot(n) in mine), (n, m.addr, count)
        fences = [lock.fence for lock in locks]
        for lock in locks:
            lock.release()
        again = [c.lock(n, timeout=30, fenced=True) for n in names]
        for lock, before in zip(again, fences):
            assert lock.acquire(blocking=False)
            assert lock.fence > before
            lock.release()
        api = c.ratelimiter("api", "fixed_window", limit=2, window=60.0)
        for n in names:
            decisions = [api.check(n) for _ in range(3)]
            assert [d.allowed for d in decisions] == [True, True, False], n
            assert [d.remaining for d in decisions] == [1, 0, 0], n
        gcra = c.ratelimiter("g", "gcra", limit=5, window=1.0)
        assert all(gcra.check(n) for n in names)
        assert [d.allowed for d in gcra.batch(names)] == [True] * len(names)
    finally:
        c.close()


def test_reshard_under_load(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    """The slots of a live lock and a live limiter subject move between masters (keys one
    at a time, so some calls meet MOVED, ASK and TRYAGAIN) while threads loop on them."""
    cluster.refresh()
    a, b = cluster.masters()[:2]
    lock_name = names_in_slots(slots_of(cluster, a), 1, "lk")[0]
    subject = names_in_slots(slots_of(cluster, b), 1, "sj")[0]
    c = client(cluster_url, ns)
    limit = 100000
    limiter = c.ratelimiter("rs", "fixed_window", limit=limit, window=600.0)
    stop = threading.Event()
    errors: List[BaseException] = []
    fences: List[int] = []
    remaining: List[List[int]] = [[], []]
    cap = limit // 2 - 1  # checks per checker thread: every one must be allowed

    def locker() -> None:
        lock = c.lock(lock_name, timeout=10, fenced=True)
        try:
            while not stop.is_set():
                assert lock.acquire(blocking_timeout=10)
                fences.append(lock.fence)  # under the lock: in the order it was held
                lock.release()
        except BaseException as exc:
            errors.append(exc)

    def checker(i: int) -> None:
        try:
            while not stop.is_set() and len(remaining[i]) < cap:
                d = limiter.check(subject)
                assert d.allowed and not d.degraded, d
                remaining[i].append(d.remaining)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=locker) for _ in range(3)]
    threads += [threading.Thread(target=checker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    moves = 0
    moved_before = error_replies(cluster, "MOVED")
    try:
        time.sleep(0.2)
        for _ in range(2):  # there and back again (to another master each time)
            for slot in (key_slot(lock_name), key_slot(subject)):
                cluster.migrate_slot(slot, other_master(cluster, slot), batch=1,
                                     between_batches=0.05)
                moves += 1
                time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    try:
        assert not errors, errors
        assert moves == 4
        assert error_replies(cluster, "MOVED") > moved_before  # met, followed, unseen
        assert len(fences) > 10
        assert all(x < y for x, y in zip(fences, fences[1:])), fences
        n = len(remaining[0]) + len(remaining[1])
        assert n > 10
        # each check consumed exactly one: remaining took every value once
        assert sorted(remaining[0] + remaining[1]) == list(range(limit - n, limit))
        assert limiter.check(subject, cost=0).remaining == limit - n
    finally:
        c.close()


def test_ask_window(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    """While a slot is MIGRATING with its keys still (or partly) on the source, locks and
    checks on it go on: the core follows ASK (ASKING then the request at the target)."""
    cluster.refresh()
    src = cluster.masters()[0]
    slot = key_slot(names_in_slots(slots_of(cluster, src), 1, "ask")[0])
    names = names_in_slots({slot}, 8, "ask")
    dst = other_master(cluster, slot)
    c = client(cluster_url, ns)
    limiter = c.ratelimiter("ask", "fixed_window", limit=LIMIT, window=600.0)
    held = [c.lock(n, timeout=30) for n in names[:4]]
    free = names[4:]
    try:
        for lock in held:
            assert lock.acquire(blocking=False)
        checks = 1
        assert limiter.check(names[0]).remaining == LIMIT - 1
        before = asking_calls(dst)
        asked_before = error_replies(cluster, "ASK")
        moving = threading.Thread(target=lambda: cluster.migrate_slot(
            slot, dst, pause=0.5, batch=1, between_batches=0.1))
        moving.start()
        rounds = 0
        while moving.is_alive() or rounds < 3:
            rounds += 1
            for n in free:  # no key on the source: ASK
                lock = c.lock(n, timeout=30)
                assert lock.acquire(blocking=False), n
                assert lock.locked()
                lock.release()
            for lock in held:  # their keys move one by one
                assert lock.owned()
                assert lock.extend(1.0)
            d = limiter.check(names[0])
            checks += 1
            assert d.allowed and d.remaining == LIMIT - checks, d
        moving.join()
        assert cluster.slot_owner(slot).addr == dst.addr
        assert error_replies(cluster, "ASK") > asked_before  # the ASK window was met
        assert asking_calls(dst) > before  # and followed
        for lock in held:
            lock.release()  # still owned: nothing was lost on the way
        assert limiter.check(names[0], cost=0).remaining == LIMIT - checks
    finally:
        c.close()


def test_pool_per_node(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    """max_connections bounds the connections to each node: 12 threads over names on all
    three masters, max_connections=2: every call succeeds, no master sees more than 2."""
    cluster.refresh()
    names = [n for m in cluster.masters() for n in names_in_slots(slots_of(cluster, m), 4,
                                                                   "p" + m.addr)]
    c = redpat.Client(cluster_url, namespace=ns, max_connections=2, command_timeout=5.0)
    limiter = c.ratelimiter("pool", "fixed_window", limit=10000, window=600.0)
    errors: List[BaseException] = []
    peak: Dict[str, int] = {}
    stop = threading.Event()

    def work() -> None:
        try:
            for _ in range(30):
                for n in names:
                    assert limiter.check(n).allowed
        except BaseException as exc:
            errors.append(exc)

    before = client_connections(cluster)  # (other clients', still open)

    def sample() -> None:
        while not stop.is_set():
            for addr, ids in client_connections(cluster).items():
                peak[addr] = max(peak.get(addr, 0), len(ids - before.get(addr, set())))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=work) for _ in range(12)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        sampler.join()
    try:
        assert not errors, errors[:3]
        assert len(peak) == 3 and all(1 <= n <= 2 for n in peak.values()), peak
        assert limiter.check(names[0], cost=0).remaining == 10000 - 12 * 30
    finally:
        c.close()


def test_cross_slot_and_keyless_refused_before_io(cluster_url: str, ns: str) -> None:
    with socket.socket() as s:  # a seed nobody listens on: any I/O would fail to connect
        s.bind(("127.0.0.1", 0))
        nowhere = redpat.Client("redis+cluster://127.0.0.1:%d" % s.getsockname()[1],
                                connect_timeout=TIMEOUT)
    assert key_slot("a") != key_slot("b")
    for c in (nowhere, client(cluster_url, ns)):
        with pytest.raises(redpat.InvalidArgument) as refused:
            c.execute_command("MGET", "a", "b")
        assert isinstance(refused.value, ValueError)
        message = str(refused.value)
        assert "slot" in message, message
        assert re.search(r"\ba\b", message) and re.search(r"\bb\b", message), message
        with pytest.raises(redpat.InvalidArgument) as keyless:
            c.execute_command("DBSIZE")
        assert "key" in str(keyless.value), str(keyless.value)
    c = client(cluster_url, ns)
    try:
        assert c.execute_command("SET", "{t}a", "1") == b"OK"
        assert c.execute_command("MGET", "{t}a", "{t}b") == [b"1", None]  # one slot: fine
        assert cluster_command(c, "DBSIZE", key="{t}") == 1  # the node of {t}'s slot
        other = next(k for k in ("x", "y", "z", "w") if key_slot(k) != key_slot("{t}"))
        assert isinstance(cluster_command(c, "DBSIZE", key=other), int)
        assert c.execute_command("GET", "{t}a") == b"1"  # keys the core knows: no key=
        with pytest.raises(redpat.InvalidArgument):
            c.execute_command("PING")  # no key: refused as DBSIZE is
        assert cluster_command(c, "PING", key="anything") == b"PONG"
        assert c.ping() is True  # Client.ping asks slot 0's master
    finally:
        c.close()


def test_failover(cluster: RedisCluster, cluster_url: str, ns: str) -> None:
    """The master of a lock's slot is SIGKILLed while calls wait on it: they fail with a
    ConnectionError within the command timeout; once its replica is promoted, the same
    Client goes on (the core refreshes its map after the failure)."""
    victim = master_with_replica(cluster)
    name = names_in_slots(slots_of(cluster, victim), 1, "fo")[0]
    c = client(cluster_url, ns)
    limiter = c.ratelimiter("fo", "fixed_window", limit=100, window=600.0)
    try:
        lock = c.lock(name, timeout=5)
        assert lock.acquire(blocking=False)
        lock.release()
        assert limiter.check(name).allowed
        outcomes: Dict[str, Any] = {}

        def in_flight(what: str, fn: Any) -> None:
            started = time.monotonic()
            try:
                outcomes[what] = fn()
            except BaseException as exc:
                outcomes[what] = exc
            outcomes[what + ".ended"] = time.monotonic()
            outcomes[what + ".took"] = time.monotonic() - started

        pid = freeze_master(cluster, victim)
        try:
            calls = [threading.Thread(target=in_flight, args=(
                        "lock", lambda: c.lock(name, timeout=5).acquire(blocking=False))),
                     threading.Thread(target=in_flight, args=(
                        "check", lambda: limiter.check(name)))]
            for t in calls:
                t.start()
            time.sleep(0.3)  # sent, unanswered
        finally:
            kill_frozen(victim, pid)
        killed = time.monotonic()
        for t in calls:
            t.join(10)
            assert not t.is_alive()
        for what in ("lock", "check"):
            exc = outcomes[what]
            print("in flight at the kill: %s: %s: %s (%.0f ms after it)"
                  % (what, type(exc).__name__, exc, (outcomes[what + ".ended"] - killed) * 1000))
            assert isinstance(exc, redpat.ConnectionError), (what, exc)
            # within the command timeout (a failed acquire's clean-up release included)
            assert outcomes[what + ".ended"] - killed < TIMEOUT + MARGIN, outcomes
        # until the replica takes over: clear errors, each within the timeouts, never a hang
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                probe = c.lock(name, timeout=5)
                if probe.acquire(blocking=False):
                    probe.release()
                    break
            except (redpat.ConnectionError, redpat.TimeoutError, redpat.ResponseError) as exc:
                assert time.monotonic() - started < 3 * TIMEOUT + MARGIN, exc
                time.sleep(0.1)
        else:
            pytest.fail("no lock on %s's slot within 30 s of its master's death" % name)
        new_master = cluster.wait_failover(victim)
        assert new_master.addr != victim.addr
        # the same Client, after the promotion: every kind of call works
        lock = c.lock(name, timeout=5, fenced=True)
        assert lock.acquire(blocking_timeout=10)
        lock.release()
        assert limiter.check(name).allowed
        assert c.execute_command("SET", "{%s}k" % name, "v") == b"OK"
        assert cluster_command(c, "DBSIZE", key="{%s}" % name) >= 1
    finally:
        c.close()
