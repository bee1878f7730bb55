"""The same lock from asyncio tasks: redpat.asyncio drives the core over asyncio streams.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/lock_asyncio.py
"""
from __future__ import annotations

import asyncio
import os

import redpat.asyncio

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


async def worker(client: redpat.asyncio.Client, n: int) -> None:
    lock = client.lock("nightly-job", timeout=5.0, blocking_timeout=10.0)
    async with lock:
        print("task %d holds the lock" % n)
        await asyncio.sleep(0.01)


async def main() -> None:
    async with redpat.asyncio.Client(URL, namespace="example") as client:
        await asyncio.gather(*(worker(client, n) for n in range(5)))
        lock = client.lock("nightly-job", timeout=5.0)
        print("acquired:", await lock.acquire(blocking=False))
        print("owned:", await lock.owned())
        await lock.release()


if __name__ == "__main__":
    asyncio.run(main())
