"""Rate limiters over the C core: fixed window, sliding log, sliding window counter, token
bucket and GCRA, each check one script in one round trip decided on the Redis server's
clock. Also all-or-nothing checks against several limits (Client.ratelimit_multi), many
subjects in one pipelined round trip (RateLimiter.batch), and decorators that refuse calls
over the limit with RateLimited."""
from __future__ import annotations

import functools
import inspect
from typing import (TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Sequence,
                    Tuple, TypeVar, Union, cast)

from . import _core
from ._common import BytesLike, Decision, Seconds, to_ms
from .errors import InvalidArgument, RateLimited

if TYPE_CHECKING:
    from .client import Client

__all__ = ["RateLimiter", "Decision", "RateLimited", "ALGORITHMS", "ON_ERROR"]

#: The algorithm names (see the README's table for which to choose).
ALGORITHMS = ("fixed_window", "sliding_log", "sliding_window", "token_bucket", "gcra")
#: What a check answers when Redis fails: raise the error, allow (degraded), refuse (degraded).
ON_ERROR = ("report", "fail_open", "fail_closed")

F = TypeVar("F", bound=Callable[..., Any])
#: A decorator's subject: a fixed one, or a function of the decorated call's arguments.
KeyFunc = Callable[..., BytesLike]
#: A decorator's cost: a fixed one, or a function of the decorated call's arguments.
CostArg = Union[int, Callable[..., int]]

_I64 = 1 << 63


def _int(value: Any, name: str) -> int:
    """An integer option as the core takes it (int64); whether it is acceptable is the
    core's decision."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s" % (name, type(value).__name__))
    if not -_I64 <= value < _I64:
        raise InvalidArgument("%s is out of range: %r" % (name, value), _core.EINVAL)
    return value


def new_handle(client: Any, name: BytesLike, algorithm: str, limit: int, window: Seconds,
               burst: Optional[int], on_error: str) -> _core.Limiter:
    """The core's limiter for a Client of either flavour (sync or asyncio)."""
    return _core.Limiter(client._template, name, algorithm, _int(limit, "limit"),
                         to_ms(window, "window"), 0 if burst is None else _int(burst, "burst"),
                         on_error)


def default_subject(fn: Callable[..., Any]) -> bytes:
    """Without a key function, all calls of fn share one subject: its qualified name."""
    return ("%s.%s" % (getattr(fn, "__module__", "?"),
                       getattr(fn, "__qualname__", repr(fn)))).encode()


def call_key(fn: Callable[..., Any], key: Optional[KeyFunc]) -> KeyFunc:
    """The decorator's key function: key, or one subject for all calls of fn."""
    if key is not None:
        return key
    subject = default_subject(fn)
    return lambda *args, **kwargs: subject


def subject_and_cost(key: KeyFunc, cost: CostArg, args: Any,
                     kwargs: Any) -> Tuple[BytesLike, int]:
    return key(*args, **kwargs), (cost(*args, **kwargs) if callable(cost) else cost)


def subject_list(subjects: Iterable[BytesLike]) -> List[BytesLike]:
    if isinstance(subjects, (str, bytes, bytearray, memoryview)):
        # Iterating it would check each character as a subject of its own.
        raise TypeError("subjects must be an iterable of subjects, not one %s"
                        % type(subjects).__name__)
    return list(subjects)


def as_bytes(subject: BytesLike) -> bytes:
    return subject.encode() if isinstance(subject, str) else bytes(subject)


class _Settings:
    """What both RateLimiter flavours know about themselves."""

    name: str
    algorithm: str
    limit: int
    window: float
    burst: Optional[int]
    on_error: str

    def _remember(self, name: BytesLike, algorithm: str, limit: int, window: Seconds,
                  burst: Optional[int], on_error: str) -> None:
        self.name = name if isinstance(name, str) else bytes(name).decode("utf-8", "replace")
        self.algorithm = algorithm
        self.limit = limit
        self.window = to_ms(window, "window") / 1000.0
        self.burst = burst
        self.on_error = on_error

    def __repr__(self) -> str:
        burst = "" if self.burst is None else ", burst=%d" % self.burst
        return "<%s %r %s limit=%d window=%gs%s on_error=%s>" % (
            type(self).__name__, self.name, self.algorithm, self.limit, self.window, burst,
            self.on_error)


