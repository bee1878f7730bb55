"""The sync Client over TLS (rediss://, issue 11 item 8): the C blocking transport's TLS
(OpenSSL over its own sockets) with the tls_* options (CA file, client certificate, server
name, verify), against redis-servers listening on TLS only.

Run under `harness.py run --tls --servers 5` (REDPAT_TEST_TLS_DIR, rediss:// URLs); run
otherwise, it makes its certificates and servers itself (tests/harness: make_tls_files)."""
from __future__ import annotations

import pathlib
import threading
from typing import Any, List

import pytest

from conftest import Tls
from harness import RedisServer

import redpat


def client(tls: Tls, namespace: str, url: Any = None, **options: Any) -> redpat.Client:
    options.setdefault("tls_ca_file", tls.files.ca)
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("command_timeout", 2.0)
    return redpat.Client(url or tls.url, namespace=namespace, **options)


def test_lock_and_limiter_over_tls(tls: Tls, namespace: str) -> None:
    with client(tls, namespace) as c:
        assert c.ping()
        lock = c.lock("job", timeout=5)
        assert lock.acquire(blocking=False)
        assert lock.owned()
        assert not c.lock("job", timeout=5).acquire(blocking=False)
        lock.release()
        assert not lock.locked()
        api = c.ratelimiter("api", "fixed_window", limit=2, window=60.0)
        assert [api.check("u").allowed for _ in range(3)] == [True, True, False]


def test_redlock_and_threads_over_tls(tls: Tls, namespace: str) -> None:
    with client(tls, namespace, url=tls.urls) as c:
        red = c.redlock("red", timeout=5)
        assert red.acquire(blocking=False)
        red.release()
    errors: List[BaseException] = []
    with client(tls, namespace, tls_ca_file=pathlib.Path(tls.files.ca)) as c:
        api = c.ratelimiter("threads", "gcra", limit=1000, window=60.0)

        def work() -> None:
            try:
                for _ in range(20):
                    assert api.check("u").allowed
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_pubsub_over_tls(tls: Tls, namespace: str) -> None:
    with client(tls, namespace) as c:
        with c.pubsub() as ps:
            ps.subscribe("news")
            assert ps.get_message(timeout=2.0)["type"] == "subscribe"
            assert c.publish("news", "hello") == 1
            msg = ps.get_message(timeout=2.0)
            assert msg["type"] == "message" and msg["data"] == b"hello"


def test_verification_is_on_by_default(tls: Tls, namespace: str) -> None:
    # the system's trust store does not know the test CA
    with redpat.Client(tls.url, namespace=namespace) as c:
        with pytest.raises(redpat.ConnectionError,
                           match=r"127\.0\.0\.1:\d+/0: TLS handshake failed: certificate verify "
                                 r"failed \("):
            c.ping()


def test_other_ca_fails_clearly(tls: Tls, namespace: str) -> None:
    with client(tls, namespace, tls_ca_file=tls.files.other_ca) as c:
        with pytest.raises(redpat.ConnectionError, match="certificate verify failed"):
            c.lock("x", timeout=5).acquire(blocking=False)


def test_no_verification_when_asked(tls: Tls, namespace: str) -> None:
    with client(tls, namespace, tls_ca_file=None, tls_verify=False) as c:
        assert c.ping()


def test_server_name(tls: Tls, namespace: str) -> None:
    with client(tls, namespace, tls_server_name="wrong.example") as c:
        with pytest.raises(redpat.ConnectionError, match=r"hostname mismatch"):
            c.ping()
    with client(tls, namespace, tls_server_name="localhost") as c:
        assert c.ping()  # the certificate names localhost; the URL says 127.0.0.1


def test_client_certificate(tls: Tls, strict: RedisServer, namespace: str) -> None:
    with client(tls, namespace, url=strict.url, tls_cert_file=tls.files.client_cert,
                tls_key_file=tls.files.client_key) as c:
        assert c.ping()
    with client(tls, namespace, url=strict.url) as c:
        with pytest.raises(redpat.ConnectionError, match=r"127\.0\.0\.1:\d+/0: "):
            c.ping()


def test_plain_url_to_a_tls_port_fails_cleanly(tls: Tls, namespace: str) -> None:
    plain = "redis://" + tls.url[len("rediss://"):]
    with redpat.Client(plain, namespace=namespace, command_timeout=1.0) as c:
        with pytest.raises((redpat.ConnectionError, redpat.TimeoutError)):
            c.ping()


def test_options_are_checked_before_io(tls: Tls, namespace: str) -> None:
    with pytest.raises(redpat.InvalidArgument,
                       match=r"tls_ca_file given but no url is rediss://"):
        redpat.Client("redis://127.0.0.1:1/0", tls_ca_file=tls.files.ca)
    with pytest.raises(redpat.InvalidArgument, match=r"tls_cert_file given without tls_key_file"):
        client(tls, namespace, tls_cert_file=tls.files.client_cert)
    with pytest.raises(redpat.InvalidArgument, match=r"tls_key_file given without tls_cert_file"):
        client(tls, namespace, tls_key_file=tls.files.client_key)
    with pytest.raises(redpat.InvalidArgument, match=r"tls_ca_file: cannot read"):
        client(tls, namespace, tls_ca_file=tls.files.path("missing.crt"))
    with pytest.raises(redpat.InvalidArgument, match=r"tls_ca_file \".*\": no certificate"):
        client(tls, namespace, tls_ca_file=tls.files.client_key)
