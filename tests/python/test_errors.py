"""Exception mapping: one table from core status codes to one hierarchy, and real failures
(bad input, refused connections, timeouts, error replies, not-owned) raising through it."""
from __future__ import annotations

import builtins
import datetime
import math
import socket
import os
import re
import sys
import time
from typing import Callable, List, Tuple

import pytest

import redpat
from redpat import _core
from redpat.errors import _BY_STATUS, error_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "harness"))
from harness import RedisServer  # noqa: E402


def test_every_core_status_has_one_class() -> None:
    codes = [_core.EINVAL, _core.ENOMEM, _core.ETRANSPORT, _core.ETIMEOUT, _core.EPROTOCOL,
             _core.EREPLY, _core.ENOTOWNED, _core.ESTATE, _core.ECANCELED, _core.ECALLBACK,
             _core.ELOST, _core.EAUTH]
    assert sorted(_BY_STATUS) == sorted(codes)
    names = {code: error_for(code, "x").status for code in codes}
    assert names == {
        _core.EINVAL: "invalid_argument", _core.ENOMEM: "no_memory",
        _core.ETRANSPORT: "transport", _core.ETIMEOUT: "timeout",
        _core.EPROTOCOL: "protocol", _core.EREPLY: "reply",
        _core.ENOTOWNED: "not_owned", _core.ESTATE: "state", _core.ECANCELED: "cancelled",
        _core.ECALLBACK: "callback", _core.ELOST: "lost", _core.EAUTH: "auth",
    }
    for code in codes:
        assert isinstance(error_for(code, "x"), redpat.RedpatError)


def test_hierarchy_fits_python_habits() -> None:
    assert issubclass(redpat.InvalidArgument, ValueError)
    assert issubclass(redpat.TimeoutError, builtins.TimeoutError)
    assert issubclass(redpat.ConnectionError, builtins.ConnectionError)
    assert issubclass(redpat.AuthenticationError, redpat.ConnectionError)  # as redis-py
    assert issubclass(redpat.LockNotOwnedError, redpat.LockError)
    assert issubclass(redpat.LockLostError, redpat.LockError)
    assert issubclass(redpat.LockError, redpat.RedpatError)
    assert not issubclass(redpat.ResponseError, redpat.LockError)


def message(fn: Callable[[], object], exc: type = redpat.InvalidArgument) -> str:
    with pytest.raises(exc) as info:
        fn()
    if isinstance(info.value, redpat.RedpatError):
        assert info.value.status == ("invalid_argument" if exc is redpat.InvalidArgument
                                     else info.value.status)
    return str(info.value)


def test_bad_arguments_are_named_in_the_users_words(client: redpat.Client) -> None:
    # The core checks every argument, naming it as the Python API does (timeout, not the
    # core's ttl; blocking_timeout, not wait), with durations in seconds.
    assert message(lambda: client.lock("r", timeout=-1)) == \
        "timeout must be > 0 seconds (got -1)"
    assert message(lambda: client.lock("r", timeout=0)) == "timeout must be > 0 seconds (got 0)"
    assert message(lambda: client.lock("r", timeout=-0.25)) == \
        "timeout must be > 0 seconds (got -0.25)"
    assert message(lambda: client.lock(b"")) == "name must not be empty"
    lock = client.lock("r", timeout=1)
    assert message(lambda: lock.acquire(blocking_timeout=-1)) == \
        "blocking_timeout must be >= 0 seconds (got -1)"
    assert message(lambda: lock.acquire(token=b"")) == "token must not be empty"
    assert message(lambda: lock.acquire(blocking_timeout=0.1, retry_min=0.05,
                                        retry_max=0.01)) == \
        "retry_max must be >= retry_min (got 0.01 seconds < 0.05 seconds)"
    assert message(lambda: lock.extend(0)) == "additional_time must be > 0 seconds (got 0)"
    assert message(lambda: client.fence_check(b"", 1)) == "resource must not be empty"
    assert message(lambda: client.fence_check(b"db", 0)) == "token must be > 0 (got 0)"
    assert message(lambda: redpat.Client(connect_timeout=0)) == \
        "connect_timeout must be > 0 seconds (got 0)"
    assert message(lambda: redpat.Client(command_timeout=-2)) == \
        "command_timeout must be > 0 seconds (got -2)"
    assert client.execute_command("DBSIZE") == 0