class RateLimiter(_Settings):
    """A rate limiter called ``name``: ``limit`` requests per ``window`` seconds for each
    subject (a user id, an IP, an API key: bytes or str).

    ``algorithm``: "gcra" (default; smooth, exact retry_after), "token_bucket" (both allow
    bursts of up to ``burst`` requests, default ``limit``), "fixed_window" (cheapest; up to
    2x the limit across a window edge), "sliding_log" (exact over any window; one entry
    per request), "sliding_window" (an O(1) approximation of the sliding log).

    ``on_error``: what a check answers when Redis fails: "report" raises the error (the
    default), "fail_open" allows and "fail_closed" refuses, with ``decision.degraded``.

    ``check(subject, cost=1)`` returns a Decision (truthy when allowed); a refusal is an
    answer, not an exception. Cost 0 peeks without consuming. Share the Client between
    threads; a RateLimiter may be shared too (it holds no per-call state).
    """

    def __init__(self, client: "Client", name: BytesLike, algorithm: str = "gcra", *,
                 limit: int, window: Seconds, burst: Optional[int] = None,
                 on_error: str = "report") -> None:
        self._client = client
        self._h = new_handle(client, name, algorithm, limit, window, burst, on_error)
        self._remember(name, algorithm, limit, window, burst, on_error)

    def check(self, subject: BytesLike, cost: int = 1) -> Decision:
        """Checks (and, when allowed, consumes ``cost`` for) ``subject``: one round trip."""
        client = self._client
        conn = client._checkout()
        try:
            return cast(Decision, self._h.check(conn, subject, cost))
        finally:
            client._checkin(conn)

    def batch(self, subjects: Iterable[BytesLike],
              costs: Optional[Iterable[int]] = None) -> List[Decision]:
        """Checks many subjects (``costs``: one per subject, default all 1) in one pipelined
        round trip; the decisions come in the order of the subjects. Each check is decided
        on its own (a batch is not all-or-nothing)."""
        subject_seq = subject_list(subjects)
        cost_list = None if costs is None else list(costs)
        client = self._client
        conn = client._checkout()
        try:
            return cast(List[Decision], self._h.batch(conn, subject_seq, cost_list))
        finally:
            client._checkin(conn)

    def reset(self, subject: BytesLike) -> None:
        """Forgets everything the limiter knows about ``subject``."""
        client = self._client
        conn = client._checkout()
        try:
            self._h.reset(conn, subject)
        finally:
            client._checkin(conn)

    def limited(self, key: Optional[KeyFunc] = None, cost: CostArg = 1) -> Callable[[F], F]:
        """A decorator: each call of the function is first checked against this limiter,
        and raises RateLimited (with the decision and its retry_after) when refused.
        ``key(*args, **kwargs)`` gives the subject (default: one subject for all calls,
        the function's name); ``cost`` is an int or a function of the arguments.

            @limiter.limited(key=lambda user_id, *a, **kw: "user:%d" % user_id)
            def search(user_id: int, query: str) -> list: ...
        """
        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                # A blocking check would stall the event loop.
                raise TypeError("%s is a coroutine function: limit it with a limiter of "
                                "redpat.asyncio.Client" % getattr(fn, "__qualname__", fn))

            key_of = call_key(fn, key)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                subject, n = subject_and_cost(key_of, cost, args, kwargs)
                decision = self.check(subject, n)
                if not decision.allowed:
                    raise RateLimited(decision, as_bytes(subject)) from decision.error
                return fn(*args, **kwargs)
            return cast(F, wrapper)
        return decorate


def handles(limiters: Sequence[Any], client: Any) -> List[_core.Limiter]:
    """The core handles of limiters made from client (a multi check runs on one client)."""
    out = []
    for i, limiter in enumerate(limiters):
        h = getattr(limiter, "_h", None)
        if not isinstance(h, _core.Limiter):
            raise TypeError("limiters[%d] is not a RateLimiter: %r" % (i, limiter))
        if limiter._client is not client:
            raise InvalidArgument("limiters[%d] was made from another client" % i, _core.EINVAL)
        out.append(h)
    return out
