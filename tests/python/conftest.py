"""Fixtures for redpat's Python tests: a private redis-server (tests/harness) unless
REDPAT_TEST_URL points at one, five of them for the tests over several servers (the
harness's REDPAT_TEST_URLS / REDPAT_TEST_PIDS under `harness.py run --servers 5`, else
private ones), and clients with a namespace of their own per test."""
from __future__ import annotations

import os
import signal
import sys
import uuid
from typing import Iterator, List, NamedTuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

from harness import RedisServer, RedisServers, TlsFiles, make_tls_files  # noqa: E402

import redpat  # noqa: E402


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
