"""Rate limiting from Python: a per-user API limit, a decorator, two limits at once, and
what a check answers when Redis is down.

    REDPAT_URL=redis://127.0.0.1:6379/0 python examples/python/ratelimit_sync.py
"""
from __future__ import annotations

import os

import redpat

URL = os.environ.get("REDPAT_URL", "redis://127.0.0.1:6379/0")


def main() -> None:
    client = redpat.Client(URL, namespace="example")

    # 5 requests per 10 seconds per user, GCRA: smooth, with an exact retry_after.
    api = client.ratelimiter("api", "gcra", limit=5, window=10.0)
    api.reset("user:42")
    for i in range(7):
        d = api.check("user:42")
        if d:  # a Decision is truthy when allowed
            print("request %d allowed, %d left" % (i, d.remaining))
        else:
            print("request %d refused: retry in %.2fs" % (i, d.retry_after))

    # A decorator: the subject comes from the call's arguments.
    logins = client.ratelimiter("login", "sliding_log", limit=3, window=60.0)
    logins.reset("ann")

    @logins.limited(key=lambda username, password: username)
    def login(username: str, password: str) -> bool:
        return password == "secret"

    for attempt in range(4):
        try:
            print("login attempt %d: %s" % (attempt, login("ann", "guess")))
        except redpat.RateLimited as err:
            print("login attempt %d refused, retry after %.1fs" % (attempt, err.retry_after))

    # Two limits at once, all-or-nothing: 2 per second and 100 per hour.
    per_second = client.ratelimiter("per-second", "fixed_window", limit=2, window=1.0)
    per_hour = client.ratelimiter("per-hour", "token_bucket", limit=100, window=3600.0)
    for limiter in (per_second, per_hour):
        limiter.reset("ip:10.0.0.1")
    for _ in range(3):
        d = client.ratelimit_multi([per_second, per_hour], "ip:10.0.0.1")
        print("multi:", "allowed" if d else "refused by limit %d" % d.refused_by)

    # Many subjects in one round trip.
    print("batch:", [d.allowed for d in api.batch(["user:1", "user:2", "user:42"])])

    # Redis unreachable: the limiter's on_error policy answers, marked degraded.
    down = redpat.Client("redis://127.0.0.1:1/0", connect_timeout=0.2)
    lenient = down.ratelimiter("api", limit=5, window=10.0, on_error="fail_open")
    d = lenient.check("user:42")
    print("Redis down, fail_open: allowed=%s degraded=%s" % (d.allowed, d.degraded))
    print("  the error it stood in for:", repr(d.error))


if __name__ == "__main__":
    main()
