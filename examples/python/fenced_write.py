"""Fencing tokens: a holder that lost its lock (paused, expired) cannot overwrite the work
of the next holder, because the storage checks the token before each write.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/fenced_write.py
"""
from __future__ import annotations

import os
import time

import redpat

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


def store(client: redpat.Client, fence: int, value: str) -> bool:
    """The storage side: refuse writes that carry an older token than one already seen."""
    check = client.fence_check("invoices-db", fence)
    if not check.accepted:
        print("write %r refused: token %d < highest %d" % (value, fence, check.highest))
        return False
    print("write %r accepted with token %d" % (value, fence))
    return True


def main() -> None:
    client = redpat.Client(URL, namespace="example-fence")
    client.execute_command("DEL", "example-fence:fence:{invoices-db}",
                           "example-fence:lock:{invoices}:fence")
    slow = client.lock("invoices", timeout=0.2, fenced=True)
    fast = client.lock("invoices", timeout=5.0, fenced=True)
    assert slow.acquire()
    stale_token = slow.fence
    time.sleep(0.3)  # the slow holder pauses past its TTL: the lock expires
    assert fast.acquire()
    store(client, fast.fence, "from the new holder")
    store(client, stale_token, "from the stale holder")  # refused
    fast.release()


if __name__ == "__main__":
    main()
