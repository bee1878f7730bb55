"""Where and how both APIs connect: TCP, unix sockets, password and database from the URL
(the asyncio driver opens its own sockets and runs the core's handshake op)."""
from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any, Iterator, Tuple

import pytest
from harness import RedisServer

import redpat
import redpat.asyncio as rpa


@pytest.fixture(scope="module")
def secured() -> Iterator[Tuple[RedisServer, str]]:
    sock_dir = tempfile.mkdtemp(prefix="redpat-sock-")
    sock = os.path.join(sock_dir, "redis.sock")
    with RedisServer(extra=["--unixsocket", sock, "--unixsocketperm", "700"]) as srv:
        yield srv, sock
    os.rmdir(sock_dir)


@pytest.fixture(scope="module")
def password(secured: Tuple[RedisServer, str]) -> str:
    srv, _ = secured
    # Set after start (the harness checks readiness with an unauthenticated PING), and
    # after the unix-socket tests, which come first in this file: unix URLs carry no password.
    redpat.Client(srv.url).execute_command("CONFIG", "SET", "requirepass", "s3cret")
    return "s3cret"


def sync_roundtrip(url: str) -> Any:
    c = redpat.Client(url, namespace="conn")
    with c.lock("l", timeout=5):
        c.execute_command("SET", "where", url)
    return c.execute_command("GET", "where")


def async_roundtrip(url: str) -> Any:
    async def main() -> Any:
        async with rpa.Client(url, namespace="conn") as c:
            async with c.lock("l", timeout=5):
                await c.execute_command("SET", "where", url)
            return await c.execute_command("GET", "where")
    return asyncio.run(main())


@pytest.mark.parametrize("roundtrip", [sync_roundtrip, async_roundtrip])
def test_unix_socket(secured: Tuple[RedisServer, str], roundtrip: Any) -> None:
    _, sock = secured
    url = "unix://%s?db=2" % sock
    assert roundtrip(url) == url.encode()
    check = redpat.Client(secured[0].url.rsplit("/", 1)[0] + "/2", namespace="conn")
    assert check.execute_command("GET", "where") == url.encode()


@pytest.mark.parametrize("roundtrip", [sync_roundtrip, async_roundtrip])
def test_password_and_database(secured: Tuple[RedisServer, str], password: str,
                               roundtrip: Any) -> None:
    srv, _ = secured
    url = "redis://:s3cret@127.0.0.1:%d/5" % srv.port
    assert roundtrip(url) == url.encode()
    check = redpat.Client("redis://:s3cret@127.0.0.1:%d/5" % srv.port)
    assert check.execute_command("EXISTS", "where") == 1
    other_db = redpat.Client("redis://:s3cret@127.0.0.1:%d/0" % srv.port)
    assert other_db.execute_command("EXISTS", "where") == 0


@pytest.mark.parametrize("roundtrip", [sync_roundtrip, async_roundtrip])
def test_wrong_password_is_an_error(secured: Tuple[RedisServer, str], password: str,
                                    roundtrip: Any) -> None:
    srv, _ = secured
    with pytest.raises(redpat.RedpatError) as info:
        roundtrip("redis://:wrong@127.0.0.1:%d/0" % srv.port)
    assert isinstance(info.value, redpat.AuthenticationError)  # issue 11, item 6
    assert info.value.status == "auth"
    assert "WRONGPASS" in str(info.value) or "invalid" in str(info.value)


@pytest.mark.parametrize("roundtrip", [sync_roundtrip, async_roundtrip])
def test_restarted_server_is_reconnected(server: RedisServer, roundtrip: Any) -> None:
    assert roundtrip(server.url) == server.url.encode()
    server.restart()
    assert roundtrip(server.url) == server.url.encode()


@pytest.mark.parametrize("roundtrip", [sync_roundtrip, async_roundtrip])
@pytest.mark.parametrize("form", ["unix://:s3cret@%s?db=4", "unix://%s?password=s3cret&db=4",
                                  "unix://%s?db=4&password=s3cr%%65t"])
def test_unix_socket_with_password(secured: Tuple[RedisServer, str], password: str,
                                   roundtrip: Any, form: str) -> None:
    srv, sock = secured
    url = form % sock
    assert roundtrip(url) == url.encode()
    check = redpat.Client("redis://:s3cret@127.0.0.1:%d/4" % srv.port, namespace="conn")
    assert check.execute_command("GET", "where") == url.encode()


@pytest.mark.parametrize("roundtrip", [sync_roundtrip, async_roundtrip])
def test_unix_socket_wrong_password(secured: Tuple[RedisServer, str], password: str,
                                    roundtrip: Any) -> None:
    with pytest.raises(redpat.RedpatError) as info:
        roundtrip("unix://:wrong@%s" % secured[1])
    assert "WRONGPASS" in str(info.value) or "invalid" in str(info.value)


@pytest.mark.parametrize("roundtrip", [sync_roundtrip, async_roundtrip])
def test_unix_connect_error_names_the_path(roundtrip: Any) -> None:
    path = os.path.join(tempfile.mkdtemp(prefix="redpat-nosock-"), "redis.sock")
    with pytest.raises(redpat.RedpatError) as info:
        roundtrip("unix://" + path)
    assert info.value.status == "transport"
    assert "unix:%s: cannot connect" % path in str(info.value)
    assert path + "/0" not in str(info.value)  # no database glued to the path
    with pytest.raises(redpat.RedpatError) as info:
        roundtrip("unix://%s?db=3" % path)
    assert "unix:%s?db=3: cannot connect" % path in str(info.value)


@pytest.mark.parametrize("url, text", [
    ("redis://127.0.0.1:6379/0?x=1", "query strings are not supported"),
    ("unix:///tmp/r.sock?user=x", "unix:// accepts only ?db=N and ?password="),
    ("unix://:a@/tmp/r.sock?password=b", "gives the password twice"),
])
def test_bad_urls(url: str, text: str) -> None:
    with pytest.raises(redpat.InvalidArgument) as info:
        redpat.Client(url)
    assert text in str(info.value)
