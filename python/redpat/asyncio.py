"""redpat for asyncio: the same Client, Lock and RateLimiter API with async/await.

It drives the core's operations itself (the sans-IO ops: step, request bytes, feed reply
bytes, sleep) over its own asyncio stream connections: no thread pool, nothing blocks the
event loop. Each operation in flight has a connection of its own, taken from a small pool,
so concurrent tasks can share one Client.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import os
import socket
import sys
import weakref
from types import TracebackType
from typing import (Any, Awaitable, Callable, Iterable, List, Optional, Sequence, Type,
                    TypeVar, cast)

from . import _core
from ._common import (DEFAULT_MAX_HOLD, DEFAULT_TTL, BytesLike, Decision, FenceResult,
                      Seconds, encode_arg, retry_ms, to_ms, wait_ms)
from .client import DEFAULT_URL
from .errors import (LockError, LockLostError, LockNotOwnedError, RateLimited, RedpatError,
                     error_for)
from .lock import check_max_hold, log
from .ratelimit import (CostArg, KeyFunc, _Settings, as_bytes, call_key, handles,
                        new_handle, subject_and_cost, subject_list)

__all__ = ["Client", "Lock", "RateLimiter", "Decision", "FenceResult"]

_READ_SIZE = 65536
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


if sys.version_info >= (3, 11):
    async def _read(reader: asyncio.StreamReader, timeout: float) -> bytes:
        async with asyncio.timeout(timeout):
            return await reader.read(_READ_SIZE)
else:  # pragma: no cover - exercised on older Pythons only
    async def _read(reader: asyncio.StreamReader, timeout: float) -> bytes:
        return await asyncio.wait_for(reader.read(_READ_SIZE), timeout)


class _Connection:
    """One stream connection. ``clean`` is False while requests are unanswered: such a
    connection (after a timeout, a cancellation, a broken reply) is closed, not reused."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.clean = True

    def usable(self) -> bool:
        return self.clean and not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.clean = False
        self.writer.close()

    async def exchange(self, op: _core.Op, timeout: float) -> None:
        """One IO step: write the op's request, feed the reply bytes back until complete.
        I/O failures are handed to the op (fail_node), which then ends in ERROR."""
        for node in range(op.nodes()):
            request = op.request(node)
            if not request:
                continue
            if node > 0:
                op.fail_node(node, _core.ETRANSPORT,
                             "redpat.asyncio drives single-node operations only")
                continue
            self.clean = False
            try:
                self.writer.write(request)
                await self.writer.drain()
                while True:
                    data = await _read(self.reader, timeout)
                    if not data:
                        raise ConnectionResetError("connection closed by the server")
                    rc = op.feed(node, data)
                    if rc != _core.MORE:
                        break
            except asyncio.TimeoutError:
                self.close()
                op.fail_node(node, _core.ETIMEOUT, "command timed out after %gs" % timeout)
                continue
            except OSError as exc:
                self.close()
                op.fail_node(node, _core.ETRANSPORT, str(exc) or type(exc).__name__)
                continue
            if rc == _core.OK:
                self.clean = True
            else:
                self.close()  # the op failed the node (protocol error): stream out of step


