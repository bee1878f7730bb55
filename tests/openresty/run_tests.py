"""OpenResty tests: the shared matrix and the nginx-specific tests, each run inside a real
nginx (Debian's lua module on luajit2) that this script starts, reached over HTTP.

Run beside five private redis-servers (the matrix's multi-server cases and the Redlock
tests use them):
    python3 tests/harness/harness.py run --servers 5 -- python3 tests/openresty/run_tests.py [--tree T]

Prints `matrix[openresty]: N passed, F failed, S skipped`, then
`openresty-tests: N passed, F failed`; exits non-zero on any failure.

On clusters (harness.py run --cluster --servers 5: REDPAT_TEST_CLUSTER=1) it runs the
matrix only, each case against the five clusters, and prints
`matrix[openresty-cluster]: N passed, F failed, S skipped` (the nginx-specific tests are
single-node ones).

The cluster faults through the cosocket driver, beside one cluster with replicas:
    python3 tests/harness/harness.py run --cluster --servers 1 --replicas 1 -- \
        python3 tests/openresty/run_tests.py --cluster-faults [--tree T]
(client:command's routing, AUTH on every node, a subscription over seeds listed in another
order, a live reshard of a held lock's and a limiter subject's slots while a request loops
on them, then a master SIGKILLed under a request's calls and its replica promoted; their
own nginx, tests/openresty/cluster_app.lua; prints `openresty-cluster-tests: N passed, F
failed`).

The TLS cases (rediss://, cosockets' sslhandshake) run apart, beside TLS-only servers:
    python3 tests/harness/harness.py run --tls -- python3 tests/openresty/run_tests.py --tls [--tree T]
(their own nginx, with lua_ssl_trusted_certificate set to the harness's CA; prints
`openresty-tls-tests: N passed, F failed`).
"""
from __future__ import annotations

import argparse
import json
import os
import base64
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
from nginx_harness import DEFAULT_ENV, NginxServer  # noqa: E402


def get(base: str, path: str, timeout: float = 60.0, **params: Any) -> Tuple[int, Dict[str, Any]]:
    url = base + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, {"error": body}


def get_with_headers(base: str, path: str, **params: Any) -> Tuple[int, Dict[str, str], Dict[str, Any]]:
    """GET returning the status, the response headers and the JSON body (4xx included)."""
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, dict(r.headers.items()), json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"raw": body}
        return e.code, dict(e.headers.items()), parsed


def redis_command(port: int, *args: str) -> Any:
    """One RESP command on a fresh connection (status/bulk/int replies only)."""
    req = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req)
        f = s.makefile("rb")
        line = f.readline()
        if line[:1] == b"$":
            n = int(line[1:])
            return None if n < 0 else f.read(n + 2)[:-2].decode()
        if line[:1] == b":":
            return int(line[1:])
        if line[:1] == b"-":
            raise RuntimeError(line.decode().strip())
        return line[1:].decode().strip()


def connections_received(port: int) -> int:
    info = redis_command(port, "INFO", "stats")
    for line in info.splitlines():
        if line.startswith("total_connections_received:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("no total_connections_received in INFO")


def run_matrix(base: str, label: str = "openresty", only: str = "") -> int:
    status, body = get(base, "/matrix/list")
    if status != 200 or not body.get("cases"):
        print("FAIL [%s] cannot list the matrix: %s %s" % (label, status, body), file=sys.stderr)
        print("matrix[%s]: 0 passed, 1 failed, 0 skipped" % label, flush=True)
        return 1
    passed = failed = 0
    for name in body["cases"]:
        if only not in name:
            continue
        status, res = get(base, "/matrix/case", name=name)
        if status == 200 and res.get("ok") is True:
            passed += 1
        else:
            failed += 1
            print("FAIL [%s] %s: %s" % (label, name, res.get("why") or res), file=sys.stderr)
    print("matrix[%s]: %d passed, %d failed, 0 skipped" % (label, passed, failed), flush=True)
    return failed


def run_cluster_matrix(tree: str, workers: int) -> int:
    """The matrix on the clusters of harness.py run --cluster (REDPAT_MATRIX_ONLY=TEXT: the
    cases whose name contains TEXT, when debugging)."""
    if not os.environ.get("REDPAT_TEST_NODES"):
        print("run_tests.py: REDPAT_TEST_CLUSTER=1 without REDPAT_TEST_NODES: run it under "
              "tests/harness/harness.py run --cluster", file=sys.stderr)
        return 2
    env = tuple(DEFAULT_ENV) + ("REDPAT_TEST_CLUSTER", "REDPAT_TEST_NODES")
    with NginxServer(tree, [HERE, os.path.join(ROOT, "tests", "lua")], app="app",
                     workers=workers, env=env) as srv:
        failures = run_matrix(srv.url, "openresty-cluster", os.environ.get("REDPAT_MATRIX_ONLY", ""))
        if failures:
            print("--- nginx error log (tail) ---\n" + srv.log_tail(), file=sys.stderr)
    return 1 if failures else 0


def test_driver(base: str, port: int) -> None:
    status, body = get(base, "/driver")
    assert status == 200 and body["driver"] == "cosocket", body


def test_concurrency(base: str, port: int) -> None:
    """200 concurrent requests doing lock cycles, 150 of them on 5 shared names: no two
    holders ever overlap, no update is lost, and the connection pool is reused."""
    n_requests, cycles, shared = 200, 5, 5
    names = ["shared-%d" % (i % shared) if i < 150 else "solo-%d" % i for i in range(n_requests)]
    before = connections_received(port)

    def one(i: int) -> Tuple[int, Dict[str, Any]]:
        return get(base, "/cycle", timeout=120, name=names[i], n=cycles, hold_ms=1)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=n_requests) as pool:
        results = list(pool.map(one, range(n_requests)))
    elapsed = time.monotonic() - t0
    after = connections_received(port)

    pids = set()
    per_name: Dict[str, int] = {}
    for i, (status, body) in enumerate(results):
        assert status == 200, (names[i], status, body)
        assert body["violations"] == 0, ("exclusion violated", names[i], body)
        assert not body["errors"], (names[i], body["errors"])
        assert body["cycles"] == cycles, (names[i], body)
        per_name[names[i]] = per_name.get(names[i], 0) + body["cycles"]
        pids.add(body["pid"])
    for name, done in per_name.items():
        total = redis_command(port, "GET", "cc:total:{%s}" % name)
        assert total is not None and int(total) == done, \
            ("lost updates: the lock did not exclude", name, total, done)
        assert int(redis_command(port, "GET", "cc:inside:{%s}" % name)) == 0, name
    # each cycle is at least 6 round trips (acquire, INCR, GET, SET, DECR, release)
    round_trips = n_requests * cycles * 6
    opened = after - before
    assert opened <= 2 * n_requests, ("pool not reused", opened, round_trips)
    assert opened * 10 < round_trips, ("pool not reused", opened, round_trips)
    print("  concurrency: %d requests x %d cycles on %d workers in %.2fs; %d round trips over "
          "%d new connections" % (n_requests, cycles, len(pids), elapsed, round_trips, opened))


