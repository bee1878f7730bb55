"""Fixtures for redpat's Python tests: a private redis-server (tests/harness) unless
REDPAT_TEST_URL points at one, and clients with a namespace of their own per test."""
from __future__ import annotations

import os
import sys
import uuid
from typing import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

from harness import RedisServer  # noqa: E402

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
