"""Rate limiters through the sync API: decisions as typed values in seconds, options checked
by the core (messages naming the argument), batch and multi-limit checks, the decorators,
binary subjects, the on_error policies with Redis down, and exactness under threads."""
from __future__ import annotations

import functools
import pickle
import socket
import threading
import time
from typing import Iterator, List

import pytest
from harness import RedisServer

import redpat

ALGORITHMS = ["fixed_window", "sliding_log", "sliding_window", "token_bucket", "gcra"]


def closed_port_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return "redis://127.0.0.1:%d/0" % s.getsockname()[1]


# -- decisions ------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_admits_the_limit_then_refuses(client: redpat.Client, algorithm: str) -> None:
    api = client.ratelimiter("api", algorithm, limit=3, window=60.0)
    decisions = [api.check("u") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    first, refused = decisions[0], decisions[3]
    assert isinstance(first, redpat.Decision) and first and not refused  # truthy = allowed
    assert first.limit == 3 and first.retry_after == 0.0
    assert first.degraded is False and first.error is None and first.refused_by == -1
    # Seconds as floats, decided on the server's clock: within the 60 s window (the
    # sliding window counter weighs the previous window too: up to two).
    assert isinstance(refused.retry_after, float) and 0.0 < refused.retry_after <= 120.0
    assert isinstance(refused.reset_after, float) and 0.0 < refused.reset_after <= 120.0
    assert api.check("other").allowed  # subjects are independent


def test_cost_peek_and_reset(client: redpat.Client) -> None:
    api = client.ratelimiter("api", "sliding_log", limit=5, window=60.0)
    assert api.check("u", cost=4).remaining == 1
    assert not api.check("u", cost=2).allowed                 # refused: nothing consumed
    peek = api.check("u", cost=0)
    assert peek.allowed and peek.remaining == 1               # cost 0 consumes nothing
    assert api.check("u").remaining == 0
    api.reset("u")
    assert client.execute_command("DBSIZE") == 0
    assert api.check("u").remaining == 4


def test_window_in_seconds(client: redpat.Client) -> None:
    api = client.ratelimiter("fast", "fixed_window", limit=2, window=0.2)
    assert api.window == 0.2
    assert api.check("u") and api.check("u")
    refused = api.check("u")
    assert not refused and 0.0 < refused.retry_after <= 0.2
    time.sleep(0.25)
    assert api.check("u")


def test_burst(client: redpat.Client) -> None:
    api = client.ratelimiter("b", "token_bucket", limit=10, window=1.0, burst=3)
    assert api.check("u", 3).remaining == 0
    refused = api.check("u")
    assert not refused and refused.limit == 3 and 0.0 < refused.retry_after <= 0.1
    time.sleep(0.13)
    assert api.check("u")


def test_every_key_has_a_ttl(client: redpat.Client) -> None:
    for algorithm in ALGORITHMS:
        client.ratelimiter("t-" + algorithm, algorithm, limit=5, window=10.0).check("u")
    keys = client.execute_command("KEYS", "*")
    assert len(keys) == 5  # one per algorithm (a sliding log writes its :seq key for costs > 1)
    for key in keys:  # at most two windows (the sliding window counter's previous one)
        assert 0 < client.execute_command("PTTL", key) <= 20000


def test_batch(client: redpat.Client) -> None:
    api = client.ratelimiter("api", "fixed_window", limit=2, window=60.0)
    out = api.batch(["a", b"b", "a", "a", bytearray(b"\x00")])
    assert [d.allowed for d in out] == [True, True, True, False, True]
    assert [d.remaining for d in out] == [1, 1, 0, 0, 1]
    out = api.batch(iter(["b", "c"]), costs=[1, 2])
    assert [(d.allowed, d.remaining) for d in out] == [(True, 0), (True, 0)]
    with pytest.raises(redpat.InvalidArgument,
                       match=r"^costs must have one item per subjects item \(got 1 for 2\)$"):
        api.batch(["a", "b"], costs=[1])
    with pytest.raises(redpat.InvalidArgument, match=r"^subjects\[1\] must not be empty$"):
        api.batch(["a", ""])
    with pytest.raises(TypeError, match=r"^subjects\[1\] must be bytes or str, not int$"):
        api.batch(["a", 2])  # type: ignore[list-item]
    with pytest.raises(redpat.InvalidArgument, match="^subjects must have 1"):
        api.batch([])
    with pytest.raises(TypeError, match="iterable of subjects"):
        api.batch("abc")


def test_batch_is_one_round_trip(client: redpat.Client) -> None:
    api = client.ratelimiter("api", "gcra", limit=100, window=60.0)
    api.check("warm-up")  # the script is loaded
    client.execute_command("CONFIG", "RESETSTAT")
    out = api.batch(["s%d" % i for i in range(50)])
    assert all(out)
    stats = client.execute_command("INFO", "commandstats").decode()
    evalsha = [line for line in stats.splitlines() if line.startswith("cmdstat_evalsha:")]
    assert evalsha and evalsha[0].startswith("cmdstat_evalsha:calls=50,")


def test_multi_is_all_or_nothing(client: redpat.Client) -> None:
    per_second = client.ratelimiter("per-second", "fixed_window", limit=2, window=10.0)
    per_hour = client.ratelimiter("per-hour", "sliding_log", limit=5, window=3600.0)
    both = [per_second, per_hour]
    assert client.ratelimit_multi(both, "u").refused_by == -1
    assert client.ratelimit_multi(both, "u", cost=1).remaining == 0
    refused = client.ratelimit_multi(both, "u")
    assert not refused and refused.refused_by == 0 and refused.limit == 2
    # The refusal consumed nothing from the limit that would have allowed it.
    assert per_hour.check("u", cost=0).remaining == 3
    other = redpat.Client(client.url, namespace="elsewhere")
    with pytest.raises(redpat.InvalidArgument, match=r"^limiters\[1\] was made from another Client$"):
        client.ratelimit_multi([per_second, other.ratelimiter("x", limit=1, window=1.0)], "u")
    with pytest.raises(redpat.InvalidArgument, match=r"^limiters must have 1\.\.8 items \(got 0\)$"):
        client.ratelimit_multi([], "u")
    with pytest.raises(redpat.InvalidArgument, match=r"^limiters must have 1\.\.8 items \(got 9\)$"):
        client.ratelimit_multi([per_second] * 9, "u")
    with pytest.raises(TypeError):
        client.ratelimit_multi(["per-second"], "u")  # type: ignore[list-item]


def test_multi_refuses_the_same_limiter_twice(client: redpat.Client) -> None:
    """Issue 11 item 9 of 10 used, the same limiter twice: it was allowed and counted 11."""
    api = client.ratelimiter("dup", "fixed_window", limit=10, window=60.0)
    other = client.ratelimiter("other", limit=10, window=60.0)
    assert api.check("u", cost=9).remaining == 1
    with pytest.raises(redpat.InvalidArgument, match=r'^limiters\[2\] is the same limiter as '
                       r'limiters\[0\] \(name "dup"\): one check cannot count it twice$'):
        client.ratelimit_multi([api, other, api], "u")
    same_name = client.ratelimiter("dup", "token_bucket", limit=5, window=1.0)  # same keys
    with pytest.raises(redpat.InvalidArgument, match=r"^limiters\[1\] is the same limiter as "
                       r"limiters\[0\] "):
        client.ratelimit_multi([api, same_name], "u")
    assert client.execute_command("GET", client.namespace + b":rl:dup:{u}") == b"9"
    assert client.execute_command("EXISTS", client.namespace + b":rl:other:{u}") == 0


@pytest.mark.parametrize("call, text", [
    (lambda c, l: c.ratelimiter("b", limit=True, window=1.0), "limit must be an int, not bool"),
    (lambda c, l: c.ratelimiter("b", limit=5, window=1.0, burst=False),
     "burst must be an int, not bool"),
    (lambda c, l: c.ratelimiter("b", limit=5, window=True), "window must be a number of "
     "seconds, not bool"),
    (lambda c, l: l.check("u", cost=True), "cost must be an int, not bool"),
    (lambda c, l: l.check("u", False), "cost must be an int, not bool"),
    (lambda c, l: l.batch(["u", "v"], costs=[1, True]), "costs[1] must be an int, not bool"),
    (lambda c, l: c.ratelimit_multi([l], "u", cost=True), "cost must be an int, not bool"),
    (lambda c, l: l.limited(key=lambda: "u", cost=True)(lambda: None)(),
     "cost must be an int, not bool"),
])
def test_bools_are_not_integers(client: redpat.Client, call: object, text: str) -> None:
    """A bool is an int subclass in Python: refused everywhere an integer belongs, naming the
    argument (cost=True was once taken as 1 while limit=True was a TypeError)."""
    api = client.ratelimiter("api", limit=5, window=60.0)
    with pytest.raises(TypeError) as info:
        call(client, api)  # type: ignore[operator]
    assert str(info.value) == text
    assert client.execute_command("EXISTS", client.namespace + b":rl:api:{u}") == 0


# -- bad input: the core's checks, naming the argument ------------------------------------

@pytest.mark.parametrize("options, exc, text", [
    (dict(algorithm="leaky"), redpat.InvalidArgument,
     'algorithm must be one of fixed_window, sliding_log, sliding_window, token_bucket, gcra '
     '(got "leaky")'),
    (dict(on_error="open"), redpat.InvalidArgument,
     'on_error must be one of report, fail_open, fail_closed (got "open")'),
    (dict(limit=0), redpat.InvalidArgument, "limit must be > 0 (got 0)"),
    (dict(window=0), redpat.InvalidArgument, "window must be > 0 seconds (got 0)"),
    (dict(window=-1.5), redpat.InvalidArgument, "window must be > 0 seconds (got -1.5)"),
    (dict(window=float("nan")), redpat.InvalidArgument,
     "window must be a finite number of seconds (got nan)"),
    (dict(algorithm="fixed_window", burst=3), redpat.InvalidArgument,
     "burst must be 0 unless algorithm is token_bucket or gcra (got 3 with fixed_window)"),
    (dict(burst=-1), redpat.InvalidArgument, "burst must be >= 0 (got -1)"),
    (dict(limit=2.5), TypeError, "limit must be an int, not float"),
    (dict(limit=1 << 64), redpat.InvalidArgument, "limit is out of range (not a 64-bit integer)"),
    (dict(algorithm=5), TypeError, "algorithm must be a str, not int"),
    (dict(window="1"), TypeError, "window must be a number of seconds, not str"),
])
def test_bad_options(client: redpat.Client, options: dict, exc: type, text: str) -> None:
    kwargs = dict(algorithm="gcra", limit=5, window=1.0)
    kwargs.update(options)
    with pytest.raises(exc) as info:
        client.ratelimiter("api", **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == text


def test_bad_names_and_arguments(client: redpat.Client) -> None:
    with pytest.raises(redpat.InvalidArgument, match="^limiter name must not contain '{' or '}'"):
        client.ratelimiter("a{b}", limit=5, window=1.0)
    with pytest.raises(redpat.InvalidArgument, match="^limiter name must not contain NUL"):
        client.ratelimiter("a\0b", limit=5, window=1.0)
    with pytest.raises(redpat.InvalidArgument, match="^name must not be empty$"):
        client.ratelimiter("", limit=5, window=1.0)
    api = client.ratelimiter("api", limit=3, window=1.0)
    with pytest.raises(redpat.InvalidArgument, match="cost 4 is above the limit 3"):
        api.check("u", cost=4)
    with pytest.raises(redpat.InvalidArgument, match=r"^cost must be >= 0 \(got -1\)$"):
        api.check("u", cost=-1)
    with pytest.raises(TypeError, match="^cost must be an int, not float$"):
        api.check("u", cost=1.5)  # type: ignore[arg-type]
    with pytest.raises(redpat.InvalidArgument, match="^subject must not be empty$"):
        api.check("")
    with pytest.raises(TypeError, match="^subject must be bytes or str, not int$"):
        api.check(42)  # type: ignore[arg-type]
    assert client.execute_command("DBSIZE") == 0  # nothing reached Redis


# -- binary subjects ------------------------------------------------------------------------

def test_binary_subjects(client: redpat.Client) -> None:
    api = client.ratelimiter("bin", "fixed_window", limit=1, window=60.0)
    subjects = [b"a\x00\r\nb", b"a\x00\r\nc", b"\xff\xfe", "é", memoryview(b"mv")]
    assert all(api.check(s) for s in subjects)       # distinct subjects, each once
    assert not any(api.check(s) for s in subjects)   # and each now at its limit
    assert not api.check("é".encode())               # str is its UTF-8 bytes
    ns = client.namespace
    for raw in (b"a\x00\r\nb", b"\xff\xfe", "é".encode()):
        assert client.execute_command("EXISTS", ns + b":rl:bin:{" + raw + b"}") == 1
    api.reset(b"\xff\xfe")
    assert api.check(b"\xff\xfe")


# -- the decorators -------------------------------------------------------------------------

def test_decorator_limits_by_key(client: redpat.Client) -> None:
    api = client.ratelimiter("search", "sliding_log", limit=2, window=60.0)
    calls: List[str] = []

    @api.limited(key=lambda user, query: "user:%s" % user)
    def search(user: str, query: str) -> str:
        """Searches."""
        calls.append(query)
        return query.upper()

    assert search.__name__ == "search" and search.__doc__ == "Searches."
    assert search("ann", "a") == "A" and search("ann", query="b") == "B"
    with pytest.raises(redpat.RateLimited) as info:
        search("ann", "c")
    assert calls == ["a", "b"]  # the refused call did not run
    err = info.value
    assert isinstance(err, redpat.RedpatError) and err.code is None
    assert err.subject == b"user:ann" and not err.decision.allowed
    assert 0.0 < err.retry_after <= 60.0 and err.retry_after == err.decision.retry_after
    assert "retry after" in str(err)
    assert search("bob", "d") == "D"  # another key, another subject
    copy = pickle.loads(pickle.dumps(err))
    assert copy.decision == err.decision and copy.subject == b"user:ann"


def test_decorator_default_key_and_cost(client: redpat.Client) -> None:
    @client.ratelimited("jobs", "token_bucket", limit=5, window=3600.0,
                        cost=lambda n: n)
    def run_jobs(n: int) -> int:
        return n

    assert run_jobs(3) == 3 and run_jobs(2) == 2  # all calls share one subject
    with pytest.raises(redpat.RateLimited):
        run_jobs(1)
    subject = b"%s.%s" % (__name__.encode(), run_jobs.__qualname__.encode())
    assert client.execute_command("EXISTS", client.namespace + b":rl:jobs:{" + subject + b"}") == 1


def test_decorator_options_are_checked_at_decoration(client: redpat.Client) -> None:
    with pytest.raises(redpat.InvalidArgument, match="algorithm"):
        client.ratelimited("x", "leaky", limit=1, window=1.0)


def test_sync_decorator_refuses_coroutine_functions(client: redpat.Client) -> None:
    api = client.ratelimiter("api", limit=1, window=1.0)
    with pytest.raises(TypeError, match="redpat.asyncio"):
        @api.limited()
        async def handler() -> None:
            pass


# -- Redis down: the on_error policy decides, and only when chosen ------------------------

def test_redis_down_policies() -> None:
    down = redpat.Client(closed_port_url(), connect_timeout=0.5)
    fail_open = down.ratelimiter("a", limit=1, window=1.0, on_error="fail_open")
    fail_closed = down.ratelimiter("b", limit=1, window=1.0, on_error="fail_closed")
    report = down.ratelimiter("c", limit=1, window=1.0)  # the default: report

    d = fail_open.check("u")
    assert d.allowed and d.degraded
    # The error Redis failed with: what on_error="report" raises.
    assert isinstance(d.error, redpat.ConnectionError) and d.error.status == "transport"
    assert "connect" in str(d.error)
    d = fail_closed.check("u")
    assert not d.allowed and d.degraded and isinstance(d.error, redpat.ConnectionError)
    with pytest.raises(redpat.ConnectionError):
        report.check("u")

    assert all(d.allowed and d.degraded for d in fail_open.batch(["a", "b"]))
    assert not any(d.allowed for d in fail_closed.batch(["a", "b"]))
    with pytest.raises(redpat.ConnectionError):
        report.batch(["a", "b"])
    # multi: the strictest policy of the limits applies
    assert down.ratelimit_multi([fail_open, fail_closed], "u").allowed is False
    with pytest.raises(redpat.ConnectionError):
        down.ratelimit_multi([fail_open, report], "u")
    with pytest.raises(redpat.ConnectionError):
        fail_open.reset("u")  # reset is no decision: an error is an error

    @fail_open.limited()
    def allowed() -> str:
        return "ran"

    @fail_closed.limited()
    def refused() -> str:
        return "ran"

    assert allowed() == "ran"
    with pytest.raises(redpat.RateLimited) as info:
        refused()
    assert info.value.decision.degraded and "fails closed" in str(info.value)
    assert info.value.__cause__ is info.value.decision.error


def test_error_replies_follow_the_policy_too(client: redpat.Client) -> None:
    for policy in ("fail_open", "fail_closed"):
        client.execute_command("HSET", client.namespace + b":rl:wt-%s:{u}" % policy.encode(),
                               "f", "v")
        d = client.ratelimiter("wt-" + policy, "fixed_window", limit=3, window=10.0,
                               on_error=policy).check("u")
        assert d.allowed is (policy == "fail_open") and d.degraded
        assert isinstance(d.error, redpat.ResponseError) and "WRONGTYPE" in str(d.error)
    client.execute_command("HSET", client.namespace + b":rl:wt:{u}", "f", "v")
    with pytest.raises(redpat.ResponseError, match="WRONGTYPE"):
        client.ratelimiter("wt", "fixed_window", limit=3, window=10.0).check("u")


def test_policy_while_the_server_is_stopped_then_back(server: RedisServer) -> None:
    client = redpat.Client(server.url, namespace="down", connect_timeout=0.5,
                           command_timeout=0.5)
    api = client.ratelimiter("api", "gcra", limit=5, window=60.0, on_error="fail_closed")
    assert api.check("u").allowed
    server.stop()
    d = api.check("u")
    assert not d.allowed and d.degraded
    assert d.error is not None and d.error.status in ("transport", "timeout")
    server.start()
    d = api.check("u")
    assert d.allowed and not d.degraded and d.remaining == 4  # a fresh server: state gone


# -- exactness under threads --------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_admit_exactly_the_limit(client: redpat.Client, algorithm: str) -> None:
    limit, threads, attempts = 60, 8, 25  # 200 attempts for 60 places
    # A window of an hour: refill during the test (token bucket, GCRA) stays below one.
    api = client.ratelimiter("hammer", algorithm, limit=limit, window=3600.0)
    allowed = [0] * threads
    go = threading.Event()

    def worker(i: int) -> None:
        go.wait()
        for _ in range(attempts):
            if api.check("one-subject"):
                allowed[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    go.set()
    for t in pool:
        t.join()
    assert sum(allowed) == limit
    assert sum(1 for n in allowed if n) > 1  # the threads really did share the work
    if algorithm == "sliding_log":  # refused requests left no entry
        assert client.execute_command("ZCARD", client.namespace + b":rl:hammer:{one-subject}") == limit
