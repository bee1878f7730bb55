"""Runs the shared matrix (tests/matrix/*.json) through redpat.asyncio: Client, Cache,
Lock, PubSub and RateLimiter with async/await (the core's ops over asyncio streams). Prints
`matrix[python-asyncio]: N passed, F failed, S skipped` (`matrix[python-asyncio-cluster]` under
harness.py run --cluster: see matrix_common.py); exits non-zero on any failure.
Uses the harness's servers (harness.py run --servers 5), or starts private ones.
Arguments: directories of matrix files (default tests/matrix), and/or a filter: run only
cases whose name contains it."""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable

import redpat.asyncio as rpa
from matrix_common import Driver, main


class AsyncDriver(Driver):
    frontend = "python-asyncio"
    client_class = rpa.Client

    async def sleep(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000.0)

    def callback(self, run: Callable[[], Any]) -> Callable[..., Any]:
        async def fn(*args: Any) -> Any:  # a coroutine function: run as a task
            return await run()
        return fn


if __name__ == "__main__":
    sys.exit(main(AsyncDriver()))
