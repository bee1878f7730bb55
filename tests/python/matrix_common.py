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

The forms of the driver contract (tests/matrix/README.md): a case's `servers` (its client
over the first N test servers of REDPAT_TEST_URLS), `server` on raw commands, `stop` /
`cont` (SIGSTOP / SIGCONT to REDPAT_TEST_PIDS), `call` answers (the nested steps run inside
the user's callback: a plain function under redpat.Client, a coroutine function under
redpat.asyncio), `elapsed_max`, and long-lived ops: `subscription.listen` is a PubSub's
connect(), its `messages` are get_message()'s dicts read back as the core's fields.

On a cluster (REDPAT_TEST_CLUSTER=1: `harness.py run --cluster --servers 5`) each test
server is a 3-master cluster: REDPAT_TEST_URLS holds their redis+cluster:// URLs (split at a
',' only where the next piece names a scheme), REDPAT_TEST_NODES / _PIDS each server's
master nodes (servers by ',', nodes by ' '). A case's reset goes to every node of its
servers directly, `stop` / `cont` signal every node of the server, raw commands route by the
step's `"key"` (client.command's key), and the final line says `<frontend>-cluster`.
"""
from __future__ import annotations

import asyncio
import glob
import inspect
import json
import os
import re
import signal
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MATRIX_DIR = os.path.join(ROOT, "tests", "matrix")
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))

import redpat  # noqa: E402
from redpat import _idiom  # noqa: E402
from redpat._records import BY_NAME  # noqa: E402

# Step keys that are not handle arguments.
STEP_KEYS = {"op", "as", "args", "expect", "call", "elapsed_max"}
# What the runner itself checks in an op's expect beside the result fields.
RUNNER_EXPECTS = {"calls"}
CONFIRMATIONS = ("subscribe", "unsubscribe", "psubscribe", "punsubscribe")
# The result of an op whose method raised the refusal (_idiom.REFUSALS) instead.
REFUSED = object()
# What the runner passes beside an op's arguments: the matrix speaks the core's bytes (a
# cache without a serializer: values given and returned as they are) and hands
# cache.near_apply the subscription messages itself (no subscriber of the cache's own,
# which would arm its near-cache behind the case's back).
RUNNER_OPTIONS: Dict[str, Dict[str, Any]] = {
    "cache.new": {"serializer": None, "near_subscriber": False},
}


class CaseFailed(Exception):
    pass


class CallbackRaised(Exception):
    """What a callback answering a CALL raises for a `"raise": TEXT` answer."""


def message_fields(message: Dict[str, Any]) -> Dict[str, Any]:
    """A PubSub message (redis-py's dict) as the core's message fields (kind, channel,
    pattern, data, count; None: absent): redpat/_async/pubsub.py's as_message read back."""
    kind = message["type"]
    fields = {"kind": kind, "channel": message["channel"], "pattern": message["pattern"],
              "data": None, "count": 0}
    if kind in ("message", "pmessage"):
        fields["data"] = message["data"]
    elif kind in CONFIRMATIONS:
        fields["count"] = message["data"]
    if kind in ("psubscribe", "punsubscribe"):
        fields["pattern"], fields["channel"] = message["channel"], None
    return fields


def cluster_mode() -> bool:
    return os.environ.get("REDPAT_TEST_CLUSTER") == "1"


def split_urls(joined: str) -> List[str]:
    """','-joined URLs as the core splits them: a ',' starts a new URL only where the piece
    after it names a scheme ("://"); otherwise it goes on with the current URL (a cluster
    URL's seed list: redis+cluster://h:p,h:p)."""
    urls: List[str] = []
    for piece in joined.split(","):
        if not piece:
            continue
        if urls and "://" not in piece:
            urls[-1] += "," + piece
        else:
            urls.append(piece)
    return urls


class HarnessServers(NamedTuple):
    """The harness's servers: a URL each (a cluster's for a cluster), and per server its
    nodes' plain redis:// URLs and pids (one of each for a single node; its masters for a
    cluster)."""

    urls: List[str]
    nodes: List[List[str]]
    pids: List[List[int]]
    cluster: bool


def _groups(value: str) -> List[List[str]]:
    return [group.split() for group in value.split(",") if group.strip()]


def test_servers() -> HarnessServers:
    """REDPAT_TEST_URLS / _NODES / _PIDS (else the one REDPAT_TEST_URL, with no pid known)."""
    urls = split_urls(os.environ.get("REDPAT_TEST_URLS", ""))
    if not urls and os.environ.get("REDPAT_TEST_URL"):
        urls = [os.environ["REDPAT_TEST_URL"]]
    cluster = cluster_mode()
    pids = [[int(p) for p in group] for group in _groups(os.environ.get("REDPAT_TEST_PIDS", ""))]
    nodes = _groups(os.environ.get("REDPAT_TEST_NODES", ""))
    if not cluster and len(nodes) != len(urls):
        nodes = [[u] for u in urls]  # a single node is its own node
    return HarnessServers(urls, nodes, pids, cluster)


def as_bytes(value: Any) -> bytes:
    """Matrix bytes: a JSON string (its UTF-8), {"hex": "..."} or {"repeat": ["s", n]}."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"hex"}:
        return bytes.fromhex(value["hex"])
    if (isinstance(value, dict) and set(value) == {"repeat"} and isinstance(value["repeat"], list)
            and len(value["repeat"]) == 2 and isinstance(value["repeat"][0], str)
            and is_int(value["repeat"][1])):
        return value["repeat"][0].encode("utf-8") * value["repeat"][1]
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


def absent_as_none(callee: Any, d: Dict[str, Any], op: str, positional: List[Any],
                   kwargs: Dict[str, Any]) -> None:
    """An optional argument of the core the step leaves absent, whose Python parameter has
    no default (Cache.set's value: None is how Python says "absent", a negative entry):
    passed as None."""
    if positional:
        return
    try:
        params = inspect.signature(callee).parameters
    except (TypeError, ValueError):
        return
    for a in d["args"]:
        user = _idiom.ARG_NAMES.get(op, {}).get(a["name"], a["name"])
        p = params.get(user)
        if (not a["required"] and user not in kwargs and p is not None
                and p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)):
            kwargs[user] = None


def names_word(message: str, name: str) -> bool:
    return re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(name), message) is not None


async def settle(value: Any) -> Any:
    """The value of a call to either API: awaited when redpat.asyncio returned a coroutine."""
    return await value if inspect.isawaitable(value) else value


def takes_key() -> bool:
    """Whether the core's client.command has its cluster routing argument `key`."""
    return any(a["name"] == "key" for a in BY_NAME["client.command"]["args"])


async def raw_command(client: Any, argv: List[bytes], key: Optional[bytes] = None) -> Any:
    """client.command through either API: argv, routed by key on a cluster (a key is no
    more than accepted on a single node). The reply; an error reply raises ResponseError.
    execute_command when it takes key= (or there is none to pass), else the generic op
    client.command with its key argument."""
    if key is None:
        return await settle(client.execute_command(*argv))
    if not takes_key():
        if cluster_mode():
            raise CaseFailed("the core's client.command takes no key: cannot route %r"
                             % (argv,))
        return await settle(client.execute_command(*argv))  # single node: no effect
    if "key" in inspect.signature(client.execute_command).parameters:
        return await settle(client.execute_command(*argv, key=key))
    executor = client._x
    reply = (await settle(executor.call("client.command", executor.template, argv, key))).reply
    if isinstance(reply, BaseException):
        raise reply
    return reply


def run_now(coro: Any) -> Any:
    """Runs a coroutine of this engine that never suspends (every step under the sync
    driver: its calls block, its sleeps are time.sleep) to its end, in this thread: how a
    sync callback runs its nested steps inside the core's CALL."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise CaseFailed("a step of a sync callback waited on the event loop")


class Driver:
    """Performs matrix steps through one flavour of redpat's public API: a subclass names
    the Client class (and the runner's name), how to sleep, and how a callback answering a
    CALL is made."""

    frontend = "?"
    client_class: Any = None

    def __init__(self) -> None:
        self.client: Any = None
        self.url = ""
        self.servers: List[Any] = []  # a client per test server of the case, for raw commands
        self.nodes: List[List[Any]] = []  # per server, a client per node (the reset's)
        self.handles: Dict[str, Any] = {}

    async def sleep(self, ms: int) -> None:
        raise NotImplementedError

    def callback(self, run: Callable[[], Any]) -> Callable[..., Any]:
        """The user's callback for a CALL: runs run() (a coroutine: the nested steps, then
        the answer) the flavour's way, whatever it is called with (a cache's loader gets the
        key, its writer the key and value: the case's steps say what to do)."""
        raise NotImplementedError

    async def open(self, urls: List[str], namespace: str,
                   nodes: Optional[List[List[str]]] = None) -> None:
        """The case's clients over urls (its servers); nodes: per server the URLs of its
        nodes, each given a plain client of its own (a cluster's per-case reset goes to
        every node directly); None: the servers are their own nodes."""
        self.url = ",".join(urls)
        self.servers = [self.client_class(u, namespace=namespace) for u in urls]
        self.nodes = ([[self.client_class(u, namespace=namespace) for u in group]
                       for group in nodes] if nodes is not None else
                      [[one] for one in self.servers])
        self.client = self.client_class(self.url, namespace=namespace)
        self.handles = {}

    async def close(self) -> None:
        made_here = [self.client] + self.servers + [c for group in self.nodes for c in group
                                                    if c not in self.servers]
        for made in made_here + list(self.handles.values()):
            if isinstance(made, self.client_class) or isinstance(made, self.pubsub_class):
                await settle(made.close())
        self.client = None
        self.servers = []
        self.nodes = []
        self.handles = {}

    @property
    def pubsub_class(self) -> Any:
        return getattr(sys.modules[self.client_class.__module__], "PubSub")

    async def command(self, argv: List[bytes], server: int = 0,
                      key: Optional[bytes] = None) -> Any:
        """A raw command's reply from the case's server, routed by key on a cluster (an
        error reply is returned as an exception instance)."""
        if not (is_int(server) and 0 <= server < len(self.servers)):
            raise CaseFailed("no test server %r in this case (it has %d)"
                             % (server, len(self.servers)))
        try:
            return await raw_command(self.servers[server], argv, key)
        except redpat.ResponseError as exc:
            return exc
        except redpat.RedpatError as exc:  # refused (no key to route by), or no answer
            raise CaseFailed("%r on server %d (key %r): %s: %s"
                             % (b" ".join(argv), server, key, type(exc).__name__, exc))

    def handle(self, label: Any, where: str) -> Any:
        if not isinstance(label, str) or label not in self.handles:
            raise CaseFailed("%s: no handle labelled %r" % (where, label))
        return self.handles[label]

    def answer(self, step: Dict[str, Any], calls: List[int]) -> Any:
        """The callback answering the op's CALLs as the step's "call" says, counting its
        calls; None when the step has none (the op then fails, or must not call)."""
        how = step.get("call")
        if how is None:
            return None
        if not isinstance(how, dict) or not (set(how) <= {"steps", "return", "raise"}):
            raise CaseFailed("a call is {steps, return | raise}, not %r" % (how,))

        async def run() -> Any:
            calls[0] += 1
            for i, nested in enumerate(how.get("steps", [])):
                await run_step(self, i, nested)
            if "raise" in how:
                raise CallbackRaised(how["raise"])
            return as_bytes(how["return"]) if "return" in how else None
        return self.callback(run)

    async def perform(self, op: str, step: Dict[str, Any],
                      calls: Optional[List[int]] = None) -> Tuple[Any, Any]:
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
            elif a["type"] == "callback":
                value = self.answer(step, calls if calls is not None else [0])
                if value is None:
                    continue  # absent: the API says so
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
                if isinstance(value, list):
                    positional.extend(value)
                else:  # no list to spread: by name, which Python refuses naming it
                    kwargs[user[1:]] = value
            else:
                kwargs[user] = value
        if on == "class":
            kwargs.setdefault("url", self.url)
            callee = self.client_class
        else:
            callee = getattr(target, method, None)
            if callee is None:
                raise CaseFailed("%s: %r has no method %s" % (op, target, method))
        kwargs.update(RUNNER_OPTIONS.get(op, {}))
        absent_as_none(callee, d, op, positional, kwargs)
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
        return [{n: result if n == _idiom.RETURNS.get(op) else self.attribute(op, target, n)
                 for n in names}]

    def attribute(self, op: str, target: Any, name: str) -> Any:
        """A result field the API keeps as an attribute of the object the op acted on."""
        if not hasattr(target, name):
            raise CaseFailed("%s: the Python API gives no %s" % (op, name))
        return getattr(target, name)


async def run_op(driver: Driver, i: int, step: Dict[str, Any]) -> None:
    op = step["op"]
    where = "step %d (%s)" % (i, op)
    expect = dict(step.get("expect") or {})
    want_calls = expect.pop("calls", None)
    calls = [0]
    d = BY_NAME.get(op)
    refused = _idiom.REFUSALS.get(op)
    started = time.monotonic()
    try:
        try:
            result, target = await driver.perform(op, step, calls)
        finally:
            elapsed = (time.monotonic() - started) * 1000.0
            if want_calls is not None and calls[0] != want_calls:
                raise CaseFailed("%s: the callback ran %d times, expected %d"
                                 % (where, calls[0], want_calls))
            if "elapsed_max" in step and elapsed > step["elapsed_max"]:
                raise CaseFailed("%s: took %.0f ms, more than elapsed_max %d ms"
                                 % (where, elapsed, step["elapsed_max"]))
    except redpat.LockError as exc:
        if refused is None or d is None or type(exc) is not redpat.LockError:
            expected_error(where, op, expect, exc)
            return
        # The method raises the refusal its result would have said: read the rest of the
        # result from the object it acted on.
        result, target = REFUSED, driver.handle(step.get(d["args"][0]["name"]), op)
    except (redpat.RedpatError, TypeError, CallbackRaised) as exc:
        expected_error(where, op, expect, exc)
        return
    if d is not None and d["long_lived"]:
        # A long-lived op's object (a PubSub) hands out its messages: label it.
        if "as" in step:
            driver.handles[step["as"]] = target
        if expect:
            raise CaseFailed("%s: a long-lived op has no result: expect its messages" % where)
        return
    if "as" in step:
        driver.handles[step["as"]] = result
    if "error" in expect:
        raise CaseFailed("%s: expected error %s, got %r" % (where, expect["error"], result))
    if not expect:
        return
    assert d is not None
    if d["shape"] == "none":
        raise CaseFailed("%s: %s has no result fields to expect" % (where, op))
    types = {f["name"]: f["type"] for f in d["fields"]}
    for field in expect:
        if field not in types:
            raise CaseFailed("%s: %s has no result field %r" % (where, op, field))
    if refused is not None:  # it returned what the user's function did: not a record
        records = [{n: result is not REFUSED if n == refused else driver.attribute(op, target, n)
                    for n in expect}]
    else:
        records = driver.fields(op, result, target, list(expect))
    for field, want in expect.items():
        got: Any
        if d["shape"] == "list":
            got = [r[field] for r in records]
            ok = (isinstance(want, list) and len(want) == len(got)
                  and all(field_matches(types[field], w, g) for w, g in zip(want, got)))
        else:
            got = records[0][field]
            ok = field_matches(types[field], want, got)
        if not ok:
            raise CaseFailed("%s: %s expected %r, got %r" % (where, field, want, got))


def expected_error(where: str, op: str, expect: Dict[str, Any], exc: BaseException) -> None:
    """An op raised exc: the step must have expected that error."""
    if "error" not in expect:
        raise CaseFailed("%s: unexpected %s: %s" % (where, type(exc).__name__, exc))
    # A wrong type is Python's TypeError: the invalid_argument of the other frontends; the
    # callback's own exception (re-raised as it was) is the others' "callback".
    status = (exc.status if isinstance(exc, redpat.RedpatError) else
              "callback" if isinstance(exc, CallbackRaised) else "invalid_argument")
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


async def run_messages(driver: Driver, i: int, step: Dict[str, Any]) -> None:
    """{"messages": L, "count": N, "timeout": MS, "expect": [...]}: N messages of the
    long-lived op L within MS, each matching its entry (count 0: none for MS)."""
    where = "step %d (messages of %s)" % (i, step["messages"])
    source = driver.handle(step["messages"], where)
    count, timeout = int(step.get("count", 0)), int(step["timeout"]) / 1000.0
    expected = step.get("expect", [])
    if not isinstance(expected, list) or len(expected) != count:
        raise CaseFailed("%s: expect must list the %d messages" % (where, count))
    fields = {f["name"]: f["type"] for f in BY_NAME["subscription.listen"]["message_fields"]}
    deadline = time.monotonic() + timeout
    got: List[Dict[str, Any]] = []
    while count == 0 or len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        message = await settle(source.get_message(timeout=left))
        if message is not None:
            got.append(message_fields(message))
            if count == 0:
                break
    if len(got) != count:
        raise CaseFailed("%s: %d messages within %d ms, expected %d: %r"
                         % (where, len(got), step["timeout"], count, got))
    for n, (want, have) in enumerate(zip(expected, got)):
        for name, value in want.items():
            if name not in fields:
                raise CaseFailed("%s: messages have no field %r" % (where, name))
            ok = (have[name] is None if value is None else
                  field_matches(fields[name], value, have[name]))
            if not ok:
                raise CaseFailed("%s: message %d: %s expected %r, got %r (%r)"
                                 % (where, n, name, value, have[name], have))


def signal_servers(driver: Driver, which: Any, sig: int, where: str) -> None:
    """sig to every pid of each server in which (a cluster's: all its nodes)."""
    pids = test_servers().pids
    if not isinstance(which, list):
        raise CaseFailed("%s: a list of server indexes, not %r" % (where, which))
    for index in which:
        if not (is_int(index) and 0 <= index < len(pids) and pids[index]):
            raise CaseFailed("%s: no test server %r with a known pid (%d: REDPAT_TEST_PIDS)"
                             % (where, index, len(pids)))
        for pid in pids[index]:
            os.kill(pid, sig)


async def run_step(driver: Driver, i: int, step: Dict[str, Any]) -> None:
    kinds = [k for k in ("op", "redis", "sleep", "stop", "cont", "messages", "close")
             if k in step]
    if len(kinds) != 1:
        raise CaseFailed("step %d: needs exactly one of op/redis/sleep/stop/cont/messages/close"
                         % i)
    if "sleep" in step:
        await driver.sleep(int(step["sleep"]))
        return
    if "op" in step:
        await run_op(driver, i, step)
        return
    if "stop" in step or "cont" in step:
        stop = "stop" in step
        signal_servers(driver, step["stop" if stop else "cont"],
                       signal.SIGSTOP if stop else signal.SIGCONT, "step %d" % i)
        return
    if "messages" in step:
        await run_messages(driver, i, step)
        return
    if "close" in step:
        await settle(driver.handle(step["close"], "step %d (close)" % i).close())
        return
    expect = step.get("expect")
    argv = [as_bytes(a) for a in step["redis"]]
    key = as_bytes(step["key"]) if "key" in step else None
    got = await driver.command(argv, step.get("server", 0), key)
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


async def run_case(driver: Driver, urls: List[str], namespace: str,
                   case: Dict[str, Any]) -> None:
    n = case.get("servers", 1)
    if not (is_int(n) and 1 <= n):
        raise CaseFailed("servers must be an integer >= 1, not %r" % (n,))
    if n > len(urls):
        raise CaseFailed("the case needs %d servers; the harness started %d (run it with "
                         "harness.py run --servers 5)" % (n, len(urls)))
    harness = test_servers()
    if harness.cluster and len(harness.nodes) < n:
        raise CaseFailed("the case needs %d servers; REDPAT_TEST_NODES names the nodes of %d"
                         % (n, len(harness.nodes)))
    await driver.open(urls[:n], namespace, harness.nodes[:n] if harness.cluster else None)
    try:
        # every case starts from an empty server that accepts writes (a failed case of
        # oom.json may have left maxmemory below the memory in use): on a cluster, every
        # node of it, each over a client of its own
        for server in range(n):
            for node, conn in enumerate(driver.nodes[server]):
                for reset in ([b"CONFIG", b"SET", b"maxmemory", b"0"], [b"FLUSHALL"]):
                    try:
                        await raw_command(conn, reset)
                    except redpat.ResponseError as exc:
                        if not str(exc).startswith("READONLY"):  # (a replica follows)
                            raise CaseFailed("%s on server %d (node %d) failed: %s"
                                             % (b" ".join(reset).decode(), server, node, exc))
                    except redpat.RedpatError as exc:
                        raise CaseFailed("%s on server %d (node %d) failed: %s"
                                         % (b" ".join(reset).decode(), server, node, exc))
        for i, step in enumerate(case["steps"]):
            await run_step(driver, i, step)
    finally:
        # A step may have stopped a server: every case starts with all of them running.
        for pids in harness.pids:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        await driver.close()


def load_suites(directory: str = MATRIX_DIR) -> List[Tuple[str, Dict[str, Any]]]:
    suites = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path, encoding="utf-8") as f:
            suites.append((os.path.basename(path), json.load(f)))
    return suites


async def run_all(driver: Driver, urls: List[str], only: Optional[str] = None,
                  directories: Optional[List[str]] = None) -> Tuple[int, int, int]:
    passed = failed = skipped = 0
    suites = []
    for directory in directories or [MATRIX_DIR]:
        suites += load_suites(directory)
    for fname, suite in suites:
        for case in suite["cases"]:
            if only is not None and only not in case["name"]:
                continue
            started = time.monotonic()
            try:
                await run_case(driver, urls, suite["namespace"], case)
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
                    print("ok   %s: %s (%.0f ms)" % (fname, case["name"],
                                                     (time.monotonic() - started) * 1000),
                          flush=True)
    return passed, failed, skipped


def main(driver: Driver) -> int:
    """Arguments: directories of matrix files (default tests/matrix), and/or one filter
    that is not a directory: run only cases whose name contains it. Servers: the harness's
    (REDPAT_TEST_URLS, REDPAT_TEST_NODES, REDPAT_TEST_PIDS), else 5 private ones (single
    node only: clusters come from `harness.py run --cluster --servers 5`)."""
    directories = [a for a in sys.argv[1:] if os.path.isdir(a)]
    filters = [a for a in sys.argv[1:] if not os.path.isdir(a)]
    only = filters[0] if filters else None
    urls = test_servers().urls
    if cluster_mode() and not urls:
        print("REDPAT_TEST_CLUSTER=1 without REDPAT_TEST_URLS: run under "
              "harness.py run --cluster --servers 5", file=sys.stderr, flush=True)
        return 2
    if urls:
        passed, failed, skipped = asyncio.run(run_all(driver, urls, only, directories))
    else:
        from harness import RedisServers, server_env  # private servers outside the harness
        with RedisServers(5) as servers:
            os.environ.update(server_env(servers))
            passed, failed, skipped = asyncio.run(
                run_all(driver, [srv.url for srv in servers], only, directories))
    print("matrix[%s%s]: %d passed, %d failed, %d skipped"
          % (driver.frontend, "-cluster" if cluster_mode() else "", passed, failed, skipped),
          flush=True)
    return 1 if failed or passed == 0 else 0
