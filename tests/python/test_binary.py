"""Binary safety: names, tokens, resources and values with NUL, CRLF and non-UTF-8 bytes
round-trip byte-exact; str and bytes both work (str is UTF-8)."""
from __future__ import annotations

import redpat

NASTY = b"a\x00b\r\n\xff\xfe end"


def test_binary_lock_name_and_token(client: redpat.Client) -> None:
    lock = client.lock(NASTY, timeout=5)
    assert lock.name == NASTY
    assert lock.acquire(token=b"\x00tok\r\n\xff")
    k = b"%s:lock:{%s}" % (client.namespace, NASTY)
    assert client.execute_command("GET", k) == b"\x00tok\r\n\xff"
    assert lock.token == b"\x00tok\r\n\xff"
    assert lock.owned()
    lock.extend(1)
    lock.release()
    assert client.execute_command("EXISTS", k) == 0


def test_names_differing_after_nul_are_different_locks(client: redpat.Client) -> None:
    a = client.lock(b"n\x00x")
    b = client.lock(b"n\x00y")
    assert a.acquire(blocking=False) and b.acquire(blocking=False)
    assert client.execute_command("DBSIZE") == 2


def test_str_and_bytes_name_the_same_lock(client: redpat.Client) -> None:
    a = client.lock("café")
    b = client.lock("café".encode("utf-8"))
    assert a.name == b.name == "café".encode("utf-8")
    assert a.acquire(blocking=False)
    assert not b.acquire(blocking=False)
    c = client.lock(bytearray(b"caf\xc3\xa9"))
    d = client.lock(memoryview(b"caf\xc3\xa9"))
    assert c.locked() and d.locked()


def test_binary_fence_resource(client: redpat.Client) -> None:
    res = b"\x00\x01\r\n\xff"
    assert client.fence_check(res, 3) == (True, 3)
    assert client.execute_command("GET", b"%s:fence:{%s}" % (client.namespace, res)) == b"3"
    assert client.fence_check(bytearray(res), 2) == (False, 3)


def test_every_byte_value_round_trips_through_raw_commands(client: redpat.Client) -> None:
    value = bytes(range(256)) * 4
    assert client.execute_command("SET", b"k\x00\xff", value) == b"OK"
    assert client.execute_command("GET", b"k\x00\xff") == value
    assert client.execute_command("STRLEN", b"k\x00\xff") == 1024


def test_binary_error_reply_does_not_break_decoding(client: redpat.Client) -> None:
    try:
        client.execute_command(b"\xff\xfe-no-such-command", b"\x00")
    except redpat.ResponseError as err:
        assert "unknown command" in str(err)
    else:
        raise AssertionError("an unknown command must raise ResponseError")