def test_nonblocking(base: str, port: int) -> None:
    status, body = get(base, "/nonblocking")
    assert status == 200, body
    assert body["acquired"] is True, body
    assert body["attempts"] > 1, body
    assert 150 <= body["waited_ms"] <= 2000, body
    # a 10 ms ticker in the same request kept running while the acquire waited
    assert body["ticks_during_wait"] >= 8, body
    assert body["holder_released"] is True, body


def check_failure(body: Dict[str, Any], key: str, err: str) -> Dict[str, Any]:
    """A failure as the Lua API returns one: nil, err (the status name, a string), detail
    (a table {name, message, code} printing as "name: message")."""
    f = body[key]
    assert "result" not in f, (key, f)
    assert f["err"] == err and f["err_is_string"] is True and f["name"] == err, (key, f)
    assert f["text"] == "%s: %s" % (err, f["message"]), (key, f)
    return f


def test_errors(base: str, port: int) -> None:
    status, body = get(base, "/errors")
    assert status == 200, body
    check_failure(body, "refused", "transport")
    check_failure(body, "not_owned", "not_owned")
    lost = check_failure(body, "lost", "not_owned")
    assert lost["equal"] is True and "no longer owned" in lost["message"], lost
    assert "WRONGTYPE" in check_failure(body, "reply_error", "reply")["message"], body
    for case in ("auth", "auth_lock"):  # a refused password (issue 11, item 6)
        auth = check_failure(body, case, "auth")
        assert "without any password configured" in auth["message"], auth
        assert "nope" not in auth["message"], auth
    assert body["select"] == {"acquired": True, "exists_db0": 0, "exists_db3": 1}, body
    assert body["binary"] == {"acquired": True, "token_roundtrip": True}, body
    assert check_failure(body, "timeout", "timeout")["ping_after"] == "PONG", body
    lock_timeout = check_failure(body, "lock_timeout", "timeout")
    assert lock_timeout["equal"] is True and lock_timeout["waited_ms"] < 350, lock_timeout
    assert body["info"] == {"ttl": 1234, "fenced": True, "token": True, "ttl_accessor": 1234}, body
    assert body["unknown_option"] == {"raised": True,
                                      "message": "unknown option 'tll' (valid: ttl, fenced)"}, body
    assert body["words"] == {"err": "invalid_argument",
                             "text": "lock: invalid_argument: ttl must be > 0 ms (got -1)"}, body
    assert body["perform"] == {"accepted": True, "highest": 3}, body


def test_ratelimit_headers(base: str, port: int) -> None:
    """Limit 2 per 10 s: two allowed responses with the headers and no Retry-After, then a
    429 with Remaining 0 and Retry-After / Reset in whole seconds, rounded up."""
    who = "hdr-%d-%d" % (os.getpid(), time.monotonic_ns())
    seen = []
    for i in range(3):
        status, headers, body = get_with_headers(base, "/ratelimit/headers", who=who)
        seen.append((status, headers, body))
    for i, want_remaining in ((0, "1"), (1, "0")):
        status, headers, body = seen[i]
        assert status == 200 and body["allowed"] is True, (i, status, body)
        assert headers.get("X-RateLimit-Limit") == "2", (i, headers)
        assert headers.get("X-RateLimit-Remaining") == want_remaining, (i, headers)
        assert headers.get("X-RateLimit-Reset") == "10", (i, headers, body)  # 9.9xx s rounds up
        assert "Retry-After" not in headers, (i, headers)
    status, headers, body = seen[2]
    assert status == 429 and body["allowed"] is False, (status, body)
    assert headers.get("X-RateLimit-Limit") == "2", headers
    assert headers.get("X-RateLimit-Remaining") == "0", headers
    retry = int(headers["Retry-After"])
    assert retry == -(-body["retry_after"] // 1000) and 9 <= retry <= 10, (headers, body)
    assert int(headers["X-RateLimit-Reset"]) == -(-body["reset_after"] // 1000), (headers, body)
    ttl = redis_command(port, "PTTL", "rh:rl:hdr:{%s}" % who)
    assert 0 < ttl <= 10000, ttl


def test_ratelimit_errors(base: str, port: int) -> None:
    status, body = get(base, "/ratelimit/errors")
    assert status == 200, body
    assert body["down_report"]["err"] == "transport", body
    assert "allowed" not in body["down_report"], body
    for key, allowed in (("down_open", True), ("down_closed", False)):
        d = body[key]
        assert d["allowed"] is allowed and d["degraded"] is True, (key, d)
        assert d["error"] == "transport" and d["limit"] == 5, (key, d)
    assert body["down_open_batch"] == [2, True, True], body
    assert body["down_multi"]["allowed"] is False and body["down_multi"]["degraded"] is True, body
    assert body["bad"]["algorithm"].startswith("invalid_argument: algorithm"), body
    assert "leaky" in body["bad"]["algorithm"], body
    assert body["bad"]["cost"].startswith("invalid_argument: cost"), body
    assert body["binary"] == {"first": 1, "other": 1, "key": 1}, body
    assert body["batch"] == [True, False, True], body
    assert body["multi"] == [True, False, 2, 9], body


def test_ratelimit_example(tree: str) -> None:
    """examples/lua/openresty/ratelimit_example.lua, served by its own nginx: 3 per 10 s."""
    example_dir = os.path.join(ROOT, "examples", "lua", "openresty")
    who = "ex-%d-%d" % (os.getpid(), time.monotonic_ns())
    with NginxServer(tree, [example_dir], app="ratelimit_example", workers=1) as ex:
        results = [get_with_headers(ex.url, "/api", who=who) for _ in range(4)]
    assert [r[0] for r in results] == [200, 200, 200, 429], [(r[0], r[1]) for r in results]
    assert [r[1].get("X-RateLimit-Remaining") for r in results] == ["2", "1", "0", "0"], results
    assert "Retry-After" in results[3][1] and "Retry-After" not in results[0][1], results


def test_example(tree: str) -> None:
    """examples/lua/openresty/lock_example.lua, served by its own nginx."""
    example_dir = os.path.join(ROOT, "examples", "lua", "openresty")
    with NginxServer(tree, [example_dir], app="lock_example", workers=1) as ex:
        status, body = get(ex.url, "/work")
    assert status == 200, (status, body)
    assert body["driver"] == "cosocket" and body["accepted"] is True, body
    assert body["released"] is True and body["fence"] >= 1, body


def test_parallel(base: str, port: int) -> None:
    """A Redlock over five servers that each answer 0.1 s after being asked (a real DEBUG
    SLEEP pipelined before each request by tests/lua/sleepy_proxy.py): one parallel round
    costs about 0.1 s where asking the servers one by one would cost 0.5 s."""
    urls = os.environ["REDPAT_TEST_URLS"].split(",")[:5]
    proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "lua", "sleepy_proxy.py"),
                              "--sleep", "0.1", "--lifetime", "60", ",".join(urls)],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = proxy.stdout.readline().split() if proxy.stdout else []
        assert len(line) == 2, ("the proxy did not start", line)
        status, body = get(base, "/contract/parallel", urls=line[0])
    finally:
        proxy.terminate()
        proxy.wait()
    assert status == 200 and body["acquired"] is True, body
    assert 95 <= body["acquire_ms"] < 300, ("one round ~ 100 ms, the sum would be 500", body)
    assert body["released"] is True and 95 <= body["release_ms"] < 300, body
    assert 9000 <= body["validity"] <= 10000, body


