"""The shared-matrix engine of the Python runners (see tests/matrix/README.md).

Generic: an op step is performed by name, through redpat's public API, with no per-op code.
The core's descriptor table (redpat._records.BY_NAME) gives the op's arguments and result
fields with their types; redpat's idiom table (redpat._idiom: the same one the package
names its arguments by) gives the public method and the Python names of the arguments. So
`{"op": "lock.new", "as": "a", "args": {"ttl": 1500}}` becomes `client.lock(timeout=1.5)`,
and its `names_arg: "ttl"` expects the error to name `timeout`.

The sync runner's driver calls redpat.Client, the asyncio runner's awaits redpat.asyncio:
their APIs have the same names and arguments, so one engine serves both (a call's result is
awaited when it is awaitable). An op the runner cannot perform fails the case, never skips.
"""
from __future__ import annotations

import asyncio
import glob
import inspect
import json
import os
import re
import sys
import traceback
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MATRIX_DIR = os.path.join(ROOT, "tests", "matrix")
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

import redpat  # noqa: E402
from redpat import _idiom  # noqa: E402
from redpat._records import BY_NAME  # noqa: E402

# Step keys that are not handle arguments.
STEP_KEYS = {"op", "as", "args", "expect"}


class CaseFailed(Exception):
    pass


