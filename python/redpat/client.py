"""The synchronous Client: a URL, a key namespace, timeouts, and a small pool of
connections so that one Client can be shared by many threads (each concurrent call gets a
connection of its own; the GIL is released while a call waits on the network). After
os.fork() the child drops the pool it inherited and opens its own connections."""
from __future__ import annotations

import functools
import os
import weakref
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, TypeVar, cast

from . import _core
from ._common import (DEFAULT_MAX_HOLD, DEFAULT_TTL, BytesLike, Decision, FenceResult,
                      Seconds, encode_arg, to_ms)

if TYPE_CHECKING:
    from .lock import Lock
    from .ratelimit import CostArg, KeyFunc, RateLimiter

DEFAULT_URL = "redis://127.0.0.1:6379/0"
F = TypeVar("F", bound=Callable[..., Any])

_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forget_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """A redpat client.

    ``url``: ``redis://[[user]:password@]host[:port][/db]`` or ``unix:///path?db=N``.
    ``namespace`` prefixes every key (``<namespace>:lock:{name}`` ...). Timeouts are in
    seconds. No I/O happens here: connections open on first use.
    """

    def __init__(self, url: str = DEFAULT_URL, *, namespace: BytesLike = "redpat",
                 connect_timeout: Seconds = 2.0, command_timeout: Seconds = 2.0,
                 tcp_keepalive: bool = True, max_idle: int = 64) -> None:
        self.url = url
        self._config = (url, namespace, to_ms(connect_timeout, "connect_timeout"),
                        to_ms(command_timeout, "command_timeout"), 1 if tcp_keepalive else 0)
        # The template makes lock handles and ops; it never connects. Connections run them.
        self._template = _core.Client(None, *self._config[1:])
        first = _core.Client(*self._config)  # validates the URL (no I/O)
        self._idle: List[_core.Client] = [first]
        self._max_idle = max_idle
        _clients.add(self)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "Client":
        """Same as Client(url, **kwargs), as redis-py spells it."""
        return cls(url, **kwargs)

    @property
    def namespace(self) -> bytes:
        return self._template.key_namespace()

    # -- connections ---------------------------------------------------------------------

    def _checkout(self) -> _core.Client:
        try:
            return self._idle.pop()
        except IndexError:
            return _core.Client(*self._config)

    def _checkin(self, conn: _core.Client) -> None:
        # list.append/pop are atomic under the GIL: no lock needed on this path.
        if len(self._idle) < self._max_idle:
            self._idle.append(conn)

    def _forget_connections(self) -> None:
        # In a fork child: the inherited sockets belong to the parent's conversation.
        # Freeing a handle only closes the child's copy of the descriptor.
        self._idle = []

    def close(self) -> None:
        """Closes idle connections. The client stays usable (it reconnects on use)."""
        idle, self._idle = self._idle, []
        del idle

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations ----------------------------------------------------------------------

    def lock(self, name: BytesLike, timeout: Seconds = DEFAULT_TTL,
             sleep: Optional[Seconds] = None, blocking: bool = True,
             blocking_timeout: Optional[Seconds] = None, *, fenced: bool = False,
             retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
             auto_renew: bool = False, max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
             on_lost: Optional[Callable[["Lock", BaseException], None]] = None) -> "Lock":
        """A Lock handle for ``name`` (see redpat.Lock)."""
        from .lock import Lock
        return Lock(self, name, timeout, sleep, blocking, blocking_timeout, fenced=fenced,
                    retry_min=retry_min, retry_max=retry_max, auto_renew=auto_renew,
                    max_hold=max_hold, on_lost=on_lost)

    def locked(self, name: BytesLike, **lock_options: Any) -> Callable[[F], F]:
        """A decorator: each call of the function runs holding the lock ``name`` (a fresh
        Lock per call, so threads may call it concurrently). ``lock_options`` are those of
        Client.lock; LockError if the lock cannot be acquired.

            @client.locked("nightly-report", timeout=60.0, blocking_timeout=5.0)
            def report() -> None: ...
        """
        self.lock(name, **lock_options)  # refuse bad options now, not at the first call

        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.lock(name, **lock_options):
                    return fn(*args, **kwargs)
            return cast(F, wrapper)
        return decorate

    def ratelimiter(self, name: BytesLike, algorithm: str = "gcra", *, limit: int,
                    window: Seconds, burst: Optional[int] = None,
                    on_error: str = "report") -> "RateLimiter":
        """A RateLimiter: ``limit`` requests per ``window`` seconds per subject (see
        redpat.RateLimiter). No I/O; every option is checked here.

            api = client.ratelimiter("api", "gcra", limit=100, window=60.0)
            if not api.check(user_id):
                ...  # refused: decision.retry_after seconds to wait
        """
        from .ratelimit import RateLimiter
        return RateLimiter(self, name, algorithm, limit=limit, window=window, burst=burst,
                           on_error=on_error)

    def ratelimit_multi(self, limiters: Sequence["RateLimiter"], subject: BytesLike,
                        cost: int = 1) -> Decision:
        """Checks ``subject`` against several limiters of this client at once (e.g. 10 per
        second and 1000 per hour), all-or-nothing in one round trip: allowed only if every
        limiter allows, and then ``cost`` is consumed from all; a refusal consumes nothing
        and ``decision.refused_by`` is the index of the limiter that refused. The strictest
        ``on_error`` of the limiters applies (fail_closed > report > fail_open)."""
        from .ratelimit import handles
        hs = handles(limiters, self)
        conn = self._checkout()
        try:
            return cast(Decision, _core.ratelimit_multi(conn, hs, subject, cost))
        finally:
            self._checkin(conn)

    def ratelimited(self, name: BytesLike, algorithm: str = "gcra", *,
                    key: Optional["KeyFunc"] = None, cost: "CostArg" = 1,
                    **limiter_options: Any) -> Callable[[F], F]:
        """A decorator with a limiter of its own: ``client.ratelimiter(name, algorithm,
        **limiter_options).limited(key, cost)``. Calls over the limit raise RateLimited.

            @client.ratelimited("login", "sliding_log", limit=5, window=60.0,
                                key=lambda username, password: username)
            def login(username: str, password: str) -> bool: ...
        """
        return self.ratelimiter(name, algorithm, **limiter_options).limited(key, cost)

    def fence_check(self, resource: BytesLike, token: int) -> FenceResult:
        """For storage that receives fenced writes: records ``token`` as the highest seen
        for ``resource`` unless an higher one was seen. ``accepted`` False means the
        writer is stale and its write must be refused."""
        conn = self._checkout()
        try:
            accepted, highest = conn.fence_check(resource, token)
        finally:
            self._checkin(conn)
        return FenceResult(accepted, highest)

    def execute_command(self, *args: object) -> Any:
        """A raw Redis command. Replies: bytes (bulk and status), int, None, list; an error
        reply raises ResponseError (inside an array it is returned as an instance)."""
        argv = [encode_arg(a) for a in args]
        conn = self._checkout()
        try:
            return conn.command(argv)
        finally:
            self._checkin(conn)

    def ping(self) -> bool:
        return bool(self.execute_command("PING") == b"PONG")