def test_stopped(base: str, port: int) -> None:
    status, body = get(base, "/contract/stopped")
    assert status == 200, body
    two = body["two"]
    assert two["acquired"] is True and two["nodes"] == 5 and two["on_first"] is True, body
    assert two["ms"] < 200, ("2 of 5 stopped held the acquire up (node_timeout 1000)", body)
    three = body["three"]
    assert three["acquired"] is not True and three["ms"] < 700 and three["left"] == 0, body


def test_using(base: str, port: int) -> None:
    status, body = get(base, "/contract/using")
    assert status == 200, body
    r = body["renewed"]
    assert r["a"] == 42 and r["b"] == "b" and r["held"] is True, r
    assert 1 <= r["pttl"] <= 300 and r["exists_after"] == 0, r
    assert r["ticks"] >= 50, ("the request's other light threads kept running", r)
    assert body["redlock"]["r"] == "r" and all(1 <= t <= 300 for t in body["redlock"]["pttls"]), body
    f = body["failures"]
    assert f == {"busy": "busy", "ran": False, "callback": "callback", "same_error": True,
                 "released": 0, "lost": "lost", "late": "late"}, f


def test_auto_renew(base: str, port: int) -> None:
    status, body = get(base, "/contract/auto_renew")
    assert status == 200, body
    r = body["renewed"]
    assert 1 <= r["pttl"] <= 300 and r["renewals"] >= 2 and r["released"] is True, r
    assert r["renewals_after"] == r["renewals"], ("release stopped the watchdog", r)
    assert body["lost"] == {"posted": True, "err": "not_owned", "same": True}, body
    assert body["bad_option"]["raised"] is True and "max_hld" in body["bad_option"]["message"], body


