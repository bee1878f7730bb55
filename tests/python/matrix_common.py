"""The shared-matrix engine for the Python runners (see tests/matrix/README.md).

One engine runs every case of every tests/matrix/*.json file through a *driver*: the sync
runner's driver calls redpat.Client / redpat.Lock, the asyncio runner's awaits
redpat.asyncio. Driver methods are coroutines so one engine serves both; the sync driver's
coroutines simply call the blocking API. An operation the driver does not know fails the
case (never a skip), so the frontends stay at parity.
"""
from __future__ import annotations

import asyncio
import glob
import inspect
import json
import os
import sys
import traceback
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MATRIX_DIR = os.path.join(ROOT, "tests", "matrix")
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

import redpat  # noqa: E402


class CaseFailed(Exception):
    pass


def as_bytes(value: Any) -> bytes:
    """Matrix bytes: a JSON string (its UTF-8) or {"hex": "..."}."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"hex"}:
        return bytes.fromhex(value["hex"])
    raise CaseFailed("not a matrix bytes value: %r" % (value,))


def reply_matches(expected: Any, got: Any) -> bool:
    if isinstance(expected, dict) and set(expected) == {"between"}:
        lo, hi = expected["between"]
        return isinstance(got, int) and not isinstance(got, bool) and lo <= got <= hi
    if isinstance(expected, bool):
        return got is expected
    if isinstance(expected, int):
        return isinstance(got, int) and not isinstance(got, bool) and got == expected
    if expected is None:
        return got is None
    if isinstance(expected, list):
        return (isinstance(got, list) and len(got) == len(expected)
                and all(reply_matches(e, g) for e, g in zip(expected, got)))
    return isinstance(got, bytes) and got == as_bytes(expected)


def seconds(ms: Any) -> Any:
    """Matrix milliseconds -> Python seconds (floats), passing non-numbers through."""
    if isinstance(ms, (int, float)) and not isinstance(ms, bool):
        return ms / 1000.0
    return ms


def decision_fields(d: "redpat.Decision", multi: bool = False) -> Dict[str, Any]:
    """A Decision as the matrix's result fields (times back in integer milliseconds)."""
    fields = {"allowed": d.allowed, "limit": d.limit, "remaining": d.remaining,
              "retry_after": ms_of(d.retry_after), "reset_after": ms_of(d.reset_after),
              "degraded": d.degraded}
    if multi:
        fields["refused_by"] = d.refused_by
    return fields


def ms_of(seconds_value: float) -> int:
    return int(round(seconds_value * 1000.0))


def limiter_kwargs(args: Dict[str, Any]) -> Dict[str, Any]:
    """ratelimit.new args as Client.ratelimiter keywords, passed as given (even invalid)."""
    kw: Dict[str, Any] = {"limit": args.get("limit", 0), "window": seconds(args.get("window", 0))}
    if "algorithm" in args:
        kw["algorithm"] = args["algorithm"]
    if "burst" in args:
        kw["burst"] = args["burst"]
    if "on_error" in args:
        kw["on_error"] = args["on_error"]
    return kw


