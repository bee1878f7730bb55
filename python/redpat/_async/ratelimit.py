"""Rate limiters, written once for both flavours (the build makes the sync
redpat/_sync/ratelimit.py from this source with unasync): fixed window, sliding log,
sliding window counter, token bucket and GCRA, each check one script in one round trip
decided on the Redis server's clock; many subjects in one pipelined round trip (batch);
decorators that refuse calls over the limit with RateLimited. All-or-nothing checks against
several limits are Client.ratelimit_multi."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, TypeVar, cast

from .. import _core
from .._aio import Func, check_decorated
from .._common import (BytesLike, CostArg, KeyFunc, Seconds, call_key, subject_and_cost,
                       subject_list, to_bytes)
from .._records import Decision, RateLimiterInfo
from ..errors import RateLimited

if TYPE_CHECKING:
    from .client import Client

F = TypeVar("F", bound=Func)


class RateLimiter:
    """A rate limiter called ``name``: ``limit`` requests per ``window`` seconds for each
    subject (a user id, an IP, an API key: bytes or str).

    ``algorithm``: "gcra" (default; smooth, exact retry_after), "token_bucket" (both allow
    bursts of up to ``burst`` requests, default ``limit``), "fixed_window" (cheapest; up to
    2x the limit across a window edge), "sliding_log" (exact over any window; one entry
    per request), "sliding_window" (an O(1) approximation of the sliding log).

    ``on_error``: what a check answers when Redis fails: "report" raises the error (the
    default), "fail_open" allows and "fail_closed" refuses, with ``decision.degraded``.

    ``check(subject, cost=1)`` returns a Decision (truthy when allowed); a refusal is an
    answer, not an exception. Cost 0 peeks without consuming. A RateLimiter may be shared by
    threads or tasks (it holds no per-call state).
    """

    def __init__(self, client: "Client", name: BytesLike, algorithm: str = "gcra", *,
                 limit: int, window: Seconds, burst: Optional[int] = None,
                 on_error: str = "report") -> None:
        self._client = client
        self._x = client._x
        self._h = _core.make("ratelimit.new", client._x.template, name, algorithm, limit,
                             window, burst, on_error)
        info = self.info()
        self.name: str = info.name.decode("utf-8", "replace")
        self.algorithm: str = info.algorithm
        self.limit: int = info.limit
        self.window: float = info.window
        self.burst: Optional[int] = info.burst or None
        self.on_error: str = info.on_error

    def info(self) -> RateLimiterInfo:
        """The limiter's settings (no I/O): name, algorithm, limit, window (seconds), burst
        (0: the limit), on_error."""
        info: RateLimiterInfo = _core.call(None, "ratelimit.info", self._h)
        return info

    def __repr__(self) -> str:
        burst = "" if self.burst is None else ", burst=%d" % self.burst
        return "<%s %r %s limit=%d window=%gs%s on_error=%s>" % (
            type(self).__name__, self.name, self.algorithm, self.limit, self.window, burst,
            self.on_error)

    async def check(self, subject: BytesLike, cost: int = 1) -> Decision:
        """Checks (and, when allowed, consumes ``cost`` for) ``subject``: one round trip."""
        decision: Decision = await self._x.call("ratelimit.check", self._h, subject, cost)
        return decision

    async def batch(self, subjects: Iterable[BytesLike],
                    costs: Optional[Iterable[int]] = None) -> List[Decision]:
        """Checks many subjects (``costs``: one per subject, default all 1) in one pipelined
        round trip; the decisions come in the order of the subjects. Each check is decided
        on its own (a batch is not all-or-nothing)."""
        decisions: List[Decision] = await self._x.call(
            "ratelimit.batch", self._h, subject_list(subjects),
            None if costs is None else list(costs))
        return decisions

    async def reset(self, subject: BytesLike) -> None:
        """Forgets everything the limiter knows about ``subject``."""
        await self._x.call("ratelimit.reset", self._h, subject)

    def limited(self, key: Optional[KeyFunc] = None, cost: CostArg = 1) -> Callable[[F], F]:
        """A decorator: each call of the function is first checked against this limiter,
        and raises RateLimited (with the decision and its retry_after) when refused.
        ``key(*args, **kwargs)`` gives the subject (default: one subject for all calls,
        the function's name); ``cost`` is an int or a function of the arguments. Under
        redpat.asyncio it decorates coroutine functions (and only those).

            @limiter.limited(key=lambda user_id, *a, **kw: "user:%d" % user_id)
            def search(user_id: int, query: str) -> list: ...
        """
        def decorate(fn: F) -> F:
            check_decorated(fn)
            key_of = call_key(fn, key)

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                subject, n = subject_and_cost(key_of, cost, args, kwargs)
                decision = await self.check(subject, n)
                if not decision.allowed:
                    raise RateLimited(decision, to_bytes(subject)) from decision.error
                return await fn(*args, **kwargs)
            return cast(F, wrapper)
        return decorate