class Client:
    """An asyncio redpat client: the same arguments as redpat.Client. No I/O happens here:
    connections open on first use."""

    def __init__(self, url: str = DEFAULT_URL, *, namespace: BytesLike = "redpat",
                 connect_timeout: Seconds = 2.0, command_timeout: Seconds = 2.0,
                 tcp_keepalive: bool = True, max_idle: int = 64) -> None:
        self.url = url
        cto = to_ms(connect_timeout, "connect_timeout")
        tto = to_ms(command_timeout, "command_timeout")
        config = (namespace, cto, tto, 1 if tcp_keepalive else 0)
        self._template = _core.Client(None, *config)
        # The core parses and validates the URL (no I/O); this client only tells where
        # to connect and makes the AUTH/SELECT handshake of each new connection.
        self._url_client = _core.Client(url, *config)
        self._unix, self._host, self._port, self._path = self._url_client.endpoint()[:4]
        self._connect_timeout = cto / 1000.0
        self._command_timeout = tto / 1000.0
        self._keepalive = tcp_keepalive
        self._max_idle = max_idle
        self._idle: List[_Connection] = []
        self._pid = os.getpid()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "Client":
        return cls(url, **kwargs)

    @property
    def namespace(self) -> bytes:
        return self._template.key_namespace()

    # -- connections ---------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        where = self._path if self._unix else "%s:%d" % (self._host, self._port)
        try:
            if self._unix:
                opening = asyncio.open_unix_connection(self._path)
            else:
                opening = asyncio.open_connection(self._host, self._port)
            reader, writer = await asyncio.wait_for(opening, self._connect_timeout)
        except asyncio.TimeoutError:
            raise error_for(_core.ETIMEOUT, "connect to %s timed out after %gs"
                            % (where, self._connect_timeout)) from None
        except OSError as exc:
            raise error_for(_core.ETRANSPORT, "connect to %s: %s" % (where, exc)) from None
        sock = writer.get_extra_info("socket")
        if sock is not None and self._keepalive and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn = _Connection(reader, writer)
        try:
            await self._run(_core.handshake_op(self._url_client), conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _checkout(self) -> _Connection:
        if self._pid != os.getpid():
            # A forked child must not talk over its parent's sockets (nor close them).
            self._idle = []
            self._pid = os.getpid()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return await self._connect()

    def _checkin(self, conn: _Connection) -> None:
        if conn.usable() and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    async def _run(self, op: _core.Op, conn: Optional[_Connection] = None) -> None:
        """Drives op to the end. Without conn, a connection is checked out at the op's first
        IO step (and checked in at the end); if none can be opened, the failure is handed to
        the op as a failed node, so the op decides what it means (a rate limiter's
        on_error policy may answer without Redis), as the blocking transport does."""
        own = conn is None
        try:
            while True:
                step = op.step()
                if step == _core.STEP_IO:
                    if conn is None:
                        try:
                            conn = await self._checkout()
                        except RedpatError as exc:
                            _fail_nodes(op, exc)
                            continue
                    await conn.exchange(op, self._command_timeout)
                elif step == _core.STEP_SLEEP:
                    await asyncio.sleep(op.sleep_ms() / 1000.0)
                elif step == _core.STEP_DONE:
                    return
                else:
                    op.raise_error()
                    raise error_for(_core.ESTATE, "op ended in an unknown step %d" % step)
        finally:
            if own and conn is not None:
                self._checkin(conn)

    async def close(self) -> None:
        """Closes idle connections (the client reconnects on use)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass

    aclose = close

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- operations ----------------------------------------------------------------------

    def lock(self, name: BytesLike, timeout: Seconds = DEFAULT_TTL,
             sleep: Optional[Seconds] = None, blocking: bool = True,
             blocking_timeout: Optional[Seconds] = None, *, fenced: bool = False,
             retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
             auto_renew: bool = False, max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
             on_lost: Optional[Callable[["Lock", BaseException], Any]] = None) -> "Lock":
        """A Lock handle for ``name`` (see redpat.asyncio.Lock)."""
        return Lock(self, name, timeout, sleep, blocking, blocking_timeout, fenced=fenced,
                    retry_min=retry_min, retry_max=retry_max, auto_renew=auto_renew,
                    max_hold=max_hold, on_lost=on_lost)

    def locked(self, name: BytesLike, **lock_options: Any) -> Callable[[F], F]:
        """A decorator for coroutine functions: each call runs holding the lock ``name``
        (a fresh Lock per call). ``lock_options`` are those of Client.lock."""
        self.lock(name, **lock_options)  # refuse bad options now, not at the first call

        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self.lock(name, **lock_options):
                    return await fn(*args, **kwargs)
            return cast(F, wrapper)
        return decorate

    def ratelimiter(self, name: BytesLike, algorithm: str = "gcra", *, limit: int,
                    window: Seconds, burst: Optional[int] = None,
                    on_error: str = "report") -> "RateLimiter":
        """A RateLimiter (see redpat.asyncio.RateLimiter). No I/O."""
        return RateLimiter(self, name, algorithm, limit=limit, window=window, burst=burst,
                           on_error=on_error)

    async def ratelimit_multi(self, limiters: Sequence["RateLimiter"], subject: BytesLike,
                              cost: int = 1) -> Decision:
        """See redpat.Client.ratelimit_multi: all-or-nothing over several limiters."""
        op = _core.ratelimit_multi_op(handles(limiters, self), subject, cost)
        await self._run(op)
        return cast(Decision, op.decision())

    def ratelimited(self, name: BytesLike, algorithm: str = "gcra", *,
                    key: Optional[KeyFunc] = None, cost: CostArg = 1,
                    **limiter_options: Any) -> Callable[[F], F]:
        """A decorator for coroutine functions with a limiter of its own (see
        redpat.Client.ratelimited). Calls over the limit raise RateLimited."""
        return self.ratelimiter(name, algorithm, **limiter_options).limited(key, cost)

    async def fence_check(self, resource: BytesLike, token: int) -> FenceResult:
        """See redpat.Client.fence_check."""
        op = _core.fence_check_op(self._template, resource, token)
        await self._run(op)
        accepted, highest = op.fence_result()
        return FenceResult(accepted, highest)

    async def execute_command(self, *args: object) -> Any:
        """A raw Redis command (see redpat.Client.execute_command)."""
        op = _core.command_op(self._template, [encode_arg(a) for a in args])
        await self._run(op)
        return op.command_result()

    async def ping(self) -> bool:
        return bool(await self.execute_command("PING") == b"PONG")


def _fail_nodes(op: _core.Op, exc: RedpatError) -> None:
    code = exc.code if exc.code is not None else _core.ETRANSPORT
    for node in range(op.nodes()):
        if op.request(node):
            op.fail_node(node, code, str(exc))


LostCallback = Callable[["Lock", BaseException], Any]


class Lock:
    """The asyncio twin of redpat.Lock: ``await lock.acquire()``, ``await lock.release()``,
    ``await lock.extend(t)``, ``await lock.reacquire()``, ``await lock.locked()``,
    ``await lock.owned()``, ``async with lock:``. The watchdog (``auto_renew=True``) is a
    task on the running loop; ``on_lost`` may be a function or a coroutine function."""

    def __init__(self, client: Client, name: BytesLike, timeout: Seconds = DEFAULT_TTL,
                 sleep: Optional[Seconds] = None, blocking: bool = True,
                 blocking_timeout: Optional[Seconds] = None, *, fenced: bool = False,
                 retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
                 auto_renew: bool = False, max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
                 on_lost: Optional[LostCallback] = None) -> None:
        self._client = client
        self._h = _core.Lock(client._template, name, to_ms(timeout, "timeout"),
                             1 if fenced else 0)
        self.blocking = blocking
        self.blocking_timeout = blocking_timeout
        self._wait = wait_ms(blocking, blocking_timeout)
        self._retry = retry_ms(sleep, retry_min, retry_max)
        self.auto_renew = auto_renew
        self._max_hold_ms = check_max_hold(max_hold)
        self.on_lost = on_lost
        self._mutex_obj: Optional[asyncio.Lock] = None
        self._watchdog: Optional["asyncio.Task[None]"] = None
        self._lost: Optional[LockLostError] = None

    @property
    def _mutex(self) -> asyncio.Lock:
        # Made on first use, inside the running loop.
        if self._mutex_obj is None:
            self._mutex_obj = asyncio.Lock()
        return self._mutex_obj

    @property
    def name(self) -> bytes:
        return self._h.name()

    @property
    def timeout(self) -> float:
        return self._h.ttl_ms() / 1000.0

    @property
    def token(self) -> Optional[bytes]:
        return self._h.token()

    @property
    def fence(self) -> int:
        return self._h.fence()

    @property
    def lost(self) -> bool:
        return self._lost is not None

    async def acquire(self, blocking: Optional[bool] = None,
                      blocking_timeout: Optional[Seconds] = None,
                      token: Optional[BytesLike] = None, *,
                      retry_min: Optional[Seconds] = None,
                      retry_max: Optional[Seconds] = None) -> bool:
        if blocking is None and blocking_timeout is None:
            wait = self._wait
        else:
            wait = wait_ms(self.blocking if blocking is None else blocking,
                           self.blocking_timeout if blocking_timeout is None
                           else blocking_timeout)
        lo, hi = self._retry
        if retry_min is not None:
            lo = to_ms(retry_min, "retry_min")
        if retry_max is not None:
            hi = to_ms(retry_max, "retry_max")
        async with self._mutex:
            op = _core.lock_acquire_op(self._h, wait, lo, hi, token)
            await self._client._run(op)
            acquired, _fence, _attempts = op.acquire_result()
            if acquired:
                self._lost = None
                if self.auto_renew:
                    self._start_watchdog()
        return bool(acquired)

    async def release(self) -> None:
        self._stop_watchdog()
        async with self._mutex:
            await self._client._run(_core.lock_release_op(self._h))

    async def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> bool:
        ms = to_ms(additional_time, "additional_time")
        async with self._mutex:
            await self._client._run(_core.lock_extend_op(self._h, ms, 1 if replace_ttl else 0))
        return True

    async def reacquire(self) -> bool:
        async with self._mutex:
            await self._client._run(_core.lock_extend_op(self._h, self._h.ttl_ms(), 1))
        return True

    async def locked(self) -> bool:
        return await self._query(0)

    async def owned(self) -> bool:
        return await self._query(1)

    async def _query(self, which: int) -> bool:
        async with self._mutex:
            op = _core.lock_query_op(self._h, which)
            await self._client._run(op)
            return bool(op.query_result())

    async def __aenter__(self) -> "Lock":
        if await self.acquire():
            return self
        raise LockError("Unable to acquire lock %r within the time specified" % self.name)

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        lost = self._lost
        try:
            await self.release()
        except LockNotOwnedError:
            if lost is None:
                raise
        if lost is not None:
            raise lost

    # -- watchdog ------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        self._stop_watchdog()
        self._watchdog = asyncio.get_running_loop().create_task(
            _watch(weakref.ref(self), self._h.ttl_ms(), self._max_hold_ms))

    def _stop_watchdog(self) -> None:
        task, self._watchdog = self._watchdog, None
        if task is not None and task is not _current_task():
            task.cancel()

    async def _renew(self, task: "Optional[asyncio.Task[Any]]", ms: int) -> bool:
        async with self._mutex:
            if self._watchdog is not task or task is None:
                return False
            await self._client._run(_core.lock_extend_op(self._h, ms, 1))
        return True

    async def _report_lost(self, cause: BaseException) -> None:
        err = LockLostError("lock %r could not be renewed and may be lost: %s"
                            % (self.name, cause), getattr(cause, "code", None))
        err.__cause__ = cause
        self._lost = err
        if self.on_lost is None:
            log.warning("%s", err)
            return
        try:
            result = self.on_lost(self, err)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("redpat: on_lost callback failed")


def _current_task() -> "Optional[asyncio.Task[Any]]":
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def _watch(ref: "weakref.ReferenceType[Lock]", ttl_ms: int,
                 max_hold_ms: Optional[int]) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if max_hold_ms is None else loop.time() + max_hold_ms / 1000.0
    me = asyncio.current_task()
    while True:
        await asyncio.sleep(ttl_ms / 3000.0)
        lock = ref()
        if lock is None:
            return
        ms = ttl_ms
        if deadline is not None:
            left = int((deadline - loop.time()) * 1000.0)
            if left <= 0:
                return
            ms = min(ms, left)
        try:
            if not await lock._renew(me, ms):
                return
        except RedpatError as exc:
            await lock._report_lost(exc)
            return
        del lock



class RateLimiter(_Settings):
    """The asyncio twin of redpat.RateLimiter: ``await limiter.check(subject, cost=1)``,
    ``await limiter.batch(subjects, costs)``, ``await limiter.reset(subject)``, and the
    ``limited(key, cost)`` decorator for coroutine functions."""

    def __init__(self, client: Client, name: BytesLike, algorithm: str = "gcra", *,
                 limit: int, window: Seconds, burst: Optional[int] = None,
                 on_error: str = "report") -> None:
        self._client = client
        self._h = new_handle(client, name, algorithm, limit, window, burst, on_error)
        self._remember(name, algorithm, limit, window, burst, on_error)

    async def check(self, subject: BytesLike, cost: int = 1) -> Decision:
        op = _core.ratelimit_check_op(self._h, subject, cost)
        await self._client._run(op)
        return cast(Decision, op.decision())

    async def batch(self, subjects: Iterable[BytesLike],
                    costs: Optional[Iterable[int]] = None) -> List[Decision]:
        op = _core.ratelimit_batch_op(self._h, subject_list(subjects),
                                      None if costs is None else list(costs))
        await self._client._run(op)
        return cast(List[Decision], op.decisions())

    async def reset(self, subject: BytesLike) -> None:
        await self._client._run(_core.ratelimit_reset_op(self._h, subject))

    def limited(self, key: Optional[KeyFunc] = None, cost: CostArg = 1) -> Callable[[F], F]:
        """A decorator for coroutine functions: each call is first checked (awaited)
        against this limiter and raises RateLimited when refused. ``key`` and ``cost`` as
        for redpat.RateLimiter.limited (plain functions of the call's arguments)."""
        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError("%s is not a coroutine function: limit it with a limiter of "
                                "redpat.Client" % getattr(fn, "__qualname__", fn))

            key_of = call_key(fn, key)

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                subject, n = subject_and_cost(key_of, cost, args, kwargs)
                decision = await self.check(subject, n)
                if not decision.allowed:
                    raise RateLimited(decision, as_bytes(subject)) from decision.error
                return await fn(*args, **kwargs)
            return cast(F, wrapper)
        return decorate
