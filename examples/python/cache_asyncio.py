"""Caching under asyncio: 200 tasks ask for one expired hot key at once; the loader runs
once (stampede protection by lock), and the others get its value as soon as it is cached.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/cache_asyncio.py
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Dict, List

import redpat.asyncio

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


async def main() -> None:
    client = redpat.asyncio.Client(URL, namespace="example")
    report = client.cache("report", ttl=30.0, stampede="lock", lock_ttl=5.0)
    await report.delete("daily")
    runs = 0

    async def build(key: str) -> Dict[str, int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)  # a 50 ms query
        return {"orders": 1234}

    async def one() -> float:
        t0 = time.perf_counter()
        assert await report.get_or_load("daily", build) == {"orders": 1234}
        return time.perf_counter() - t0

    times: List[float] = sorted(await asyncio.gather(*(one() for _ in range(200))))
    print("200 callers, loader runs: %d, slowest %.0f ms" % (runs, times[-1] * 1000))
    # Stale-while-revalidate: past its ttl an entry is served at once while one task refreshes.
    news = client.cache("news", ttl=0.2, stampede="swr", stale=60.0)
    await news.set("front", ["old headline"])
    await asyncio.sleep(0.3)

    async def fresh(key: str) -> List[str]:
        await asyncio.sleep(0.05)
        return ["new headline"]

    result = await news.load("front", fresh)
    print("swr:", result.value, "stale" if result.stale else "refreshed by this caller")
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
