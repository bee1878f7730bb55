"""Publish and subscribe, redis-py's PubSub interface (sync, then asyncio).

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/pubsub.py
"""
from __future__ import annotations

import asyncio
import os

import redpat
import redpat.asyncio

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


def main() -> None:
    client = redpat.Client(URL)
    with client.pubsub(ignore_subscribe_messages=True) as sub:  # a connection of its own
        sub.subscribe("news")
        sub.psubscribe("ev:*")
        while sub.get_message(timeout=1.0) is not None:  # wait for the confirmations
            pass
        print("receivers:", client.publish("news", b"hello"))
        client.publish("ev:login", b"\x00binary\r\n")
        for msg in sub.listen():  # {"type", "pattern", "channel", "data"}, as redis-py
            print(msg["type"], msg["channel"], msg["data"])
            if msg["type"] == "pmessage":
                break

    async def run_async() -> None:
        async with redpat.asyncio.Client(URL) as aclient:
            async with aclient.pubsub(channels=["news"]) as asub:
                async for msg in asub:
                    if msg["type"] == "subscribe":
                        await aclient.publish("news", b"hello again")
                    elif msg["type"] == "message":
                        print("asyncio:", msg["data"])
                        break

    asyncio.run(run_async())


if __name__ == "__main__":
    main()
