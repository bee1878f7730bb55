"""Runs the shared matrix (tests/matrix/*.json) through redpat.asyncio: Client, Lock and
RateLimiter with async/await (the core's ops over asyncio streams). Prints
`matrix[python-asyncio]: N passed, F failed, S skipped`; exits non-zero on any failure.
Uses REDPAT_TEST_URL, or starts a private redis-server. Arguments: directories of matrix
files (default tests/matrix), and/or a filter: run only cases whose name contains it."""
from __future__ import annotations

import asyncio
import sys

import redpat.asyncio as rpa
from matrix_common import Driver, main


class AsyncDriver(Driver):
    frontend = "python-asyncio"
    client_class = rpa.Client

    async def sleep(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000.0)


if __name__ == "__main__":
    sys.exit(main(AsyncDriver()))
