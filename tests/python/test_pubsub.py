"""PubSub in both flavours: redis-py's interface (subscribe, psubscribe, get_message dicts,
listen, `for` / `async for`), binary-safe channels and payloads, a connection of its own that
reconnects after it drops and says so ("reconnect"), subscriptions changed from another
thread while one reads, and Ctrl-C ending a blocking read."""
from __future__ import annotations

import _thread
import asyncio
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, TypeVar

import pytest

import redpat
import redpat.asyncio as rpa

T = TypeVar("T")
CHANNEL = b"c\x00\xff\r\nh"
PAYLOAD = b"\x00a\r\nb\xff\x00"
WAIT = 3.0


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()
    return asyncio.run(wrapper())


def msg(kind: str, channel: Optional[bytes], data: Any,
        pattern: Optional[bytes] = None) -> Dict[str, Any]:
    return {"type": kind, "pattern": pattern, "channel": channel, "data": data}


def test_subscribe_publish_and_the_messages(client: redpat.Client) -> None:
    with client.pubsub() as p:
        p.subscribe("news", CHANNEL)
        p.psubscribe("user.*")
        # confirmed in the byte-wise order of the names
        assert p.get_message(timeout=WAIT) == msg("subscribe", CHANNEL, 1)
        assert p.get_message(timeout=WAIT) == msg("subscribe", b"news", 2)
        assert p.get_message(timeout=WAIT) == msg("psubscribe", b"user.*", 3)
        assert p.channels == {b"news", CHANNEL} and p.patterns == {b"user.*"}
        assert client.publish("news", "hello") == 1
        assert client.publish(CHANNEL, PAYLOAD) == 1
        assert client.publish("user.42", b"x") == 1
        assert client.publish("nobody", b"x") == 0
        assert p.get_message(timeout=WAIT) == msg("message", b"news", b"hello")
        assert p.get_message(timeout=WAIT) == msg("message", CHANNEL, PAYLOAD)
        assert p.get_message(timeout=WAIT) == msg("pmessage", b"user.42", b"x", b"user.*")
        t0 = time.monotonic()
        assert p.get_message() is None  # timeout 0: only what is there
        assert time.monotonic() - t0 < 0.1
        p.unsubscribe("news")
        assert p.get_message(timeout=WAIT) == msg("unsubscribe", b"news", 2)
        p.punsubscribe()  # every pattern, the channels stay
        assert p.get_message(timeout=WAIT) == msg("punsubscribe", b"user.*", 1)
        assert p.channels == {CHANNEL} and not p.patterns
        assert client.execute_command("PUBSUB", "NUMSUB", CHANNEL) == [CHANNEL, 1]
    # closed: its connection is gone
    assert client.execute_command("PUBSUB", "NUMSUB", CHANNEL) == [CHANNEL, 0]
    with pytest.raises(redpat.StateError):
        p.get_message()


def test_for_loop_and_ignore_subscribe_messages(client: redpat.Client) -> None:
    p = client.pubsub(ignore_subscribe_messages=True, channels=["jobs"])
    p.connect()
    publisher = threading.Timer(0.1, lambda: [client.publish("jobs", b"%d" % i)
                                              for i in range(3)])
    publisher.start()
    got = []
    for message in p:  # listen(): every message, as they come
        got.append(message["data"])
        if len(got) == 3:
            break
    assert got == [b"0", b"1", b"2"]
    p.close()


def test_another_thread_subscribes_while_one_reads(client: redpat.Client) -> None:
    p = client.pubsub()
    p.connect()
    got: List[Dict[str, Any]] = []

    def reader() -> None:
        for message in p.listen():
            got.append(message)
            if message["type"] == "message":
                return

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.2)  # the reader waits in listen()
    t0 = time.monotonic()
    p.subscribe("late")  # gets in between the reader's waits
    assert time.monotonic() - t0 < 1.0
    deadline = time.monotonic() + WAIT
    while client.publish("late", b"hi") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert got == [msg("subscribe", b"late", 1), msg("message", b"late", b"hi")]
    p.close()


def test_reconnects_after_its_connection_is_killed(client: redpat.Client) -> None:
    with client.pubsub(channels=["a"], patterns=["p*"]) as p:
        p.connect()
        assert p.get_message(timeout=WAIT) == msg("subscribe", b"a", 1)
        assert p.get_message(timeout=WAIT) == msg("psubscribe", b"p*", 2)
        assert client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        assert p.get_message(timeout=WAIT) == msg("reconnect", None, None)
        assert client.publish("a", b"back") == 1  # subscribed again, both of them
        assert client.publish("pz", b"too") == 1
        assert p.get_message(timeout=WAIT) == msg("message", b"a", b"back")
        assert p.get_message(timeout=WAIT) == msg("pmessage", b"pz", b"too", b"p*")


