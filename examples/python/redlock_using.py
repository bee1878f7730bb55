"""Redlock over several independent servers, and Lock.using: the lock renewed by the core
while a function runs (sync, then asyncio).

    REDPAT_URLS=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003 \
        python examples/python/redlock_using.py
"""
from __future__ import annotations

import asyncio
import os
import time

import redpat
import redpat.asyncio

URLS = os.environ.get("REDPAT_URLS",
                      "redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003")


def build_report(day: str) -> str:
    time.sleep(0.7)  # longer than the TTL: only the renewals keep the lock ours
    return "report for " + day


async def build_report_async(day: str) -> str:
    await asyncio.sleep(0.7)
    return "report for " + day


def main() -> None:
    # a list of URLs (or one ','-joined string): one endpoint per independent server
    client = redpat.Client(URLS.split(","), namespace="example-rl")
    lock = client.redlock("report:daily", timeout=0.3, node_timeout=0.05)
    # the redis-py Lock interface, each call one parallel round to every server
    if lock.acquire(blocking_timeout=1.0):
        print("held on a majority, safe for %.3f s more" % lock.validity)
        lock.release()
    # take it, run the function while it is renewed every timeout/3, release it
    print(lock.using(build_report, "2026-12-01"), "(renewed %d times)" % lock.renewals)

    async def run_async() -> None:
        async with redpat.asyncio.Client(URLS, namespace="example-rl") as aclient:
            alock = aclient.redlock("report:daily", timeout=0.3)
            print(await alock.using(build_report_async, "2026-12-02"))

    asyncio.run(run_async())


if __name__ == "__main__":
    main()
