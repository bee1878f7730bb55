"""The driver contract over five servers, in both flavours: a round to N targets costs about
its slowest target, not the sum (every request is written before any reply is read), and a
Redlock acquire returns once a majority has answered, so stopped servers delay nothing."""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Awaitable, Callable, List, TypeVar

import redpat
import redpat.asyncio as rpa
from conftest import Servers

T = TypeVar("T")

# Each server is made busy this long from a connection of its own.
BUSY = 0.1
# "About the slowest": well under the 5 * BUSY of targets asked one after another.
ROUND_MAX = 0.3


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()
    return asyncio.run(wrapper())


def busy(servers: Servers) -> List[socket.socket]:
    """Makes every server sleep BUSY seconds (DEBUG SLEEP, each from a socket of its own);
    a request arriving meanwhile is answered after it."""
    socks = []
    for url in servers.urls:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"DEBUG SLEEP %g\r\n" % BUSY)
        socks.append(s)
    time.sleep(0.005)  # the sleeps have begun before the round's requests arrive
    return socks


def done(socks: List[socket.socket]) -> None:
    for s in socks:
        assert s.recv(16).startswith(b"+OK")
        s.close()


def key(client: Any, name: bytes) -> bytes:
    return b"%s:lock:{%s}" % (client.namespace, name)


def test_sync_round_over_five_busy_servers_costs_the_slowest(servers: Servers) -> None:
    client = redpat.Client(servers.urls, namespace="par")
    lock = client.redlock("r", timeout=10, node_timeout=1.0)
    assert lock.nodes == 5
    assert lock.acquire(blocking=False)  # connections opened: the rounds below measure I/O
    lock.release()
    for op in ("acquire", "release"):
        socks = busy(servers)
        t0 = time.monotonic()
        if op == "acquire":
            assert lock.acquire(blocking=False)
        else:
            lock.release()
        elapsed = time.monotonic() - t0
        done(socks)
        assert BUSY / 2 < elapsed < ROUND_MAX, (op, elapsed)
    for url in servers.urls:
        assert redpat.Client(url, namespace="par").execute_command(
            "EXISTS", key(client, b"r")) == 0


def test_asyncio_round_over_five_busy_servers_costs_the_slowest(servers: Servers) -> None:
    async def main() -> None:
        async with rpa.Client(servers.urls, namespace="par") as client:
            lock = client.redlock("r", timeout=10, node_timeout=1.0)
            assert await lock.acquire(blocking=False)
            await lock.release()
            for op in ("acquire", "release"):
                socks = busy(servers)
                t0 = time.monotonic()
                if op == "acquire":
                    assert await lock.acquire(blocking=False)
                else:
                    await lock.release()
                elapsed = time.monotonic() - t0
                done(socks)
                assert BUSY / 2 < elapsed < ROUND_MAX, (op, elapsed)
    run(main)


def test_sync_redlock_with_two_of_five_stopped_takes_its_quorum_at_once(
        servers: Servers) -> None:
    client = redpat.Client(servers.urls, namespace="par")
    lock = client.redlock("r", timeout=10, node_timeout=0.5)
    servers.stop(1, 3)
    t0 = time.monotonic()
    assert lock.acquire(blocking=False)
    elapsed = time.monotonic() - t0
    assert elapsed < 0.1, elapsed  # far below the 0.5 s a stopped server could take
    assert 9.0 < lock.validity <= 10.0
    servers.cont()
    lock.release()
    for url in servers.urls:
        assert redpat.Client(url, namespace="par").execute_command(
            "EXISTS", key(client, b"r")) == 0


def test_asyncio_redlock_with_two_of_five_stopped_takes_its_quorum_at_once(
        servers: Servers) -> None:
    async def main() -> None:
        async with rpa.Client(servers.urls, namespace="par") as client:
            lock = client.redlock("r", timeout=10, node_timeout=0.5)
            servers.stop(0, 4)
            t0 = time.monotonic()
            assert await lock.acquire(blocking=False)
            elapsed = time.monotonic() - t0
            assert elapsed < 0.1, elapsed
            assert 9.0 < lock.validity <= 10.0
            servers.cont()
            await lock.release()
            # the stopped servers' connections were abandoned, not pooled: all still work
            assert await lock.acquire(blocking=False)
            await lock.release()
    run(main)