def test_seconds_below_a_millisecond_are_one_millisecond(client: redpat.Client) -> None:
    lock = client.lock("r", timeout=0.0001)  # never silently 0
    assert lock.timeout == 0.001
    assert client.lock("t", timeout=datetime.timedelta(seconds=1.5)).timeout == 1.5
    assert client.lock("u", timeout=2).timeout == 2.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_seconds_name_the_argument(client: redpat.Client, value: float) -> None:
    got = "(got %g)" % value
    assert message(lambda: client.lock("r", timeout=value)) == \
        "timeout must be a finite number of seconds " + got
    lock = client.lock("r")
    assert message(lambda: lock.acquire(blocking_timeout=value)) == \
        "blocking_timeout must be a finite number of seconds " + got
    assert message(lambda: lock.extend(value)) == \
        "additional_time must be a finite number of seconds " + got
    assert message(lambda: redpat.Client("redis://127.0.0.1:6379/0",
                                         command_timeout=value)).startswith("command_timeout")


def test_wrong_types_are_type_errors_naming_the_argument(client: redpat.Client) -> None:
    # Never SWIG's words ("in method ..., argument 4 of type ..."): the argument's own name.
    assert message(lambda: client.lock(12345), TypeError) == \
        "name must be bytes or str, not int"  # type: ignore[arg-type]
    assert message(lambda: client.lock("r", timeout="10"), TypeError) == \
        "timeout must be a number of seconds, not str"  # type: ignore[arg-type]
    assert message(lambda: client.lock("r").acquire(token=5), TypeError) == \
        "token must be bytes or str, not int"  # type: ignore[arg-type]
    assert message(lambda: client.fence_check("db", "7"), TypeError) == \
        "token must be an int, not str"  # type: ignore[arg-type]
    assert message(lambda: client.lock("r").extend(None)) == \
        "additional_time is required"  # type: ignore[arg-type]
    assert message(lambda: redpat.Client(namespace=3), TypeError) == \
        "namespace must be bytes or str, not int"  # type: ignore[arg-type]
    for text in (message(lambda: client.lock("r", timeout=[1]), TypeError),  # type: ignore
                 message(lambda: client.ratelimiter("a", limit="5", window=1), TypeError)):
        assert "argument" not in text and "method" not in text


def test_bad_client_options() -> None:
    assert message(lambda: redpat.Client("http://example.invalid/")).startswith("url")
    assert message(lambda: redpat.Client(namespace=b"a\x00b")) == \
        "namespace must not contain NUL bytes"
    assert message(lambda: redpat.Client(namespace="a{b}")).startswith(
        "namespace must not contain '{' or '}'")
    assert message(lambda: redpat.Client(namespace="")) == "namespace must not be empty"


def test_refused_connection_is_connection_error() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redpat.Client("redis://127.0.0.1:%d/0" % port, connect_timeout=1.0)
    with pytest.raises(redpat.ConnectionError) as info:
        client.lock("r").acquire()
    assert info.value.status == "transport"


def test_command_timeout_then_recovery(url: str, namespace: str) -> None:
    client = redpat.Client(url, namespace=namespace, command_timeout=0.2)
    with pytest.raises(redpat.TimeoutError) as info:
        client.execute_command("DEBUG", "SLEEP", "0.6")
    assert info.value.status == "timeout"
    # The timed-out connection was dropped; once the server answers again the next call
    # gets a fresh connection that works.
    time.sleep(0.6)
    assert client.ping()
    lock = client.lock("after-timeout", timeout=5)
    assert lock.acquire(blocking=False)
    lock.release()


def test_error_reply_is_response_error(client: redpat.Client) -> None:
    client.execute_command("SET", "plain", "v")
    with pytest.raises(redpat.ResponseError, match="WRONGTYPE") as info:
        client.execute_command("HGET", "plain", "f")
    assert info.value.status == "reply"
    # Inside an array an error reply is returned, not raised (as redis-py does).
    client.execute_command("MULTI")
    client.execute_command("INCR", "plain")
    client.execute_command("GET", "plain")
    out = client.execute_command("EXEC")
    assert isinstance(out[0], redpat.ResponseError) and out[1] == b"v"


