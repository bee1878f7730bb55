"""Fixtures for redpat's Python tests: a private redis-server (tests/harness) unless
REDPAT_TEST_URL points at one, five of them for the tests over several servers (the
harness's REDPAT_TEST_URLS / REDPAT_TEST_PIDS under `harness.py run --servers 5`, else
private ones), and clients with a namespace of their own per test."""
from __future__ import annotations

import inspect
import os
import re
import signal
import sys
import uuid
from typing import TYPE_CHECKING, Dict, Iterator, List, NamedTuple, Set

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

from harness import RedisServer, RedisServers, TlsFiles, make_tls_files  # noqa: E402

import redpat  # noqa: E402

if TYPE_CHECKING:
    from harness import ClusterNode, RedisCluster


@pytest.fixture(scope="session")
def url() -> Iterator[str]:
    env = os.environ.get("REDPAT_TEST_URL")
    if env:
        yield env
        return
    with RedisServer() as srv:
        yield srv.url


@pytest.fixture
def namespace() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def client(url: str, namespace: str) -> Iterator[redpat.Client]:
    c = redpat.Client(url, namespace=namespace)
    c.execute_command("FLUSHALL")  # tests run one at a time: each starts on an empty server
    yield c
    c.close()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of the test's own, for tests that stop, pause or restart it."""
    with RedisServer() as srv:
        yield srv


class Servers(NamedTuple):
    """Five test servers: their URLs and pids (for SIGSTOP / SIGCONT)."""

    urls: List[str]
    pids: List[int]

    def stop(self, *which: int) -> None:
        for i in which:
            os.kill(self.pids[i], signal.SIGSTOP)

    def cont(self, *which: int) -> None:
        for i in which or range(len(self.pids)):
            os.kill(self.pids[i], signal.SIGCONT)


@pytest.fixture(scope="session")
def five() -> Iterator[Servers]:
    urls = [u for u in os.environ.get("REDPAT_TEST_URLS", "").split(",") if u]
    pids = [int(p) for p in os.environ.get("REDPAT_TEST_PIDS", "").split(",") if p]
    if len(urls) >= 5 and len(pids) >= 5:
        yield Servers(urls[:5], pids[:5])
        return
    with RedisServers(5) as servers:
        yield Servers([srv.url for srv in servers], [srv.pid for srv in servers])


@pytest.fixture
def servers(five: Servers) -> Iterator[Servers]:
    """The five servers, emptied first, every one running again afterwards (a test may
    stop some)."""
    for url in five.urls:
        redpat.Client(url).execute_command("FLUSHALL")
    try:
        yield five
    finally:
        five.cont()


# -- TLS (issue 11, item 8): test_tls.py (sync) and test_tls_asyncio.py --------------------

class Tls(NamedTuple):
    files: TlsFiles
    urls: List[str]  # rediss:// URLs of five TLS-only servers

    @property
    def url(self) -> str:
        return self.urls[0]


@pytest.fixture(scope="session")
def tls() -> Iterator[Tls]:
    env_dir = os.environ.get("REDPAT_TEST_TLS_DIR")
    urls = [u for u in os.environ.get("REDPAT_TEST_URLS", "").split(",") if u]
    if env_dir and len(urls) >= 5 and all(u.startswith("rediss://") for u in urls):
        yield Tls(TlsFiles(env_dir), urls[:5])
        return
    files = make_tls_files()
    try:
        with RedisServers(5, tls=files) as servers:
            yield Tls(files, [s.url for s in servers])
    finally:
        files.cleanup()


@pytest.fixture(scope="session")
def strict(tls: Tls) -> Iterator[RedisServer]:
    """A TLS server that refuses clients without a certificate (--tls-auth-clients yes)."""
    with RedisServer(tls=tls.files, tls_auth_clients="yes") as srv:
        yield srv


# -- Redis Cluster (issue 12): test_cluster.py (sync) and test_cluster_asyncio.py ----------
# They run under `harness.py run --cluster --servers 1 --replicas 1` (mk/python.mk, a
# pytest invocation of their own): three masters with a replica each, which the tests
# reshard and fail over. Anywhere else (the main pytest run over five single servers) they
# are not collected.

CLUSTER = os.environ.get("REDPAT_TEST_CLUSTER") == "1"
collect_ignore_glob = [] if CLUSTER else ["test_cluster*.py"]


def cluster_command(client: redpat.Client, *argv: object, key: object = None) -> object:
    """A raw command over a sync client, routed by key on a cluster: execute_command's key=
    once it has one, else the core's client.command op with its key argument."""
    if key is None:
        return client.execute_command(*argv)
    if "key" in inspect.signature(client.execute_command).parameters:
        return client.execute_command(*argv, key=key)
    x = client._x
    args = [a if isinstance(a, bytes) else str(a).encode() for a in argv]
    reply = x.call("client.command", x.template, args,
                   key if isinstance(key, bytes) else str(key).encode()).reply
    if isinstance(reply, BaseException):
        raise reply
    return reply