def test_redlock_with_three_of_five_stopped_fails_within_about_a_node_timeout(
        servers: Servers) -> None:
    client = redpat.Client(servers.urls, namespace="par")
    lock = client.redlock("r", timeout=10, node_timeout=0.2)
    servers.stop(0, 2, 4)
    t0 = time.monotonic()
    assert not lock.acquire(blocking=False)
    elapsed = time.monotonic() - t0
    servers.cont()
    assert elapsed < 1.0, elapsed
    assert lock.validity == 0.0
    for url in servers.urls:  # what it took on the two that answered was released
        assert redpat.Client(url, namespace="par").execute_command(
            "EXISTS", key(client, b"r")) == 0


def test_client_over_several_urls(servers: Servers) -> None:
    as_list = redpat.Client(servers.urls[:3])
    as_text = rpa.Client(",".join(servers.urls[:3]))
    assert as_list.url == as_text.url == ",".join(servers.urls[:3])
    assert as_list.redlock("r").nodes == 3
    # every other pattern uses the first server
    as_list.execute_command("SET", "k", "v")
    assert redpat.Client(servers.urls[0]).execute_command("GET", "k") == b"v"
    assert redpat.Client(servers.urls[1]).execute_command("GET", "k") is None
    try:
        redpat.Client([servers.urls[0], 42])  # type: ignore[list-item]
    except TypeError as exc:
        assert "url[1]" in str(exc)
    else:
        raise AssertionError("a non-str URL was taken")
    try:
        redpat.Client(servers.urls[:2]).redlock("r")
    except redpat.InvalidArgument:
        pass  # a Redlock needs an odd number >= 3 of servers
    else:
        raise AssertionError("a Redlock over two servers was made")


def connections(url: str) -> List[bytes]:
    """The ids of the server's client connections, but the one asking."""
    listing = redpat.Client(url).execute_command("CLIENT", "LIST")
    return sorted(line.split(b" ")[0] for line in listing.splitlines()
                  if b"cmd=client|list" not in line)


def test_asyncio_quorum_round_parks_the_slow_server_connection(servers: Servers) -> None:
    """A Redlock acquire ends once three servers answered; the slow fifth's connection is
    parked (it owes the reply), not closed: the release that follows goes over the same
    connection, after the acquire, so no key is left behind and no reconnect happens."""
    slow = servers.urls[4]
    port = int(slow.rsplit(":", 1)[1].split("/")[0])

    async def main() -> None:
        async with rpa.Client(servers.urls, namespace="par") as client:
            lock = client.redlock("r", timeout=10, node_timeout=1.0)
            assert await lock.acquire(blocking=False)  # every connection open
            await lock.release()
            before = connections(slow)
            for _ in range(5):
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(b"DEBUG SLEEP 0.05\r\n")
                    time.sleep(0.002)
                    t0 = time.monotonic()
                    assert await lock.acquire(blocking=False)
                    assert time.monotonic() - t0 < 0.04  # the quorum, not the slow one
                    await lock.release()  # waits for every server: the slow one too
                    assert s.recv(16).startswith(b"+OK")
            assert connections(slow) == before  # the same connection all along
            for url in servers.urls:
                assert redpat.Client(url).execute_command("EXISTS", key(client, b"r")) == 0
    run(main)


def test_resp_skipper_of_parked_connections() -> None:
    from redpat._aio import _resp_end
    values = [b"+OK\r\n", b"-ERR x\r\n", b":42\r\n", b"$-1\r\n", b"$5\r\nab\r\nc\r\n",
              b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", b"*-1\r\n", b"%1\r\n+k\r\n:1\r\n", b"_\r\n",
              b"|1\r\n+a\r\n+b\r\n:7\r\n", b">2\r\n+m\r\n$1\r\nx\r\n"]
    stream = b"".join(values)
    pos = 0
    for v in values:
        end = _resp_end(stream, pos)
        assert end == pos + len(v), v
        pos = end
        for cut in range(1, len(v)):  # any prefix is incomplete, never a wrong end
            assert _resp_end(v[:cut], 0) is None, (v, cut)
    try:
        _resp_end(b"?what\r\n", 0)
    except ValueError:
        pass
    else:
        raise AssertionError("non-RESP accepted")
