"""Rate limiting from asyncio: the same limiters with await, and an async decorator.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/ratelimit_asyncio.py
"""
from __future__ import annotations

import asyncio
import os

import redpat
import redpat.asyncio

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


async def main() -> None:
    async with redpat.asyncio.Client(URL, namespace="example") as client:
        api = client.ratelimiter("aio-api", "token_bucket", limit=10, window=1.0, burst=3)
        await api.reset("user:7")
        decisions = await asyncio.gather(*(api.check("user:7") for _ in range(5)))
        print("allowed:", sum(1 for d in decisions if d.allowed), "of 5")  # the burst: 3

        @client.ratelimited("aio-search", "fixed_window", limit=2, window=60.0,
                            key=lambda user, query: "user:%s" % user)
        async def search(user: str, query: str) -> str:
            return "results for %r" % query

        await client.ratelimiter("aio-search", "fixed_window", limit=2,
                                 window=60.0).reset("user:bob")
        for query in ("redis", "lua", "python"):
            try:
                print(await search("bob", query))
            except redpat.RateLimited as err:
                print("refused %r: retry after %.0fs" % (query, err.retry_after))


if __name__ == "__main__":
    asyncio.run(main())