def test_abort(base: str, port: int) -> None:
    """The client aborts a request whose lock:using fn would run 3 s: under
    redpat.cancel_on_abort the op is cancelled, fn's light thread killed and the lock
    released at once, far before fn's end and the 10 s ttl."""
    name = "abort-%d-%d" % (os.getpid(), time.monotonic_ns())
    host, nport = base[len("http://"):].split(":")
    with socket.create_connection((host, int(nport)), timeout=5) as s:
        s.sendall(b"GET /contract/abort?name=%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode())
        deadline = time.monotonic() + 5
        while redis_command(port, "EXISTS", "ct:abort:%s:in" % name) != 1:
            assert time.monotonic() < deadline, "fn never started"
            time.sleep(0.01)
        assert redis_command(port, "EXISTS", "ct:lock:{%s}" % name) == 1, "the lock is held"
    t_abort = time.monotonic()  # the socket is closed: the request is aborted
    while redis_command(port, "EXISTS", "ct:lock:{%s}" % name) == 1:
        assert time.monotonic() - t_abort < 1.5, "the lock outlived the aborted request"
        time.sleep(0.01)
    released_after = time.monotonic() - t_abort
    deadline = time.monotonic() + 5
    result = None
    while result is None:
        assert time.monotonic() < deadline, "lock:using never returned"
        result = redis_command(port, "GET", "ct:abort:%s" % name)
        time.sleep(0.01)
    r, err, ms = result.split("/")
    assert (r, err) == ("nil", "cancelled") and int(ms) < 2500, (result, released_after)


def test_abort_acquire(base: str, port: int) -> None:
    """An acquire whose SET ran but whose reply a proxy holds (tests/harness/delay_proxy.py)
    is aborted by the client mid-round: under redpat.cancel_on_abort the round is interrupted
    and the op releases the key with its token (a fresh connection) before acquire returns
    nil, "cancelled": the key is gone at once, not after its 30 s TTL. Plain, fenced,
    waiting, lock:using (its fn never runs), and a Redlock over two held servers and one
    direct."""
    urls = os.environ["REDPAT_TEST_URLS"].split(",")[:3]
    ports = [int(urllib.parse.urlparse(u).port or 6379) for u in urls]
    host, nport = base[len("http://"):].split(":")
    for kind in ("plain", "fenced", "waiting", "using", "redlock"):
        hold = ".*:fence" if kind == "fenced" else "NX"
        proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "harness", "delay_proxy.py"),
                                  "--hold", "30", "--hold-replies", hold, "--lifetime", "60",
                                  ",".join(urls[:2] if kind == "redlock" else urls[:1])],
                                 stdout=subprocess.PIPE, text=True)
        try:
            line = proxy.stdout.readline().split() if proxy.stdout else []
            assert len(line) == 2, ("the proxy did not start", line)
            via = line[0] + ("," + urls[2] if kind == "redlock" else "")
            nodes = ports if kind == "redlock" else ports[:1]
            name = "abortacq-%s-%d-%d" % (kind, os.getpid(), time.monotonic_ns())
            key = "ct:lock:{%s}" % name
            with socket.create_connection((host, int(nport)), timeout=5) as s:
                s.sendall(b"GET /contract/abort_acquire?name=%s&kind=%s&urls=%s HTTP/1.1\r\n"
                          b"Host: x\r\n\r\n" % (name.encode(), kind.encode(),
                                                 urllib.parse.quote(via).encode()))
                deadline = time.monotonic() + 5
                # the SET ran everywhere; its reply is held (by the proxy) on the held ones
                while [redis_command(p, "EXISTS", key) for p in nodes] != [1] * len(nodes):
                    assert time.monotonic() < deadline, (kind, "the SET never ran")
                    time.sleep(0.01)
            t_abort = time.monotonic()  # the socket is closed: the request is aborted
            while any(redis_command(p, "EXISTS", key) for p in nodes):
                assert time.monotonic() - t_abort < 1.5, (kind, "the key outlived the aborted acquire")
                time.sleep(0.01)
            deadline = time.monotonic() + 5
            result = None
            while result is None:
                assert time.monotonic() < deadline, (kind, "acquire never returned")
                result = redis_command(ports[0], "GET", "ct:abort:%s" % name)
                time.sleep(0.01)
            r, err, ms, token = result.split("/")
            assert (r, err, token) == ("nil", "cancelled", "nil") and int(ms) < 2500, (kind, result)
            if kind == "fenced":  # the script ran: the counter moved
                assert redis_command(ports[0], "GET", key + ":fence") == "1", kind
            assert redis_command(ports[0], "EXISTS", "ct:abort:%s:ran" % name) == 0, kind
        finally:
            proxy.terminate()
            proxy.wait()


