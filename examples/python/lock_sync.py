"""A lock shared by threads of one program: one Client, one Lock object per thread.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/lock_sync.py
"""
from __future__ import annotations

import os
import threading

import redpat

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


def main() -> None:
    client = redpat.Client(URL, namespace="example", command_timeout=1.0)
    client.execute_command("DEL", "example:balance")

    def deposit(times: int) -> None:
        lock = client.lock("account-42", timeout=5.0, blocking_timeout=10.0)
        for _ in range(times):
            with lock:  # raises redpat.LockError if not acquired within 10 s
                balance = int(client.execute_command("GET", "example:balance") or 0)
                client.execute_command("SET", "example:balance", balance + 10)

    threads = [threading.Thread(target=deposit, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("balance:", int(client.execute_command("GET", "example:balance")))  # 1000

    @client.locked("nightly-report", timeout=60.0, blocking_timeout=5.0)
    def nightly_report() -> str:
        return "report done under the lock"

    print(nightly_report())

    # Try once, without waiting: acquire() returns False when someone else holds it.
    lock = client.lock("report", timeout=30.0)
    if lock.acquire(blocking=False):
        try:
            lock.extend(10.0)  # needs more time: 10 s more on what is left
            print("report lock held, token", lock.token)
        finally:
            lock.release()
    try:
        lock.release()
    except redpat.LockNotOwnedError as err:
        print("second release refused:", err.status)


if __name__ == "__main__":
    main()
