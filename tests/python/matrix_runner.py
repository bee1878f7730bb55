"""Runs the shared matrix (tests/matrix/*.json) through the sync API: redpat.Client,
redpat.Cache, redpat.Lock, redpat.PubSub and redpat.RateLimiter. Prints
`matrix[python]: N passed, F failed, S skipped` (`matrix[python-cluster]` under
harness.py run --cluster: see matrix_common.py); exits non-zero on any failure. Uses the
harness's servers (harness.py run --servers 5), or starts private ones. Arguments:
directories of matrix files (default tests/matrix), and/or a filter: run only cases whose
name contains it."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import redpat
from matrix_common import Driver, main, run_now


class SyncDriver(Driver):
    frontend = "python"
    client_class = redpat.Client

    async def sleep(self, ms: int) -> None:
        time.sleep(ms / 1000.0)

    def callback(self, run: Callable[[], Any]) -> Callable[..., Any]:
        def fn(*args: Any) -> Any:  # a plain function: the core CALLs it in this thread
            return run_now(run())
        return fn


if __name__ == "__main__":
    sys.exit(main(SyncDriver()))