class Driver:
    """What a runner implements. ops: name -> coroutine(args, step) -> result fields."""

    frontend = "?"

    async def open(self, url: str, namespace: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def command(self, argv: List[bytes]) -> Any:
        """A raw command's reply; an error reply is returned as an exception instance."""
        raise NotImplementedError

    async def sleep(self, ms: int) -> None:
        raise NotImplementedError

    def token_of(self, label: str) -> Optional[bytes]:
        raise NotImplementedError

    def ops(self) -> Dict[str, Callable[[Dict[str, Any], Dict[str, Any]], Awaitable[Dict[str, Any]]]]:
        raise NotImplementedError


async def settle(value: Any) -> Any:
    """The value of a call to either API: awaited when redpat.asyncio returned a coroutine."""
    return await value if inspect.isawaitable(value) else value


class ApiDriver(Driver):
    """Every matrix operation through redpat's public API. The sync and asyncio APIs have
    the same names and arguments, so one driver serves both: a subclass names the Client
    class and how to close it and sleep; each call's result goes through settle()."""

    client_class: Any = None

    def __init__(self) -> None:
        self.client: Any = None
        self.limiters: Dict[str, Any] = {}
        self.locks: Dict[str, Any] = {}

    async def open(self, url: str, namespace: str) -> None:
        self.client = self.client_class(url, namespace=namespace)
        self.locks = {}
        self.limiters = {}

    async def close(self) -> None:
        assert self.client is not None
        await settle(self.client.close())
        self.client = None
        self.locks = {}
        self.limiters = {}

    async def command(self, argv: List[bytes]) -> Any:
        assert self.client is not None
        try:
            return await settle(self.client.execute_command(*argv))
        except redpat.ResponseError as exc:
            return exc

    def token_of(self, label: str) -> Optional[bytes]:
        token: Optional[bytes] = self.locks[label].token
        return token

    def ops(self) -> Dict[str, Any]:
        return {
            "lock.new": self.lock_new,
            "lock.acquire": self.lock_acquire,
            "lock.release": self.lock_release,
            "lock.extend": self.lock_extend,
            "lock.locked": self.lock_locked,
            "lock.owned": self.lock_owned,
            "fence.check": self.fence_check,
            "ratelimit.new": self.ratelimit_new,
            "ratelimit.check": self.ratelimit_check,
            "ratelimit.multi": self.ratelimit_multi,
            "ratelimit.batch": self.ratelimit_batch,
            "ratelimit.reset": self.ratelimit_reset,
        }

    async def lock_new(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        kw: Dict[str, Any] = {}
        if "ttl" in args:
            kw["timeout"] = seconds(args["ttl"])
        if "fenced" in args:
            kw["fenced"] = args["fenced"]
        self.locks[step["as"]] = self.client.lock(as_bytes(args["name"]), **kw)
        return {}

    async def lock_acquire(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        lock = self.locks[step["lock"]]
        wait = args.get("wait", 0)
        kw: Dict[str, Any] = {"blocking": wait != 0}
        if wait != 0:
            kw["blocking_timeout"] = seconds(wait)
        if "retry_min" in args:
            kw["retry_min"] = seconds(args["retry_min"])
        if "retry_max" in args:
            kw["retry_max"] = seconds(args["retry_max"])
        if "token" in args:
            kw["token"] = as_bytes(args["token"])
        acquired = await settle(lock.acquire(**kw))
        return {"acquired": acquired, "fence": lock.fence if acquired else 0}

    async def lock_release(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        await settle(self.locks[step["lock"]].release())
        return {"ok": True}

    async def lock_extend(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        ok = await settle(self.locks[step["lock"]].extend(
            seconds(args["ms"]), replace_ttl=args.get("replace", False)))
        return {"ok": ok}

    async def lock_locked(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        return {"value": await settle(self.locks[step["lock"]].locked())}

    async def lock_owned(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        return {"value": await settle(self.locks[step["lock"]].owned())}

    async def fence_check(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        r = await settle(self.client.fence_check(as_bytes(args["resource"]), args["token"]))
        return {"accepted": r.accepted, "highest": r.highest}

    def limiter(self, label: Any) -> Any:
        if label not in self.limiters:
            raise CaseFailed("unknown limiter label %r" % (label,))
        return self.limiters[label]

    async def ratelimit_new(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        self.limiters[step["as"]] = self.client.ratelimiter(args["name"], **limiter_kwargs(args))
        return {}

    async def ratelimit_check(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        d = await settle(self.limiter(step["limiter"]).check(as_bytes(args["subject"]),
                                                             args.get("cost", 1)))
        return decision_fields(d)

    async def ratelimit_multi(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        limiters = [self.limiter(label) for label in step["limiters"]]
        d = await settle(self.client.ratelimit_multi(limiters, as_bytes(args["subject"]),
                                                     args.get("cost", 1)))
        return decision_fields(d, multi=True)

    async def ratelimit_batch(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        ds = await settle(self.limiter(step["limiter"]).batch(
            [as_bytes(s) for s in args["subjects"]], args.get("costs")))
        return {"allowed": [d.allowed for d in ds], "remaining": [d.remaining for d in ds]}

    async def ratelimit_reset(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        await settle(self.limiter(step["limiter"]).reset(as_bytes(args["subject"])))
        return {"ok": True}


async def run_step(driver: Driver, i: int, step: Dict[str, Any]) -> None:
    kinds = [k for k in ("op", "redis", "sleep") if k in step]
    if len(kinds) != 1:
        raise CaseFailed("step %d: needs exactly one of op/redis/sleep" % i)
    if "sleep" in step:
        await driver.sleep(int(step["sleep"]))
        return
    expect = step.get("expect")
    if "redis" in step:
        argv = [as_bytes(a) for a in step["redis"]]
        got = await driver.command(argv)
        is_error = isinstance(got, redpat.ResponseError)
        where = "step %d (redis %r)" % (i, step["redis"])
        if expect is None:
            if is_error:
                raise CaseFailed("%s: error reply %s" % (where, got))
        elif "reply" in expect:
            if not reply_matches(expect["reply"], got):
                raise CaseFailed("%s: expected %r, got %r" % (where, expect["reply"], got))
        elif "reply_between" in expect:
            lo, hi = expect["reply_between"]
            if not (isinstance(got, int) and lo <= got <= hi):
                raise CaseFailed("%s: expected %d..%d, got %r" % (where, lo, hi, got))
        elif "reply_error" in expect:
            if not (is_error and expect["reply_error"] in str(got)):
                raise CaseFailed("%s: expected an error reply with %r, got %r"
                                 % (where, expect["reply_error"], got))
        elif "reply_token_of" in expect:
            token = driver.token_of(expect["reply_token_of"])
            if token is None or got != token:
                raise CaseFailed("%s: expected the token of %s (%r), got %r"
                                 % (where, expect["reply_token_of"], token, got))
        else:
            raise CaseFailed("%s: unknown expectation %r" % (where, expect))
        return

    name = step["op"]
    where = "step %d (%s)" % (i, name)
    fn = driver.ops().get(name)
    if fn is None:
        raise CaseFailed("%s: operation not supported by the %s runner" % (where, driver.frontend))
    args = step.get("args", {})
    try:
        result = await fn(args, step)
    except redpat.RedpatError as exc:
        if expect is not None and "error" in expect:
            if exc.status != expect["error"]:
                raise CaseFailed("%s: expected error %s, got %s: %s"
                                 % (where, expect["error"], exc.status, exc))
            text = expect.get("message_contains")
            if text is not None and text not in str(exc):
                raise CaseFailed("%s: error message %r lacks %r" % (where, str(exc), text))
            return
        raise CaseFailed("%s: unexpected %s: %s" % (where, type(exc).__name__, exc))
    if expect is None:
        return
    if "error" in expect:
        raise CaseFailed("%s: expected error %s, got %r" % (where, expect["error"], result))
    for field, want in expect.items():
        if field not in result:
            raise CaseFailed("%s: the runner has no result field %r" % (where, field))
        if not reply_matches(want, result[field]):
            raise CaseFailed("%s: %s expected %r, got %r" % (where, field, want, result[field]))


async def run_case(driver: Driver, url: str, namespace: str, case: Dict[str, Any]) -> None:
    await driver.open(url, namespace)
    try:
        flushed = await driver.command([b"FLUSHALL"])
        if isinstance(flushed, Exception):
            raise CaseFailed("FLUSHALL failed: %s" % flushed)
        for i, step in enumerate(case["steps"]):
            await run_step(driver, i, step)
    finally:
        await driver.close()


def load_suites(directory: str = MATRIX_DIR) -> List[Tuple[str, Dict[str, Any]]]:
    suites = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as f:
            suites.append((os.path.basename(path), json.load(f)))
    return suites


async def run_all(driver: Driver, url: str, only: Optional[str] = None,
                  directories: Optional[List[str]] = None) -> Tuple[int, int, int]:
    passed = failed = skipped = 0
    suites = []
    for directory in directories or [MATRIX_DIR]:
        suites += load_suites(directory)
    for fname, suite in suites:
        for case in suite["cases"]:
            if only is not None and only not in case["name"]:
                continue
            try:
                await run_case(driver, url, suite["namespace"], case)
            except CaseFailed as exc:
                failed += 1
                print("FAIL %s: %s: %s" % (fname, case["name"], exc), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s: %s: runner crashed:\n%s"
                      % (fname, case["name"], traceback.format_exc()), flush=True)
            else:
                passed += 1
                if os.environ.get("REDPAT_MATRIX_VERBOSE"):
                    print("ok   %s: %s" % (fname, case["name"]), flush=True)
    return passed, failed, skipped


def main(driver: Driver) -> int:
    """Arguments: directories of matrix files (default tests/matrix), and/or one filter
    that is not a directory: run only cases whose name contains it."""
    directories = [a for a in sys.argv[1:] if os.path.isdir(a)]
    filters = [a for a in sys.argv[1:] if not os.path.isdir(a)]
    only = filters[0] if filters else None
    url = os.environ.get("REDPAT_TEST_URL")
    if url:
        passed, failed, skipped = asyncio.run(run_all(driver, url, only, directories))
    else:
        from harness import RedisServer  # a private server when not run under the harness
        with RedisServer() as srv:
            passed, failed, skipped = asyncio.run(run_all(driver, srv.url, only, directories))
    print("matrix[%s]: %d passed, %d failed, %d skipped"
          % (driver.frontend, passed, failed, skipped), flush=True)
    return 1 if failed or passed == 0 else 0