def test_cache_stampede(base: str, port: int) -> None:
    """200 concurrent requests (both workers) on an expired hot key (lock) and on a key past
    its soft expiry (swr), each a get_or_load with a 50 ms loader: the loader runs once.
    lock: every request gets the fresh value; swr: the others get the stale one at once."""
    n = 200
    for mode in ("lock", "swr"):
        name = "st-%s-%d-%d" % (mode, os.getpid(), time.monotonic_ns())
        status, body = get(base, "/cache/stampede/prime", mode=mode, name=name)
        assert status == 200, (mode, body)
        assert body["exists"] == (1 if mode == "swr" else 0), (mode, body)

        def one(_: int) -> Tuple[int, Dict[str, Any]]:
            return get(base, "/cache/stampede", timeout=60, mode=mode, name=name)

        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(one, range(n)))
        bad = [r for r in results if r[0] != 200]
        assert not bad, (mode, bad[:3])
        bodies = [r[1] for r in results]
        loads = get(base, "/cache/stampede/loads", name=name)[1]["loads"]
        loaded = sum(1 for b in bodies if b["loaded"])
        values: Dict[str, int] = {}
        for b in bodies:
            values[b["value"]] = values.get(b["value"], 0) + 1
        ms = sorted(b["ms"] for b in bodies)
        pids = {b["pid"] for b in bodies}
        assert loads == 1, (mode, "loader runs", loads)
        assert loaded == 1, (mode, "requests that loaded", loaded)
        if mode == "lock":
            assert values == {"fresh": n}, (mode, values)
        else:
            assert values.get("fresh", 0) >= 1 and values.get("old", 0) >= 1, (mode, values)
            assert sum(1 for b in bodies if b["stale"]) == values["old"], (mode, values)
        print("  stampede %s: %d requests on %d workers, 1 load; values %s; p50 %d ms, p99 %d ms"
              % (mode, n, len(pids), values, ms[n // 2], ms[n * 99 // 100 - 1]))


def test_cache_calls(base: str, port: int) -> None:
    """The stale-fill race (the loader invalidates through another client, then returns the
    old row: returned, not cached) and a loader / writer that raises over cosockets."""
    status, body = get(base, "/cache/calls")
    assert status == 200, body
    rd = body["race_delete"]
    assert rd["value"] == "old" and rd.get("err") is None and rd["loaded"] is True, rd
    assert rd["stored"] is False and rd["exists"] == 0, rd
    assert rd["after"] == {"hit": False}, rd
    assert body["race_set"] == {"value": "old", "stored": False, "after": "new"}, body
    r = body["raise"]
    assert r["err"] == "callback" and r["message"] == "db down" and r["same"] is True, r
    assert r["held"] == 1 and r["lock"] == 0 and r["entry"] == 0, r
    assert r["text"] == "callback: plain text", r
    assert body["write"] == {"err": "callback", "message": "refused", "value": "before"}, body


def test_cache_abort(base: str, port: int) -> None:
    """The client aborts a request whose loader would run 3 s: under redpat.cancel_on_abort
    the load is cancelled, the loader's light thread killed, the load lock released at once
    (not after its 10 s lock_ttl), nothing cached."""
    name = "cabort-%d-%d" % (os.getpid(), time.monotonic_ns())
    lock_key = "cs:cache:{%s:k}:lock" % name
    host, nport = base[len("http://"):].split(":")
    with socket.create_connection((host, int(nport)), timeout=5) as s:
        s.sendall(b"GET /cache/abort?name=%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode())
        deadline = time.monotonic() + 5
        while redis_command(port, "EXISTS", "cs:abort:%s:in" % name) != 1:
            assert time.monotonic() < deadline, "the loader never started"
            time.sleep(0.01)
        assert redis_command(port, "EXISTS", lock_key) == 1, "the load lock is held"
    t_abort = time.monotonic()
    while redis_command(port, "EXISTS", lock_key) == 1:
        assert time.monotonic() - t_abort < 1.5, "the load lock outlived the aborted request"
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    result = None
    while result is None:
        assert time.monotonic() < deadline, "get_or_load never returned"
        result = redis_command(port, "GET", "cs:abort:%s" % name)
        time.sleep(0.01)
    v, err, ms = result.split("/")
    assert (v, err) == ("nil", "cancelled") and int(ms) < 2500, result
    time.sleep(3.2)  # past the loader's 3 s: it was killed, never finished
    assert redis_command(port, "EXISTS", "cs:abort:%s:ran" % name) == 0, "the loader ran on"
    assert redis_command(port, "EXISTS", "cs:cache:{%s:k}" % name) == 0, "something was cached"


def test_cache_kill(base: str, port: int) -> None:
    """A light thread killed (ngx.thread.kill) while its load runs: no clean-up can run,
    so the load lock stays until its lock_ttl (300 ms); the next caller waits that long at
    most, then loads itself. (The loader's own light thread is the killed one's child:
    nginx does not kill it, so it finishes, and its late fill is refused.)"""
    status, body = get(base, "/cache/kill")
    assert status == 200, body
    assert body["held"] == 1 and body["killed"] is True, body
    assert 0 < body["pttl"] <= 300, body
    nxt = body["next"]
    assert nxt["value"] == "reloaded" and nxt["loaded"] is True, body
    assert nxt["ms"] < 600 and nxt["waits"] >= 1, body
    print("  killed load: lock left %d ms, the next caller loaded after %d ms (%d polls); "
          "orphan loader ran: %s; cached: %s" % (body["pttl"], nxt["ms"], nxt["waits"],
                                                 bool(body["orphan_ran"]), body["final"]))


def test_cache_near(base: str, port: int) -> None:
    """A worker's near-cache (its subscriber in an ngx.timer): the second read is a near
    hit; another client's write (and delete) drops the copy within milliseconds; CLIENT
    KILL of the subscriber's connection: its reconnect clears the near-cache, the subscribe
    after it arms it again. Run on every worker (requests until each pid answered), for a
    cache each worker made and for one made in init_by_lua, before the fork (each worker
    starts its subscriber at its first use)."""
    name = "near-%d-%d" % (os.getpid(), time.monotonic_ns())
    seen: Dict[Tuple[str, int], Dict[str, Any]] = {}
    for i in range(80):
        init = "1" if i % 2 else "0"  # a cache made per worker, or in init_by_lua
        status, body = get(base, "/cache/near", name=name, init=init)
        assert status == 200, body
        assert body["armed"] is True, body
        assert body["first"] == {"near": False, "hit": True}, body
        assert body["second"] == {"near": True, "value": 1}, body
        assert body["after"] == {"value": 2, "near": False}, body
        assert body["again"] is True, body
        assert body["dropped_ms"] < 200, body
        assert body["deleted"].get("value") is None and body["deleted"]["hit"] is False, body
        rc = body["reconnect"]
        assert rc["before"] is True and rc["killed"] >= 1, body
        assert rc.get("cleared_ms") is not None and rc["rearmed"] is True, body
        assert rc["near_again"] is True, body
        seen[(init, body["pid"])] = body
        if len(seen) >= 4:
            break
    assert len(seen) >= 4, ("not every worker answered for both caches", sorted(seen))
    for (init, pid), b in sorted(seen.items()):
        print("  near-cache (%s) worker %d: armed in %d ms, a write elsewhere dropped the copy in "
              "%d ms, a delete in %d ms; its subscriber's connection killed: cleared in %d ms, "
              "armed again" % ("made in init_by_lua" if init == "1" else "made per worker",
                               pid, b["armed_ms"], b["dropped_ms"], b["deleted"]["ms"],
                               b["reconnect"]["cleared_ms"]))


def test_pubsub(base: str, port: int) -> None:
    status, body = get(base, "/contract/pubsub")
    assert status == 200 and body.get("error") is None and body["closed"] is True, body
    assert body["confirmed"] >= 3 and body["receivers"] == [1, 1, 1], body
    assert body["killed"] >= 1 and body["after"] == 1 and body["after_close"] == 0, body
    msgs = body["messages"]
    kinds = [m["kind"] for m in msgs]
    assert sorted(kinds[:3]) == ["psubscribe", "subscribe", "subscribe"], kinds
    assert kinds[3:] == ["message", "message", "pmessage", "reconnect", "message"], kinds
    data = [base64.b64decode(m["data"]) if m.get("data") else None for m in msgs[3:]]
    assert data == [b"x\0y\r\n\xff", b"bin", b"pat", None, b"after"], data
    assert base64.b64decode(msgs[4]["channel"]).endswith(b"\0b"), msgs[4]
    assert msgs[5]["pattern"].endswith(":*"), msgs[5]


HOSTILE_BOMBS = [  # server, password, max_reply_size, what the message names
    ("bomb_array", None, None, "an array of 2147483647 elements"),
    ("bomb_array", "pw", None, "an array of 2147483647 elements"),
    ("bomb_array_100m", None, None, "an array of 100000000 elements"),
    ("bomb_bulk", None, None, "a string of 2147483647 bytes"),
    ("bomb_handshake", "pw", None, "an array of 2147483647 elements"),
    ("bomb_nested", None, 1 << 20, "max_reply_size"),
    ("bomb_line", None, 1 << 20, "bytes of an unfinished item"),
]
HOSTILE_STALLS = [("trickle", None), ("trickle", "pw"), ("trickle_handshake", "pw"),
                  ("silent", None), ("silent", "pw"), ("slow_ok", "pw")]


def test_hostile(base: str, port: int) -> None:
    """Reply bombs end as "protocol" naming max_reply_size, the worker's memory bounded;
    trickling / silent servers (AUTH included) end as "timeout" within 1 s + 10%."""
    from hostile_server import HostileServers
    problems = []
    with HostileServers() as hs:
        for server, password, cap, what in HOSTILE_BOMBS:
            for op in ("command", "acquire", "check"):
                params: Dict[str, Any] = dict(port=hs.port(server), op=op)
                if password:
                    params["password"] = password
                if cap:
                    params["cap"] = cap
                status, body = get(base, "/hostile", **params)
                label = "%s%s %s" % (server, " (AUTH)" if password else "", op)
                if status != 200 or body.get("err") != "protocol" or \
                        "max_reply_size" not in (body.get("message") or "") or \
                        what not in body["message"]:
                    problems.append("%s: %s %s" % (label, status, body))
                elif body["growth_kb"] >= 64 * 1024:
                    problems.append("%s: worker RSS grew by %d kB" % (label, body["growth_kb"]))
        for server, password in HOSTILE_STALLS:
            for op in ("acquire", "check"):
                params = dict(port=hs.port(server), op=op, timeout_ms=1000)
                if password:
                    params["password"] = password
                status, body = get(base, "/hostile", **params)
                label = "%s%s %s" % (server, " (AUTH)" if password else "", op)
                if status != 200 or body.get("err") != "timeout" or body["took_ms"] > 1100:
                    problems.append("%s: %s %s" % (label, status, body))
    assert not problems, "\n  ".join([""] + problems)


def tls_checks(body: Dict[str, Any]) -> List[Tuple[str, Callable[[], bool]]]:
    """What each case of tls_app.lua's /tls answer must be."""
    def failed(case: str, err: Any, *words: str) -> bool:
        f = body[case]
        errs = err if isinstance(err, tuple) else (err,)
        return "ok" not in f and f["err"] in errs and all(w in f["message"] for w in words)

    def ok(case: str) -> bool:
        return body[case].get("ok") is True

    return [
        ("a lock and a limiter over TLS", lambda: body["lock"] == {
            "acquired": True, "busy": False, "released": True, "limiter": [True, True, False]}),
        ("a Redlock over the TLS servers (parallel rounds)",
         lambda: body["redlock"] == {"acquired": True, "released": True}),
        ("TLS connections are pooled (one connection, handshaken once)",
         lambda: body["pooled"]["first"] == body["pooled"]["second"]),
        ("an IP address URL fails verification under nginx, saying to give tls_server_name",
         lambda: failed("by_ip", "transport", "not valid for '127.0.0.1'", "tls_server_name")),
        ("tls_server_name names the certificate's name", lambda: ok("server_name")),
        ("a wrong tls_server_name fails verification, named",
         lambda: failed("wrong_name", "transport", "TLS handshake failed", "wrong.example")),
        ("tls_verify = false connects whatever the name", lambda: ok("verify_off")),
        ("a verify-off connection is not pooled for a verifying client",
         lambda: failed("wrong_name_after", "transport", "TLS handshake failed")),
        ("a certificate the trusted CA did not sign fails verification",
         lambda: failed("foreign", "transport", "TLS handshake failed",
                        "certificate verify failed", "lua_ssl_trusted_certificate")),
        ("plaintext to a TLS port fails cleanly (and gets no pooled TLS connection)",
         lambda: failed("plain_to_tls", "transport", "connection lost")),
        ("TLS to a plaintext port fails within the timeout",
         lambda: failed("tls_to_plain", ("transport", "timeout"), "TLS handshake")),
        ("a server requiring client certificates refuses a client without one",
         lambda: "ok" not in body["strict_without"]),
        ("tls_cert_file + tls_key_file: the client certificate is sent",
         lambda: ok("strict_with") and body["strict_lock"] == {"acquired": True,
                                                               "released": True}),
        ("tls_ca_file is refused, pointing at lua_ssl_trusted_certificate",
         lambda: failed("ca_file", "invalid_argument", "tls_ca_file",
                        "lua_ssl_trusted_certificate")),
        ("a client certificate file that does not parse is named",
         lambda: failed("bad_cert", "invalid_argument", "tls_cert_file")),
    ]


def run_tls(tree: str) -> int:
    """The TLS cases, beside harness.py run --tls's servers (REDPAT_TEST_TLS_DIR) and three
    of their own: one requiring client certificates, a plaintext one, and one whose
    certificate another CA signed."""
    from harness import RedisServer, TlsFiles, make_tls_files
    tls_dir = os.environ.get("REDPAT_TEST_TLS_DIR")
    if not tls_dir or not os.environ.get("REDPAT_TEST_URL", "").startswith("rediss://"):
        print("run_tests.py --tls: run it under tests/harness/harness.py run --tls",
              file=sys.stderr)
        return 2
    files, foreign_files = TlsFiles(tls_dir), make_tls_files()
    passed = failed = 0
    try:
        with RedisServer(tls=files, tls_auth_clients="yes") as strict, RedisServer() as plain, \
                RedisServer(tls=foreign_files) as foreign, \
                NginxServer(tree, [HERE], app="tls_app", workers=1,
                            env=DEFAULT_ENV + ("REDPAT_TEST_TLS_DIR",),
                            http_extra=["lua_ssl_trusted_certificate %s;" % files.ca]) as srv:
            status, body = get(srv.url, "/tls", strict=strict.url, plain=plain.url,
                               foreign=foreign.url)
            if status != 200:
                print("FAIL tls: /tls answered %s %s" % (status, body))
                failed += 1
            else:
                for name, check in tls_checks(body):
                    try:
                        good = check()
                    except (KeyError, TypeError) as e:
                        good, name = False, "%s (%r)" % (name, e)
                    passed, failed = passed + good, failed + (not good)
                    print("%s tls: %s" % ("ok  " if good else "FAIL", name))
                if failed:
                    print("the /tls answer: %s" % json.dumps(body, sort_keys=True, indent=1))
            if failed:
                print("--- nginx error log (tail) ---\n" + srv.log_tail(), file=sys.stderr)
    finally:
        foreign_files.cleanup()
    print("openresty-tls-tests: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


def cluster_fault_tests(tree: str) -> int:
    """The reshard and failover tests of cluster_app.lua (see the module's docstring)."""
    from harness import attach_cluster, key_slot
    if os.environ.get("REDPAT_TEST_CLUSTER") != "1" or \
            int(os.environ.get("REDPAT_TEST_CLUSTER_REPLICAS", "0")) < 1:
        print("run_tests.py --cluster-faults: run it under tests/harness/harness.py run "
              "--cluster --servers 1 --replicas 1", file=sys.stderr)
        return 2
    cluster = attach_cluster(os.environ["REDPAT_TEST_URL"])
    env = tuple(DEFAULT_ENV) + ("REDPAT_TEST_CLUSTER", "REDPAT_TEST_NODES")

    def in_background(base: str, path: str, **params: Any) -> Tuple[Any, Dict[str, Any]]:
        box: Dict[str, Any] = {}

        def run() -> None:
            box["status"], box["body"] = get(base, path, timeout=120, **params)
        t = __import__("threading").Thread(target=run)
        t.start()
        return t, box

    def other_master(slot: int) -> Any:
        cluster.refresh()
        src = cluster.slot_owner(slot)
        return [m for m in cluster.masters() if m.addr != src.addr][0]

    def reshard(base: str) -> None:
        """Both slots move (ASK while their keys move, MOVED after) while the request loops;
        no call fails, every limiter decision is counted once."""
        ns = "or%d" % os.getpid()
        slots = sorted({key_slot("%s:lock:{orders}" % ns), key_slot("%s:rl:api:{alice}" % ns)})
        cluster.refresh()
        for m in cluster.masters():
            m.call("CONFIG", "RESETSTAT")
        t, box = in_background(base, "/reshard", ms=3000, ns=ns)
        time.sleep(0.5)
        moved = [cluster.migrate_slot(slot, other_master(slot), pause=0.3) for slot in slots]
        t.join()
        seen = {"ASK": 0, "MOVED": 0, "TRYAGAIN": 0}  # the redirects the calls met
        for m in cluster.masters():
            for k, v in m.info("errorstats").items():
                if k[len("errorstat_"):] in seen:
                    seen[k[len("errorstat_"):]] += int(v.split("count=")[1].split(",")[0])
        body = box.get("body", {})
        assert box.get("status") == 200, box
        assert all(m > 0 for m in moved), ("keys moved per slot", moved)
        assert body["driver"] == "cosocket" and body["acquired"] is True, body
        assert body["errors"] == [] or body["errors"] == {}, body  # cjson: {} for empty
        assert body["rest"] is True and body["refused"] is True, body
        assert body["released"] is True and body["rival_after"] is True, body
        assert seen["ASK"] > 0 and seen["MOVED"] > 0, ("no redirect met", seen)
        print("  reshard: %d rounds of calls over %d slots moving, redirected ASK %d, MOVED %d, "
              "TRYAGAIN %d times" % (body["rounds"], len(slots), seen["ASK"], seen["MOVED"],
                                     seen["TRYAGAIN"]))

    def failover(base: str) -> None:
        """The master of the lock's and the subject's slot SIGKILLed while a request checks:
        the call in flight fails naming the node, later calls on the same client succeed once
        the replica took over."""
        ns = "of%d" % os.getpid()
        cluster.refresh()
        victim = cluster.slot_owner(key_slot("%s:lock:{fo}" % ns))
        subject = next("s%d" % i for i in range(100000)
                       if cluster.slot_owner(key_slot("%s:rl:fo:{s%d}" % (ns, i))).addr == victim.addr)
        t, box = in_background(base, "/failover", ns=ns, subject=subject, wait_ms=30000)
        time.sleep(0.5)
        cluster.kill_master(victim)
        new = cluster.wait_failover(victim, timeout=30)
        t.join()
        body = box.get("body", {})
        assert box.get("status") == 200, box
        assert body["checks"] > 0, body
        assert body.get("first_err") in ("transport", "timeout"), body
        assert victim.addr in (body.get("first_message") or ""), (victim.addr, body)
        assert body.get("recovered_ms") is not None and body["released"] is True, body
        assert body["after"] == 20, body
        print("  failover: %s killed, %s promoted; first error %s: %s; success %d ms later after "
              "%d failed calls" % (victim.addr, new.addr, body["first_err"], body["first_message"],
                                   body["recovered_ms"], body["failed_calls"]))

    def subscription(base: str) -> None:
        """A subscription over seeds whose first is not the node the core subscribes on
        (slot 0's master, where publishes go): the listener follows the target from the
        topology read's seed to that node, so the publish reaches it."""
        cluster.refresh()
        home = cluster.slot_owner(0)
        seeds = [m.addr for m in cluster.masters() if m.addr != home.addr] + [home.addr]
        status, body = get(base, "/subscribe", url="redis+cluster://" + ",".join(seeds),
                           nodes=" ".join("redis://" + a for a in seeds))
        assert status == 200 and body["first"] == "subscribe", body
        assert body["numsub"] == [0] * (len(seeds) - 1) + [1], (seeds, body)
        assert body["receivers"] == 1 and body["message"] == "hi", body

    def command(base: str) -> None:
        """client:command over cosockets: routed by its keys, or by { key = ... }."""
        cluster.refresh()
        home = cluster.slot_owner(key_slot("{k}"))
        other = next("{o%d}" % i for i in range(1000)
                     if cluster.slot_owner(key_slot("{o%d}" % i)).addr != home.addr)
        status, body = get(base, "/command", key="{k}", other=other)
        assert status == 200, body
        assert body["set"] == "OK" and body["get"] == "1", body
        assert body["keyless"]["err"] == "invalid_argument" and \
            "key" in body["keyless"]["message"], body
        assert body["dbsize"] == 1 and body["dbsize_other"] == 0, body
        assert body["unknown"] == {"ok": False, "why": "unknown option 'kee' (valid: key)"}, body

    def auth(base: str) -> None:
        """A password on every node (set for the test, then cleared): a cluster URL with it
        reaches every master (each fresh connection ran AUTH); without it, or with a wrong
        one, an acquire fails "auth"."""
        pw = "or-cl-s3cret"
        cluster.refresh()
        masters = cluster.masters()
        names: Dict[str, str] = {}  # a lock name per master
        for i in range(10000):
            owner = cluster.slot_owner(key_slot("ca:lock:{n%d}" % i)).addr
            names.setdefault(owner, "n%d" % i)
            if len(names) == len(masters):
                break
        done = []
        try:
            for n in cluster.live():  # replicas too, which keep syncing with masterauth
                n.call("CONFIG", "SET", "masterauth", pw)
                n.call("CONFIG", "SET", "requirepass", pw)
                done.append(n)
            status, body = get(base, "/auth", pw=pw, names=",".join(names.values()))
        finally:
            for n in done:
                with n.conn() as c:
                    c.call("AUTH", pw)
                    c.call("CONFIG", "SET", "requirepass", "")
                    c.call("CONFIG", "SET", "masterauth", "")
        assert status == 200, body
        assert body["cycles"] == [True] * len(masters), body
        assert [r.get("err") for r in body["refused"]] == ["auth", "auth"], body

    passed = failed = 0
    with NginxServer(tree, [HERE], app="cluster_app", workers=1, env=env) as srv:
        for name, fn in (("client:command: routed by its keys, a keyless one by { key = ... }",
                          command),
                         ("AUTH on every node: the cluster URL's password reaches every "
                          "master; none, or a wrong one, fails \"auth\"", auth),("a subscription goes to the node the core picks, not the seed the "
                          "topology came from", subscription),("a live reshard of a held lock's and a limiter subject's slots: "
                          "every call succeeds, no decision lost or doubled", reshard),
                         ("a master SIGKILLed under a request's calls: a clear error, then "
                          "success on the same client after the failover", failover)):
            try:
                fn(srv.url)
                passed += 1
                print("ok   %s" % name)
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                failed += 1
                print("FAIL %s: %r" % (name, e))
        if failed:
            print("--- nginx error log (tail) ---\n" + srv.log_tail(), file=sys.stderr)
    print("openresty-cluster-tests: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default=os.environ.get("REDPAT_LUAJIT_TREE",
                                                     os.path.join(ROOT, ".luarocks", "luajit")))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default=None,
                    help="run just the tests whose description contains this (no matrix)")
    ap.add_argument("--tls", action="store_true",
                    help="run the TLS cases only (under harness.py run --tls)")
    ap.add_argument("--cluster-faults", action="store_true",
                    help="run the cluster fault tests only (under harness.py run --cluster "
                         "--servers 1 --replicas 1)")
    args = ap.parse_args()
    if args.tls:
        return run_tls(args.tree)
    if args.cluster_faults:
        return cluster_fault_tests(args.tree)
    os.environ.setdefault("REDPAT_MATRIX_DIR", os.path.join(ROOT, "tests", "matrix"))
    os.environ.setdefault("REDPAT_SCRIPTS_DIR", os.path.join(ROOT, "core", "scripts"))
    if os.environ.get("REDPAT_TEST_CLUSTER") == "1":
        return run_cluster_matrix(args.tree, args.workers)
    port = int(os.environ["REDPAT_TEST_PORT"])

    tests: List[Tuple[str, Callable[[str, int], None]]] = [
        ("driver is cosocket inside nginx", test_driver),
        ("errors as nil, err, detail (timeout, not_owned, ...), bad input and the generic "
         "op API over cosockets", test_errors),
        ("a waiting acquire does not block the worker", test_nonblocking),
        ("200 concurrent lock cycles: exclusion and pool reuse", test_concurrency),
        ("rate limit headers on allowed and refused responses", test_ratelimit_headers),
        ("rate limiters over cosockets: Redis down, bad input, binary, batch, multi",
         test_ratelimit_errors),
        ("a 5-target round costs about its slowest target, not the sum", test_parallel),
        ("Redlock: 2 of 5 stopped acquire at once; 3 of 5 stopped fail fast, no key left",
         test_stopped),
        ("lock:using renews while fn (an ngx.thread) outlives the TTL; failures", test_using),
        ("lock:auto_renew from an ngx.timer; on_lost when the lock goes", test_auto_renew),
        ("pub/sub in an ngx.timer: channels, patterns, binary, reconnect after CLIENT KILL",
         test_pubsub),
        ("an aborted request cancels its lock:using: fn killed, the lock released at once",
         test_abort),
        ("an aborted request interrupts an acquire's round: what its SET took is released",
         test_abort_acquire),
        ("cache stampede: 200 concurrent requests on an expired hot key, the loader runs "
         "once (lock, swr)", test_cache_stampede),
        ("cache CALLs: the stale-fill race is refused; a loader / writer that raises",
         test_cache_calls),
        ("cache: an aborted request cancels its load: the lock released at once",
         test_cache_abort),
        ("cache: a light thread killed mid-load leaves the lock to its lock_ttl",
         test_cache_kill),
        ("cache near-cache per worker: a near hit, dropped by another client's write",
         test_cache_near),
        ("hostile servers: bombs fail naming max_reply_size, memory bounded; trickling and "
         "silent ones (AUTH too) time out within the timeout + 10%", test_hostile),
    ]
    with NginxServer(args.tree, [HERE, os.path.join(ROOT, "tests", "lua")], app="app",
                     workers=args.workers) as srv:
        only = os.environ.get("REDPAT_MATRIX_ONLY", "")
        failures = run_matrix(srv.url, "openresty", only) if args.only is None or only else 0
        passed = failed = 0
        for name, fn in tests:
            if args.only is not None and args.only not in name:
                continue
            try:
                fn(srv.url, port)
                passed += 1
                print("ok   %s" % name)
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                failed += 1
                print("FAIL %s: %r" % (name, e))
        for name, example in (("the OpenResty lock example answers", test_example),
                              ("the OpenResty rate limit example answers 429 on the 4th request",
                               test_ratelimit_example)):
            if args.only is not None and args.only not in name:
                continue
            try:
                example(args.tree)
                passed += 1
                print("ok   %s" % name)
            except Exception as e:  # noqa: BLE001
                failed += 1
                print("FAIL %s: %r" % (name, e))
        print("openresty-tests: %d passed, %d failed" % (passed, failed), flush=True)
        if failures or failed:
            print("--- nginx error log (tail) ---\n" + srv.log_tail(), file=sys.stderr)
    return 1 if failures or failed else 0


if __name__ == "__main__":
    sys.exit(main())