def test_lock_on_wrong_type_key_is_response_error(client: redpat.Client) -> None:
    lock = client.lock("r", timeout=5)
    assert lock.acquire()
    client.execute_command("DEL", b"%s:lock:{r}" % client.namespace)
    client.execute_command("HSET", b"%s:lock:{r}" % client.namespace, "f", "v")
    with pytest.raises(redpat.ResponseError, match="WRONGTYPE"):
        lock.release()


def test_not_owned(client: redpat.Client) -> None:
    lock = client.lock("r", timeout=5)
    with pytest.raises(redpat.LockNotOwnedError) as info:
        lock.release()
    assert info.value.status == "not_owned"
    with pytest.raises(redpat.LockNotOwnedError):
        lock.extend(1)
    with pytest.raises(redpat.LockNotOwnedError):
        lock.reacquire()


def test_errors_pickle_with_their_status() -> None:
    import pickle
    err = pickle.loads(pickle.dumps(error_for(_core.ENOTOWNED, "gone")))
    assert type(err) is redpat.LockNotOwnedError
    assert err.status == "not_owned" and str(err) == "gone"


# -- a refused password is AuthenticationError (issue 11, item 6) ------------------------------

def _wrong_passwords(url: str, srv_url: str) -> List[Tuple[str, str]]:
    """(url, a word of Redis' refusal): a password the server does not require; a wrong one
    for an ACL user; a wrong one for a server with requirepass; none where one is required
    (the handshake's SELECT meets NOAUTH; with db 0 there is no handshake: the op's own
    command meets NOAUTH, or Redis 7's "Protocol error: unauthenticated bulk length" for a
    request as large as a script load)."""
    host = url.split("://", 1)[1].split("/", 1)[0]
    own = srv_url.split("://", 1)[1].split("/", 1)[0]
    return [("redis://:nope@%s" % host, "without any password configured"),
            ("redis://pylock-user:wrong@%s" % host, "WRONGPASS"),
            ("redis://:wrong@%s" % own, "WRONGPASS"),
            ("redis://%s/1" % own, "NOAUTH"),
            ("redis://%s/0" % own, "NOAUTH|Protocol error: unauthenticated")]


@pytest.fixture
def password_server(server: RedisServer) -> RedisServer:
    """A server of the test's own that requires the password "right"."""
    redpat.Client(server.url).execute_command("CONFIG", "SET", "requirepass", "right")
    return server


def test_wrong_password_is_authentication_error(url: str, password_server: RedisServer) -> None:
    admin = redpat.Client(url)
    admin.execute_command("ACL", "SETUSER", "pylock-user", "on", ">right", "~*", "+@all")
    try:
        for bad, word in _wrong_passwords(url, password_server.url):
            client = redpat.Client(bad)
            for call in (client.ping, lambda: client.lock("r").acquire(blocking=False),
                         lambda: client.ratelimiter("l", limit=1, window=1).check("s")):
                with pytest.raises(redpat.AuthenticationError) as info:
                    call()
                assert isinstance(info.value, redpat.ConnectionError)
                assert info.value.status == "auth" and re.search(word, str(info.value))
                assert "nope" not in str(info.value) and "wrong" not in str(info.value)
        host = password_server.url.split("://", 1)[1].split("/", 1)[0]
        assert redpat.Client("redis://:right@%s" % host).ping()
    finally:
        admin.execute_command("ACL", "DELUSER", "pylock-user")


def test_wrong_password_is_authentication_error_asyncio(url: str,
                                                        password_server: RedisServer) -> None:
    import asyncio

    import redpat.asyncio as rpa

    async def main() -> None:
        admin = rpa.Client(url)
        await admin.execute_command("ACL", "SETUSER", "pylock-user", "on", ">right", "~*",
                                    "+@all")
        try:
            for bad, word in _wrong_passwords(url, password_server.url):
                client = rpa.Client(bad)
                for call in (client.ping, lambda: client.lock("r").acquire(blocking=False)):
                    with pytest.raises(redpat.AuthenticationError) as info:
                        await call()
                    assert info.value.status == "auth" and re.search(word, str(info.value))
                await client.close()
            host = password_server.url.split("://", 1)[1].split("/", 1)[0]
            assert await rpa.Client("redis://:right@%s" % host).ping()
        finally:
            await admin.execute_command("ACL", "DELUSER", "pylock-user")
            await admin.close()
    asyncio.run(main())
