"""Runs the shared matrix (tests/matrix/*.json) through the sync API: redpat.Client,
redpat.Lock and redpat.RateLimiter. Prints `matrix[python]: N passed, F failed, S skipped`;
exits non-zero on any failure. Uses REDPAT_TEST_URL, or starts a private redis-server.
Arguments: directories of matrix files (default tests/matrix), and/or a filter: run only
cases whose name contains it."""
from __future__ import annotations

import sys
import time

import redpat
from matrix_common import Driver, main


class SyncDriver(Driver):
    frontend = "python"
    client_class = redpat.Client

    async def sleep(self, ms: int) -> None:
        time.sleep(ms / 1000.0)


if __name__ == "__main__":
    sys.exit(main(SyncDriver()))