def test_ctrl_c_ends_a_blocking_read(client: redpat.Client) -> None:
    p = client.pubsub(channels=["quiet"])
    p.connect()
    assert p.get_message(timeout=WAIT) == msg("subscribe", b"quiet", 1)
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        p.get_message(timeout=None)  # for ever, but for the Ctrl-C
    assert time.monotonic() - t0 < 1.0
    assert client.publish("quiet", b"still") == 1  # nothing was lost
    assert p.get_message(timeout=WAIT) == msg("message", b"quiet", b"still")
    p.close()


def test_bad_names_are_refused(client: redpat.Client) -> None:
    with pytest.raises(redpat.InvalidArgument, match="channels"):
        client.pubsub(channels=[""])
    with pytest.raises(TypeError, match="patterns"):
        client.pubsub(patterns="p*")  # one str, not a list of them
    with client.pubsub() as p:
        with pytest.raises(redpat.InvalidArgument, match="channels"):
            p.subscribe("ok", "")
        assert not p.channels


def test_asyncio_async_for_binary_and_reconnect(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            async with client.pubsub() as p:
                await p.subscribe(CHANNEL)
                await p.psubscribe(b"p\xff*")
                assert await p.get_message(timeout=WAIT) == msg("subscribe", CHANNEL, 1)
                assert await p.get_message(timeout=WAIT) == msg("psubscribe", b"p\xff*", 2)
                assert await client.publish(CHANNEL, PAYLOAD) == 1
                assert await client.publish(b"p\xff\x00", PAYLOAD) == 1
                got = []
                async for message in p:
                    got.append(message)
                    if len(got) == 2:
                        break
                assert got == [msg("message", CHANNEL, PAYLOAD),
                               msg("pmessage", b"p\xff\x00", PAYLOAD, b"p\xff*")]
                assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
                assert await p.get_message(timeout=WAIT) == msg("reconnect", None, None)
                assert await client.publish(CHANNEL, b"again") == 1
                assert await p.get_message(timeout=WAIT) == msg("message", CHANNEL, b"again")
            assert await client.execute_command("PUBSUB", "NUMSUB", CHANNEL) == [CHANNEL, 0]
    run(main)


def test_asyncio_subscribe_wakes_a_waiting_reader(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            p = client.pubsub(ignore_subscribe_messages=True)
            await p.connect()
            reader = asyncio.ensure_future(p.get_message(timeout=WAIT))
            await asyncio.sleep(0.1)  # it waits for a message
            await p.subscribe("late")  # sent now, by the waiting reader
            deadline = time.monotonic() + WAIT
            while await client.publish("late", b"hi") == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert await reader == msg("message", b"late", b"hi")
            await p.close()
            with pytest.raises(redpat.StateError):
                await p.get_message()
    run(main)


def test_asyncio_get_message_waits_without_blocking_the_loop(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            async with client.pubsub(channels=["t"], ignore_subscribe_messages=True) as p:
                await p.connect()
                ticks = 0

                async def tick() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.01)
                        ticks += 1

                ticker = asyncio.ensure_future(tick())
                t0 = time.monotonic()
                assert await p.get_message(timeout=0.3) is None
                assert 0.25 < time.monotonic() - t0 < 1.0
                ticker.cancel()
                assert ticks >= 10
    run(main)


def test_asyncio_close_ends_a_waiting_reader(url: str, namespace: str) -> None:
    async def main() -> None:
        async with rpa.Client(url, namespace=namespace) as client:
            p = client.pubsub(channels=["idle"], ignore_subscribe_messages=True)
            await p.connect()

            async def read_all() -> List[Dict[str, Any]]:
                return [m async for m in p]

            reader = asyncio.ensure_future(read_all())
            await asyncio.sleep(0.1)
            await p.close()  # from another task: the reader's listen() just ends
            assert await asyncio.wait_for(reader, WAIT) == []
    run(main)


def test_sync_close_from_another_thread_ends_listen(client: redpat.Client) -> None:
    p = client.pubsub(channels=["idle"], ignore_subscribe_messages=True)
    p.connect()
    got: List[Any] = []
    thread = threading.Thread(target=lambda: got.extend(p.listen()))
    thread.start()
    time.sleep(0.2)
    p.close()
    thread.join(WAIT)
    assert not thread.is_alive() and got == []
