"""Auto-renewal: hold a lock for longer than its TTL while the work goes on, and be told if
it is lost.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/watchdog.py
"""
from __future__ import annotations

import os
import time

import redpat

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


def on_lost(lock: redpat.Lock, err: BaseException) -> None:
    print("lock %r lost: stop the work now (%s)" % (lock.name, err))


def main() -> None:
    client = redpat.Client(URL, namespace="example-wd")
    # TTL 0.3 s, renewed every 0.1 s, for at most 60 s in all.
    lock = client.lock("long-job", timeout=0.3, auto_renew=True, max_hold=60.0,
                       on_lost=on_lost)
    with lock:
        time.sleep(1.0)  # three TTLs: the watchdog keeps the lock alive
        print("still owned after 1 s:", lock.owned())

    try:
        with lock:
            client.execute_command("DEL", "example-wd:lock:{long-job}")  # simulate a loss
            time.sleep(0.3)
    except redpat.LockLostError as err:
        print("left the with block with:", type(err).__name__)


if __name__ == "__main__":
    main()
