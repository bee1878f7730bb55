"""redpat.asyncio over TLS (rediss://, issue 11 item 8): the asyncio driver's own TLS
handshake on its stream connections, with the tls_* options (CA file, client certificate,
server name, verify), against redis-servers listening on TLS only.

Run under `harness.py run --tls --servers 5` (REDPAT_TEST_TLS_DIR, rediss:// URLs); run
otherwise, it makes its certificates and servers itself (tests/harness: make_tls_files)."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

import pytest

from conftest import Tls
from harness import RedisServer

import redpat
import redpat.asyncio as rpa

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()
    return asyncio.run(wrapper())


def client(tls: Tls, namespace: str, url: Any = None, **options: Any) -> rpa.Client:
    options.setdefault("tls_ca_file", tls.files.ca)
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("command_timeout", 2.0)
    return rpa.Client(url or tls.url, namespace=namespace, **options)


def test_lock_and_limiter_over_tls(tls: Tls, namespace: str) -> None:
    async def main() -> None:
        async with client(tls, namespace) as c:
            assert await c.ping()
            lock = c.lock("job", timeout=5)
            assert await lock.acquire(blocking=False)
            assert await lock.owned()
            other = c.lock("job", timeout=5)
            assert not await other.acquire(blocking=False)
            await lock.release()
            assert not await lock.locked()
            api = c.ratelimiter("api", "fixed_window", limit=2, window=60.0)
            assert [(await api.check("u")).allowed for _ in range(3)] == [True, True, False]
            # one connection, pooled: the TLS handshake is not paid per call
            first = await c.execute_command("CLIENT", "ID")
            assert await c.execute_command("CLIENT", "ID") == first
    run(main)


def test_redlock_over_five_tls_servers(tls: Tls, namespace: str) -> None:
    async def main() -> None:
        async with client(tls, namespace, url=tls.urls) as c:
            lock = c.redlock("r", timeout=5)
            assert await lock.acquire(blocking=False)
            await lock.release()
    run(main)


def test_pubsub_over_tls_reconnects_over_tls(tls: Tls, namespace: str) -> None:
    async def main() -> None:
        async with client(tls, namespace) as c:
            async with c.pubsub(ignore_subscribe_messages=True) as p:
                await p.subscribe("news")
                assert await p.get_message(timeout=2.0) is None  # the confirmation, skipped
                assert await c.publish("news", b"x") == 1
                got = await p.get_message(timeout=2.0)
                assert got is not None and got["data"] == b"x"
                assert await c.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
                got = await p.get_message(timeout=2.0)  # the listener's new TLS connection
                assert got is not None and got["type"] == "reconnect"
                assert await c.publish("news", b"y") == 1
                got = await p.get_message(timeout=2.0)
                assert got is not None and got["data"] == b"y"
    run(main)


def test_verify_fails_with_another_ca(tls: Tls, namespace: str) -> None:
    async def main() -> None:
        async with client(tls, namespace, tls_ca_file=tls.files.other_ca) as c:
            with pytest.raises(redpat.ConnectionError,
                               match="TLS handshake failed: certificate verify failed"):
                await c.ping()
    run(main)


def test_verify_off_trusts_any_certificate(tls: Tls, namespace: str) -> None:
    async def main() -> None:
        async with client(tls, namespace, tls_ca_file=None, tls_verify=False) as c:
            assert await c.ping()
        # the system's store (no tls_ca_file) does not know the test CA
        async with client(tls, namespace, tls_ca_file=None) as c:
            with pytest.raises(redpat.ConnectionError, match="certificate verify failed"):
                await c.ping()
    run(main)


def test_server_name(tls: Tls, namespace: str) -> None:
    async def main() -> None:
        async with client(tls, namespace, tls_server_name="wrong.example") as c:
            with pytest.raises(redpat.ConnectionError, match="wrong.example"):
                await c.ping()
        # the certificate names localhost: checked by that name over 127.0.0.1
        async with client(tls, namespace, tls_server_name="localhost") as c:
            assert await c.ping()
        # and by default against the URL's host
        async with client(tls, namespace, url=tls.url.replace("127.0.0.1", "localhost")) as c:
            assert await c.ping()
    run(main)


def test_client_certificate(tls: Tls, strict: RedisServer, namespace: str) -> None:
    async def main() -> None:
        async with client(tls, namespace, url=strict.url) as c:
            with pytest.raises(redpat.ConnectionError):
                await c.ping()
        async with client(tls, namespace, url=strict.url, tls_cert_file=tls.files.client_cert,
                          tls_key_file=tls.files.client_key) as c:
            assert await c.ping()
            lock = c.lock("job", timeout=5)
            assert await lock.acquire(blocking=False)
            await lock.release()
    run(main)


def test_scheme_and_port_mismatch_fail_cleanly(tls: Tls, server: RedisServer,
                                               namespace: str) -> None:
    async def main() -> None:
        # plaintext to a TLS port: the server drops the connection (no hang)
        plain = tls.url.replace("rediss://", "redis://")
        async with rpa.Client(plain, namespace=namespace, command_timeout=1.0) as c:
            with pytest.raises(redpat.ConnectionError, match="connection lost"):
                await c.ping()
        # TLS to a plaintext port: never a plaintext conversation; fails by the timeout
        async with client(tls, namespace, url=server.url.replace("redis://", "rediss://"),
                          command_timeout=0.5) as c:
            with pytest.raises((redpat.ConnectionError, redpat.TimeoutError),
                               match="TLS handshake"):
                await c.ping()
    run(main)


def test_bad_pem_is_named(tls: Tls, namespace: str) -> None:
    async def main() -> None:
        with pytest.raises(redpat.InvalidArgument, match="tls_ca_file"):
            async with client(tls, namespace, tls_ca_file=tls.files.path("openssl.cnf")) as c:
                await c.ping()
        with pytest.raises(redpat.InvalidArgument, match="tls_cert_file|tls_key_file"):
            async with client(tls, namespace, tls_cert_file=tls.files.client_cert,
                              tls_key_file=tls.files.server_key) as c:  # not its key
                await c.ping()
    run(main)