@pytest.fixture(scope="session")
def cluster() -> Iterator["RedisCluster"]:
    """The harness's cluster (REDPAT_TEST_URL: a redis+cluster:// URL), as tests/harness's
    RedisCluster found from it: migrate_slot, kill_master, wait_failover, slot_owner..."""
    from harness import attach_cluster
    url = os.environ.get("REDPAT_TEST_URL", "")
    if not CLUSTER or "+cluster://" not in url:
        pytest.fail("the cluster tests need harness.py run --cluster --servers 1 --replicas 1 "
                    "(REDPAT_TEST_URL a redis+cluster:// URL); make test-python-cluster runs them so")
    c = attach_cluster(url)
    c.wait_consistent()
    yield c


@pytest.fixture
def cluster_url(cluster: "RedisCluster") -> str:
    """The cluster's URL, every live master flushed first (a test starts on no keys)."""
    cluster.wait_consistent()
    cluster.flush_all()
    return os.environ["REDPAT_TEST_URL"]


def names_in_slots(slots: "set[int]", count: int, prefix: str = "r") -> List[str]:
    """count names (prefix-N) whose hash slot (the one of every key of a lock or a
    limiter subject by that name: they are hash-tagged on it) is in slots."""
    from harness import key_slot
    out: List[str] = []
    i = 0
    while len(out) < count:
        name = "%s-%d" % (prefix, i)
        if key_slot(name) in slots:
            out.append(name)
        i += 1
    return out


def slots_of(cluster: "RedisCluster", master: "ClusterNode") -> "set[int]":
    """The slots master serves (one CLUSTER SLOTS view)."""
    view = cluster.wait_consistent(replicas_synced=False)
    return {s for r in view if r[2] == master.addr for s in range(r[0], r[1] + 1)}


def other_master(cluster: "RedisCluster", slot: int) -> "ClusterNode":
    """A live master other than the one serving slot."""
    cluster.refresh()
    owner = cluster.slot_owner(slot)
    return next(m for m in cluster.masters() if m.addr != owner.addr)


def master_with_replica(cluster: "RedisCluster") -> "ClusterNode":
    """A live master with a live, synced replica (a failover test's victim): the first
    such one in the URL's seed list, so that the first failover kills the first seed (the
    clients made afterwards must read the topology from another)."""
    cluster.wait_consistent()
    seeds = os.environ.get("REDPAT_TEST_URL", "").split("://", 1)[-1].split(",")
    order = {addr: i for i, addr in enumerate(seeds)}
    for m in sorted(cluster.masters(), key=lambda m: order.get(m.addr, len(order))):
        if cluster.replicas_of(m):
            return m
    raise RuntimeError("no master with a live replica left")


def asking_calls(node: "ClusterNode") -> int:
    """How many ASKING commands node has served (INFO commandstats)."""
    stat = node.info("commandstats").get("cmdstat_asking", "")
    fields = dict(kv.split("=", 1) for kv in stat.split(",") if "=" in kv)
    return int(fields.get("calls", 0))


def freeze_master(cluster: "RedisCluster", master: "ClusterNode") -> int:
    """SIGSTOPs master (its pid and slots noted first, for kill_frozen and
    RedisCluster.wait_failover): requests sent to it now stay in flight."""
    cluster.refresh()
    pid = master.pid
    view = cluster.wait_consistent(replicas_synced=False)
    master.served = [(r[0], r[1]) for r in view if r[2] == master.addr]
    os.kill(pid, signal.SIGSTOP)
    return pid


def kill_frozen(master: "ClusterNode", pid: int) -> None:
    """SIGKILLs a master freeze_master stopped (without letting it run again: what it was
    asked meanwhile is never answered); its replica takes over (wait_failover)."""
    os.kill(pid, signal.SIGKILL)
    master.dead = True


def error_replies(cluster: "RedisCluster", prefix: str) -> int:
    """How many error replies starting with prefix (MOVED, ASK, TRYAGAIN) the live masters
    have sent (INFO errorstats, Redis >= 6.2): a redirect the core followed unseen."""
    total = 0
    for m in cluster.masters():
        stat = m.info("errorstats").get("errorstat_" + prefix, "")
        fields = dict(kv.split("=", 1) for kv in stat.split(",") if "=" in kv)
        total += int(fields.get("count", 0))
    return total


def client_connections(cluster: "RedisCluster") -> Dict[str, Set[int]]:
    """Per live master ("host:port"), the ids of its normal client connections but the one
    asking and those another node's MIGRATE keeps open to it (cached ~10 s after a reshard:
    their last command is restore-asking). A test counts the ones not there before it."""
    ids: Dict[str, Set[int]] = {}
    for m in cluster.masters():
        listing = bytes(m.call("CLIENT", "LIST", "TYPE", "normal"))  # type: ignore[arg-type]
        ids[m.addr] = {int(re.search(r"\bid=(\d+)", line).group(1))  # type: ignore[union-attr]
                       for line in listing.decode().splitlines()
                       if not re.search(r"\bcmd=(restore-asking|client\|list)\b", line)}
    return ids
