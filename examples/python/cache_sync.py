"""Caching from Python: cache-aside with a loader, a negative entry, a write that wins over
a slow reader's stale fill, write-through, tags, and a near-cache.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/cache_sync.py
"""
from __future__ import annotations

import os
import threading
import time
from typing import Dict, Optional

import redpat

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")

# The "database".
ROWS: Dict[str, Dict[str, str]] = {"user:1": {"name": "ann"}, "user:2": {"name": "bob"}}
QUERIES = 0


def load_user(key: str) -> Optional[Dict[str, str]]:
    global QUERIES
    QUERIES += 1
    return ROWS.get(key)  # None: no such row (kept as a negative entry)


def main() -> None:
    client = redpat.Client(URL, namespace="example")
    users = client.cache("users", ttl=60.0, jitter=5.0, negative_ttl=10.0)
    for key in ("user:1", "user:2", "user:404"):
        users.delete(key)

    # Cache-aside: the first read loads, the next ones hit (one round trip, one script).
    print(users.get_or_load("user:1", load_user), users.get_or_load("user:1", load_user))
    print("database queries:", QUERIES)
    # A row that does not exist is cached as a negative entry, told apart from a miss.
    print(users.get_or_load("user:404", load_user), users.lookup("user:404").negative)
    print("a miss:", users.get("user:3", default="<miss>"))

    # A writer that commits while a reader loads: the reader's old row is not cached.
    started, committed = threading.Event(), threading.Event()

    def slow_load(key: str) -> Optional[Dict[str, str]]:
        row = ROWS.get(key)
        started.set()
        committed.wait(5)  # the writer commits and invalidates meanwhile
        return row

    reader = threading.Thread(target=lambda: print("reader got", users.get_or_load("user:2", slow_load)))
    reader.start()
    started.wait(5)
    ROWS["user:2"] = {"name": "bob", "email": "bob@example.com"}
    users.delete("user:2")
    committed.set()
    reader.join()
    print("cached after the race:", users.get("user:2", default="<miss: the old row was not cached>"))

    # Write-through: the database first, then the cache; a failed write leaves it untouched.
    def save(key: str, row: Optional[Dict[str, str]]) -> None:
        if row is not None and not row.get("name"):
            raise ValueError("a user needs a name")
        if row is not None:
            ROWS[key] = row

    users.write("user:1", {"name": "ann", "team": "blue"}, save)
    try:
        users.write("user:1", {"name": ""}, save)
    except ValueError as err:
        print("write refused:", err, "- cache still has", users.get("user:1"))

    # Tags: invalidating a tag misses every entry that carries it (on a cluster too).
    users.set("user:1", ROWS["user:1"], tags=["team:blue"])
    users.invalidate_tags("team:blue")
    print("after the tag's invalidation:", users.get("user:1", default="<miss>"))

    # A near-cache: repeated hits are answered in-process, kept coherent by invalidations.
    near = client.cache("users-near", ttl=60.0, near_size=1000, near_ttl=5.0)
    near.set("user:1", ROWS["user:1"])
    for _ in range(50):  # its invalidation subscriber starts in the background
        if near.lookup("user:1").near:
            break
        time.sleep(0.02)
    t0 = time.perf_counter()
    for _ in range(1000):
        near.get("user:1")
    print("near-cache hit: %.1f us" % ((time.perf_counter() - t0) * 1000.0))
    near.close()


if __name__ == "__main__":
    main()
