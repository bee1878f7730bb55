"""Exception mapping: one table from core status codes to one hierarchy, and real failures
(bad input, refused connections, timeouts, error replies, not-owned) raising through it."""
from __future__ import annotations

import builtins
import math
import socket
import time

import pytest

import redpat
from redpat import _core
from redpat.errors import _BY_STATUS, error_for


def test_every_core_status_has_one_class() -> None:
    codes = [_core.EINVAL, _core.ENOMEM, _core.ETRANSPORT, _core.ETIMEOUT, _core.EPROTOCOL,
             _core.EREPLY, _core.ENOTOWNED, _core.ESTATE]
    assert sorted(_BY_STATUS) == sorted(codes)
    names = {code: error_for(code, "x").status for code in codes}
    assert names == {
        _core.EINVAL: "invalid_argument", _core.ENOMEM: "no_memory",
        _core.ETRANSPORT: "transport", _core.ETIMEOUT: "timeout",
        _core.EPROTOCOL: "protocol", _core.EREPLY: "reply",
        _core.ENOTOWNED: "not_owned", _core.ESTATE: "state",
    }
    for code in codes:
        assert isinstance(error_for(code, "x"), redpat.RedpatError)


def test_hierarchy_fits_python_habits() -> None:
    assert issubclass(redpat.InvalidArgument, ValueError)
    assert issubclass(redpat.TimeoutError, builtins.TimeoutError)
    assert issubclass(redpat.ConnectionError, builtins.ConnectionError)
    assert issubclass(redpat.LockNotOwnedError, redpat.LockError)
    assert issubclass(redpat.LockLostError, redpat.LockError)
    assert issubclass(redpat.LockError, redpat.RedpatError)
    assert not issubclass(redpat.ResponseError, redpat.LockError)


def test_bad_arguments_are_named_by_the_core(client: redpat.Client) -> None:
    with pytest.raises(redpat.InvalidArgument, match="ttl") as info:
        client.lock("r", timeout=0)
    assert info.value.status == "invalid_argument"
    with pytest.raises(redpat.InvalidArgument, match="name"):
        client.lock(b"")
    lock = client.lock("r", timeout=1)
    with pytest.raises(redpat.InvalidArgument, match="token"):
        lock.acquire(token=b"")
    with pytest.raises(redpat.InvalidArgument, match="retry_max"):
        lock.acquire(blocking_timeout=0.1, retry_min=0.05, retry_max=0.01)
    with pytest.raises(redpat.InvalidArgument, match="resource"):
        client.fence_check(b"", 1)
    with pytest.raises(redpat.InvalidArgument, match="token"):
        client.fence_check(b"db", 0)
    assert client.execute_command("DBSIZE") == 0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_seconds_name_the_argument(client: redpat.Client, value: float) -> None:
    with pytest.raises(redpat.InvalidArgument, match="timeout"):
        client.lock("r", timeout=value)
    lock = client.lock("r")
    with pytest.raises(redpat.InvalidArgument, match="blocking_timeout"):
        lock.acquire(blocking_timeout=value)
    with pytest.raises(redpat.InvalidArgument, match="additional_time"):
        lock.extend(value)
    with pytest.raises(redpat.InvalidArgument, match="command_timeout"):
        redpat.Client("redis://127.0.0.1:6379/0", command_timeout=value)


def test_wrong_types_are_type_errors(client: redpat.Client) -> None:
    with pytest.raises(TypeError):
        client.lock(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.lock("r", timeout="10")  # type: ignore[arg-type]


def test_bad_client_options() -> None:
    with pytest.raises(redpat.InvalidArgument):
        redpat.Client("http://example.invalid/")
    with pytest.raises(redpat.InvalidArgument, match="NUL"):
        redpat.Client(namespace=b"a\x00b")
    with pytest.raises(redpat.InvalidArgument, match="namespace"):
        redpat.Client(namespace="a{b}")


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