def as_bytes(value: Any) -> bytes:
    """Matrix bytes: a JSON string (its UTF-8) or {"hex": "..."}."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"hex"}:
        return bytes.fromhex(value["hex"])
    raise CaseFailed("not a matrix bytes value: %r" % (value,))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def reply_matches(expected: Any, got: Any) -> bool:
    if isinstance(expected, dict) and set(expected) == {"between"}:
        lo, hi = expected["between"]
        return is_int(got) and lo <= got <= hi
    if isinstance(expected, bool):
        return got is expected
    if is_int(expected):
        return is_int(got) and got == expected
    if expected is None:
        return got is None
    if isinstance(expected, list):
        return (isinstance(got, list) and len(got) == len(expected)
                and all(reply_matches(e, g) for e, g in zip(expected, got)))
    return isinstance(got, bytes) and got == as_bytes(expected)


def to_python(type_: str, value: Any) -> Any:
    """A matrix argument as the Python API takes it: bytes decoded, milliseconds as seconds.
    Values that do not fit their type are passed as given (bad input is tested so)."""
    if type_ == "bytes" and (isinstance(value, str) or isinstance(value, dict)):
        return as_bytes(value)
    if type_ == "ms" and is_int(value):
        return value / 1000.0
    return value


def from_python(type_: str, value: Any) -> Any:
    """A result field as the matrix states it: seconds back in integer milliseconds, str
    names as their UTF-8 bytes, statuses by name."""
    if type_ == "ms" and isinstance(value, float):
        return int(round(value * 1000.0))
    if type_ == "bytes" and isinstance(value, str):
        return value.encode("utf-8")
    if type_ == "status":
        return "ok" if value is None else getattr(value, "status", value)
    return value


def field_matches(type_: str, expected: Any, got: Any) -> bool:
    if type_ in ("enum", "status"):
        return isinstance(got, str) and got == expected
    return reply_matches(expected, from_python(type_, got))


def names_word(message: str, name: str) -> bool:
    return re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(name), message) is not None


async def settle(value: Any) -> Any:
    """The value of a call to either API: awaited when redpat.asyncio returned a coroutine."""
    return await value if inspect.isawaitable(value) else value


class Driver:
    """Performs matrix steps through one flavour of redpat's public API: a subclass names
    the Client class (and the runner's name) and how to sleep."""

    frontend = "?"
    client_class: Any = None

    def __init__(self) -> None:
        self.client: Any = None
        self.url = ""
        self.handles: Dict[str, Any] = {}

    async def sleep(self, ms: int) -> None:
        raise NotImplementedError

    async def open(self, url: str, namespace: str) -> None:
        self.url = url
        self.client = self.client_class(url, namespace=namespace)
        self.handles = {}

    async def close(self) -> None:
        for made in [self.client] + list(self.handles.values()):
            if isinstance(made, self.client_class):
                await settle(made.close())
        self.client = None
        self.handles = {}

    async def command(self, argv: List[bytes]) -> Any:
        """A raw command's reply; an error reply is returned as an exception instance."""
        try:
            return await settle(self.client.execute_command(*argv))
        except redpat.ResponseError as exc:
            return exc

    def handle(self, label: Any, where: str) -> Any:
        if not isinstance(label, str) or label not in self.handles:
            raise CaseFailed("%s: no handle labelled %r" % (where, label))
        return self.handles[label]

    async def perform(self, op: str, step: Dict[str, Any]) -> Tuple[Any, Any]:
        """Performs op as the step says, through the public API: (result, the object the
        op acted on). The one generic step."""
        d = BY_NAME.get(op)
        if d is None:
            raise CaseFailed("no op called %r in the core's descriptor table" % op)
        args: Dict[str, Any] = dict(step.get("args") or {})
        known = {a["name"] for a in d["args"]}
        for key in list(args) + [k for k in step if k not in STEP_KEYS]:
            if key not in known:
                raise CaseFailed("%s has no argument %r" % (op, key))
        on, method = _idiom.METHODS.get(op, ("self", d["verb"]))
        target: Any = self.client
        positional: List[Any] = []
        kwargs: Dict[str, Any] = {}
        for a in d["args"]:
            name = a["name"]
            user = _idiom.ARG_NAMES.get(op, {}).get(name, name)
            if a["self"] and a["type"] == "handle":
                if a["kind"] == "client":
                    target = self.handle(step[name], op) if name in step else self.client
                    continue
                value: Any = self.handle(step.get(name), op)
            elif a["self"]:  # a list of handles
                value = [self.handle(label, op) for label in step.get(name, [])]
            elif name in args:
                value = args[name]
                if a["type"] == "list":
                    value = [to_python(a["item_type"], v) if isinstance(v, (str, dict, int))
                             else v for v in value] if isinstance(value, list) else value
                else:
                    value = to_python(a["type"], value)
            elif a["type"] in ("int", "ms", "bool", "enum") and not a["required"]:
                # An absent argument takes the core's default, stated here since the
                # Python API's may differ (redis-py's acquire waits for ever by default).
                value = (a["choices"][a["default"]] if a["type"] == "enum" else
                         bool(a["default"]) if a["type"] == "bool" else
                         to_python(a["type"], a["default"]))
            else:
                continue  # absent, no default of its own: the API's (a random token, ...)
            if a["self"] and on == "self":
                target = value
            elif user.startswith("*"):
                positional.extend(value)
            else:
                kwargs[user] = value
        if on == "class":
            kwargs.setdefault("url", self.url)
            callee = self.client_class
        else:
            callee = getattr(target, method, None)
            if callee is None:
                raise CaseFailed("%s: %r has no method %s" % (op, target, method))
        return await settle(callee(*positional, **kwargs)), target

    def fields(self, op: str, result: Any, target: Any,
               names: List[str]) -> List[Dict[str, Any]]:
        """The records of a result as {field: value} for the fields called names."""
        d = BY_NAME[op]
        if d["shape"] == "list":
            return [{n: getattr(r, n) for n in names} for r in result]
        if hasattr(result, "_fields"):
            return [{n: getattr(result, n) for n in names}]
        # A plain value (acquire's bool): one field; the others are the object's attributes.
        out: Dict[str, Any] = {}
        for n in names:
            if n == _idiom.RETURNS.get(op):
                out[n] = result
            elif hasattr(target, n):
                out[n] = getattr(target, n)
            else:
                raise CaseFailed("%s: the Python API gives no %s" % (op, n))
        return [out]


async def run_op(driver: Driver, i: int, step: Dict[str, Any]) -> None:
    op = step["op"]
    where = "step %d (%s)" % (i, op)
    expect = step.get("expect") or {}
    try:
        result, target = await driver.perform(op, step)
    except (redpat.RedpatError, TypeError) as exc:
        if "error" not in expect:
            raise CaseFailed("%s: unexpected %s: %s" % (where, type(exc).__name__, exc))
        # A wrong type is Python's TypeError: the invalid_argument of the other frontends.
        status = exc.status if isinstance(exc, redpat.RedpatError) else "invalid_argument"
        if status != expect["error"]:
            raise CaseFailed("%s: expected error %s, got %s: %s"
                             % (where, expect["error"], status, exc))
        text = expect.get("message_contains")
        if text is not None and text not in str(exc):
            raise CaseFailed("%s: error message %r lacks %r" % (where, str(exc), text))
        arg = expect.get("names_arg")
        if arg is not None and not names_word(str(exc), _idiom.arg_name(op, arg)):
            raise CaseFailed("%s: error message %r does not name %r (the core's %r)"
                             % (where, str(exc), _idiom.arg_name(op, arg), arg))
        return
    if "as" in step:
        driver.handles[step["as"]] = result
    if "error" in expect:
        raise CaseFailed("%s: expected error %s, got %r" % (where, expect["error"], result))
    if not expect:
        return
    d = BY_NAME[op]
    if d["shape"] == "none":
        raise CaseFailed("%s: %s has no result fields to expect" % (where, op))
    types = {f["name"]: f["type"] for f in d["fields"]}
    for field in expect:
        if field not in types:
            raise CaseFailed("%s: %s has no result field %r" % (where, op, field))
    records = driver.fields(op, result, target, list(expect))
    for field, want in expect.items():
        if d["shape"] == "list":
            got = [r[field] for r in records]
            ok = (isinstance(want, list) and len(want) == len(got)
                  and all(field_matches(types[field], w, g) for w, g in zip(want, got)))
        else:
            got = records[0][field]
            ok = field_matches(types[field], want, got)
        if not ok:
            raise CaseFailed("%s: %s expected %r, got %r" % (where, field, want, got))


async def run_step(driver: Driver, i: int, step: Dict[str, Any]) -> None:
    kinds = [k for k in ("op", "redis", "sleep") if k in step]
    if len(kinds) != 1:
        raise CaseFailed("step %d: needs exactly one of op/redis/sleep" % i)
    if "sleep" in step:
        await driver.sleep(int(step["sleep"]))
        return
    if "op" in step:
        await run_op(driver, i, step)
        return
    expect = step.get("expect")
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
        if not (is_int(got) and lo <= got <= hi):
            raise CaseFailed("%s: expected %d..%d, got %r" % (where, lo, hi, got))
    elif "reply_error" in expect:
        if not (is_error and expect["reply_error"] in str(got)):
            raise CaseFailed("%s: expected an error reply with %r, got %r"
                             % (where, expect["reply_error"], got))
    elif "reply_token_of" in expect:
        token = driver.handle(expect["reply_token_of"], where).token
        if token is None or got != token:
            raise CaseFailed("%s: expected the token of %s (%r), got %r"
                             % (where, expect["reply_token_of"], token, got))
    else:
        raise CaseFailed("%s: unknown expectation %r" % (where, expect))


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
