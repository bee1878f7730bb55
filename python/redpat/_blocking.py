"""The blocking executor, under redpat.Client (sync, threads).

The pattern classes are written once, in redpat/_async, against an executor; the build turns
them into redpat/_sync with unasync (setup.py), where they import this module instead of
_aio.py. Here an op runs in C calls (_core.begin, then _core.run: drive.h's rp_client_drive
over a connection with the GIL released, up to the op's end or its next SLEEP), on a client
of its own from a small pool, so one Client can be shared by many threads. The C transport
does the rest of the driver contract: targets by address (a Redlock's N servers), parallel
rounds, per-target timeouts. A pooled client holds at most one connection to each server,
so max_connections (how many of them exist at once, a subscription's own included) bounds
the connections to each server; a call that gets none in time fails its op's rounds, unsent,
with ConnectionError "too many connections" (a limiter's on_error applies). At a SLEEP
(retry backoff) the connection goes back to the pool while this thread sleeps, and the op
goes on over whichever one is free next. An op that CALLs (lock.using) runs its callable in
the calling thread, its connection lent to the pool meanwhile (the callable may use the
client itself) and taken back once free, while a helper thread of the core renews over a
connection of its own (outside the pool and max_connections). After os.fork() the child
drops the pool it inherited and opens its own connections. Waits run Python's signal
handlers: Ctrl-C ends them.
"""
from __future__ import annotations

import collections
import inspect
import os
import threading
import time
import types
import weakref
from typing import (Any, Callable, Deque, Dict, List, Optional, Protocol, Tuple, TypeVar,
                    Union, overload)

from . import _core
from ._common import NO_TLS, BytesLike, Seconds, TlsConfig, check_max_connections, seconds
from .errors import ConnectionError, StateError

#: The functions the sync decorators take.
Func = Callable[..., Any]
T = TypeVar("T")
#: What Lock.using runs: a plain callable, returning T.
Fn = Callable[..., T]
#: The mutex of a Lock object (an op of another thread may be changing its handle).
Mutex = threading.Lock

# Ops performed by name (a str, not one of the stub's literals): untyped on purpose.
_call: Callable[..., Any] = _core.call
_begin: Callable[..., _core.Op] = _core.begin
_run = _core.run
_SLEEP = _core.STEP_SLEEP
# The longest a Listener's wait holds the subscription for itself: another thread's
# subscribe() gets in within this.
_PUMP_SLICE = 0.1

_executors: "weakref.WeakSet[Executor]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for executor in list(_executors):
        # The inherited sockets belong to the parent's conversation. Freeing a handle only
        # closes the child's copy of the descriptor.
        executor._idle = []
        executor._open = 0
        executor._lent = {}
        executor._turn = threading.Condition()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Executor:
    """A client's connections. template (made with the url: ops find their targets through
    its endpoints) makes handles and ops and never connects; pooled connected clients run
    them (the core lets an op run on another client's connections)."""

    def __init__(self, url: str, namespace: BytesLike, connect_timeout: Seconds,
                 command_timeout: Seconds, tcp_keepalive: bool, max_idle: int,
                 max_reply_size: int, *, tls: TlsConfig = NO_TLS,
                 max_connections: Optional[int] = None) -> None:
        self._config = (url, namespace, connect_timeout, command_timeout, tcp_keepalive,
                        max_reply_size) + tls
        self.template = _core.make("client.new", *self._config)  # checks every option
        self._max = check_max_connections(max_connections)
        self._wait = seconds(command_timeout)  # the longest a caller waits for a connection
        # Unbounded: list.append/pop are atomic under the GIL, the pool needs no lock.
        # Bounded: _open (connected clients made and not freed yet, pooled, in use or a
        # subscription's) and _idle change under _turn, which wakes a caller waiting for one.
        self._idle: List[_core.Handle] = []
        self._open = 0
        # Connected clients lent to the pool while their op's callable runs, by id: [it,
        # how many ops lent it] (an op that borrowed it may lend it again: a nested using).
        # They stay counted and are never freed by _checkin; their op takes them back.
        self._lent: Dict[int, List[Any]] = {}
        self._turn = threading.Condition()
        self._max_idle = max_idle
        _executors.add(self)

    def _new(self) -> _core.Handle:
        """A new connected client (it connects on first use)."""
        return _core.make("client.new", *self._config)

    def _checkout(self, fresh: bool = False) -> _core.Handle:
        """A pooled connected client (fresh: a new one, for a long-lived op); under
        max_connections, waits up to the command timeout for one to come back, then raises
        ConnectionError."""
        idle = self._idle
        if self._max is None:
            try:
                if not fresh:
                    return idle.pop()
            except IndexError:
                pass
            return self._new()
        with self._turn:
            end = None
            while self._open >= self._max and not (self._spare() >= 0 if fresh else idle):
                now = _now()
                end = now + self._wait if end is None else end
                if now >= end:
                    raise ConnectionError(
                        "too many connections: all %d of the client's connections "
                        "(max_connections=%d) stayed in use for %d ms (command_timeout)"
                        % (self._max, self._max, round(self._wait * 1000)), _core.ETRANSPORT)
                self._turn.wait(end - now)
            if idle and not fresh:
                return idle.pop()
            if self._open >= self._max:
                del idle[self._spare()]  # makes room: freed, its place goes to the new one
            else:
                self._open += 1
        try:
            return self._new()
        except BaseException:
            self._freed()
            raise

    def _spare(self) -> int:
        """Where an idle client that is not lent is in _idle (-1: none), under _turn."""
        lent = self._lent
        return next((i for i, c in enumerate(self._idle) if id(c) not in lent), -1)

    def _checkin(self, conn: _core.Handle) -> None:
        idle = self._idle
        if self._max is None and not self._lent:  # (a lent one comes back while it is lent)
            if len(idle) < self._max_idle:
                idle.append(conn)
            return
        with self._turn:
            if len(idle) < self._max_idle or id(conn) in self._lent:
                idle.append(conn)
            elif self._max is not None:
                self._open -= 1  # conn is freed (closed) as it goes out of scope
            if self._lent:
                self._turn.notify_all()  # (an op taking its lent one back waits for it)
            else:
                self._turn.notify()

    def _lending(self, fn: Callable[..., Any], held: List[_core.Handle]) -> Callable[..., Any]:
        """fn (an op's callable) run with the op's connection (held[0]) lent to the pool
        meanwhile, then taken back (once it is free: the op goes on over it)."""
        def lent(*args: Any) -> Any:
            conn = held[0]
            with self._turn:
                self._lent.setdefault(id(conn), [conn, 0])[1] += 1
            self._checkin(conn)
            try:
                return fn(*args)
            finally:
                with self._turn:
                    idle = self._idle
                    while True:
                        at = next((i for i, c in enumerate(idle) if c is conn), -1)
                        if at >= 0:
                            break
                        self._turn.wait()  # in use for a round (or a callable) of another's
                    del idle[at]
                    entry = self._lent[id(conn)]
                    entry[1] -= 1
                    if not entry[1]:
                        del self._lent[id(conn)]
        return lent

    def _freed(self) -> None:
        """A connected client of the count is gone (freed, or never made)."""
        if self._max is not None:
            with self._turn:
                self._open -= 1
                self._turn.notify()

    def connection(self) -> _core.Handle:
        """A connected client for a long-lived op, out of the pool but counted within
        max_connections until _freed() is called for it (it is never pooled again)."""
        return self._checkout(True)

    def call(self, op: str, *args: Any) -> Any:
        """Performs op (an op name of the descriptor table) with args on a pooled
        connection, handed back while the op sleeps between attempts (and lent while its
        callable runs)."""
        held: List[_core.Handle] = []
        if any(callable(arg) for arg in args):
            args = tuple(self._lending(arg, held) if callable(arg) else arg for arg in args)
        running = _begin(op, *args)
        while True:
            try:
                conn = self._checkout()
            except ConnectionError as exc:
                step, what = _unconnected(running, str(exc))
            else:
                held[:] = [conn]
                try:
                    step, what = _run(running, conn)
                finally:
                    self._checkin(conn)
            if step != _SLEEP:
                return what
            try:
                time.sleep(what)
            except BaseException:
                _core.cancel(running)  # Ctrl-C: the op cleans up (if it must) and fails
                try:
                    self._finish(running)
                except Exception:
                    pass  # it ends cancelled: what the caller sees is its own interrupt
                raise

    def _finish(self, running: _core.Op) -> None:
        """Drives a cancelled op's clean-up to its end."""
        while True:
            conn = self._checkout()
            try:
                step, what = _run(running, conn)
            finally:
                self._checkin(conn)
            if step != _SLEEP:
                return
            time.sleep(what)

    def peek(self, mutex: Mutex, op: str, *args: Any) -> Any:
        """Performs an op answered from its handle (no I/O) while no other thread uses it."""
        with mutex:
            return _call(None, op, *args)

    def listener(self, op: str, *args: Any) -> "Listener":
        """Begins the long-lived op (a subscription's listen) on a connection of its own."""
        return Listener(self, op, *args)

    def close(self) -> None:
        with self._turn:
            idle = self._idle
            gone = [c for c in idle if id(c) not in self._lent]
            idle[:] = [c for c in idle if id(c) in self._lent]  # for the ops taking them back
            if self._max is not None:
                self._open -= len(gone)
                self._turn.notify_all()
        del gone


class Listener:
    """A long-lived op (a subscription's listen) on a connected client of its own. One
    thread steps it at a time: a thread waiting for messages waits in slices, and a thread
    that changes what the op wants (subscribe from another thread) gets in between them;
    the messages a change found on its way wait in order for next()."""

    def __init__(self, x: Executor, op: str, *args: Any) -> None:
        self._op: Optional[_core.Op] = _begin(op, *args)
        self._conn: Optional[_core.Handle] = x.connection()
        # its place within max_connections comes back when it is closed (or collected)
        self._freed = weakref.finalize(self, x._freed)
        self._turn = threading.Condition()
        self._busy = False
        self._changers = 0
        self._queue: Deque[Any] = collections.deque()

    def _enter(self, changer: bool) -> Tuple[_core.Handle, _core.Op]:
        with self._turn:
            if changer:
                self._changers += 1
            try:
                # changers first: a reader would take the op again at once
                while self._busy or (not changer and self._changers):
                    self._turn.wait()
            finally:
                if changer:
                    self._changers -= 1
            if self._op is None or self._conn is None:
                raise _closed()
            self._busy = True
            return self._conn, self._op

    def _leave(self) -> None:
        with self._turn:
            self._busy = False
            self._turn.notify_all()

    def next(self, timeout: Optional[float]) -> Any:
        """The op's next message, waiting up to timeout seconds (None: for ever); None when
        none came in time (the op lives on: nothing is lost)."""
        end = None if timeout is None else _now() + max(timeout, 0.0)
        while True:
            left = _PUMP_SLICE if end is None else min(_PUMP_SLICE, max(end - _now(), 0.0))
            conn, op = self._enter(False)
            try:
                message = self._queue.popleft() if self._queue else _core.pump(conn, op, left)
            finally:
                self._leave()
            if message is not None or (end is not None and _now() >= end):
                return message

    def change(self, op: str, *args: Any) -> None:
        """Performs op (no I/O: it changes what the long-lived op wants), then steps the
        long-lived op without waiting so that it sends the change now."""
        conn, listen = self._enter(True)
        try:
            _call(None, op, *args)
            self._drain(conn, listen)
        finally:
            self._leave()

    def flush(self) -> None:
        """Steps the op without waiting (it connects, sends what it has to)."""
        conn, listen = self._enter(True)
        try:
            self._drain(conn, listen)
        finally:
            self._leave()

    def _drain(self, conn: _core.Handle, listen: _core.Op) -> None:
        while True:  # what arrived meanwhile waits for next(), in order
            message = _core.pump(conn, listen, 0)
            if message is None:
                return
            self._queue.append(message)

    def close(self) -> None:
        """Frees the op, then its connection (once a thread stepping it has let go: before
        any reader takes it again)."""
        with self._turn:
            self._changers += 1
            try:
                while self._busy:
                    self._turn.wait()
            finally:
                self._changers -= 1
            self._op = None  # before the client it ran over
            self._conn = None
            self._freed()
            self._turn.notify_all()


_now = time.monotonic


def _unconnected(running: _core.Op, why: str) -> Tuple[int, Any]:
    """Steps an op that got no connection (max_connections): each of its rounds fails its
    targets with why, none of it sent (as under asyncio), so the op says what that means
    (an error, or a limiter's on_error decision), up to its end or its next SLEEP."""
    while True:
        step, what = _core.step(running)
        if step == _core.STEP_IO:
            for node, request in enumerate(what):
                if request and _core.pending(running, node):
                    _core.fail_node_unsent(running, node, _core.ETRANSPORT, why)
        elif step in (_core.STEP_DONE, _SLEEP):
            return step, what
        else:  # pragma: no cover - a CALL or EMIT comes only after I/O
            raise StateError("%r asked for more than I/O without a connection" % (running,),
                             _core.ESTATE)


def _closed() -> Exception:
    return StateError("the subscription is closed", _core.ESTATE)


class Worker:
    """A background job (the lock watchdog, a near-cache's subscriber): a daemon thread
    running target(worker)."""

    def __init__(self, target: Callable[["Worker"], None], name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=target, args=(self,), name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """Whether its thread runs (False once it ended, or in a forked child)."""
        return self._thread.is_alive()

    def pause(self, seconds: float) -> bool:
        """Waits seconds; False if the worker was stopped meanwhile."""
        return not self._stop.wait(seconds)


def settle(value: T) -> T:
    """A user callback's result (the asyncio flavour awaits it when it is awaitable)."""
    return value


def check_decorated(fn: Callable[..., Any]) -> None:
    if inspect.iscoroutinefunction(fn):
        # A blocking check would stall the event loop.
        raise TypeError("%s is a coroutine function: limit it with a limiter of redpat.asyncio.Client"
                        % getattr(fn, "__qualname__", fn))


def check_callback(fn: Callable[..., Any], what: str) -> None:
    """Refuses what the sync flavour cannot run: a non-callable, or a coroutine function
    (it would only make a coroutine, never awaited)."""
    if not callable(fn):
        raise TypeError("%s must be callable, not %s" % (what, type(fn).__name__))
    if inspect.iscoroutinefunction(fn):
        raise TypeError("%s is a coroutine function: run it with redpat.asyncio.Client, whose "
                        "%s awaits it" % (getattr(fn, "__qualname__", fn), what))


class SyncAcquire(Protocol):
    """The sync Lock.acquire, in redis-py's sync order (sleep first)."""

    def __call__(self, sleep: Optional[Seconds] = None, blocking: Optional[bool] = None,
                 blocking_timeout: Optional[Seconds] = None, token: Optional[BytesLike] = None,
                 *, retry_min: Optional[Seconds] = None,
                 retry_max: Optional[Seconds] = None) -> bool: ...


class acquire_order:
    """Lock.acquire's positional order under redpat.Client: redis-py's sync Lock takes
    (sleep, blocking, blocking_timeout, token), while the one source (redpat/_async/lock.py,
    unasync'd into this flavour) is written in redis-py's asyncio order (blocking,
    blocking_timeout, token, *, sleep): unasync renames, it cannot reorder, so this
    descriptor gives the sync method sleep first (its signature too, for inspect)."""

    def __init__(self, acquire: Callable[..., bool]) -> None:
        def in_sync_order(self: Any, sleep: Optional[Seconds] = None,
                          blocking: Optional[bool] = None,
                          blocking_timeout: Optional[Seconds] = None,
                          token: Optional[BytesLike] = None, *,
                          retry_min: Optional[Seconds] = None,
                          retry_max: Optional[Seconds] = None) -> bool:
            return acquire(self, blocking, blocking_timeout, token, sleep=sleep,
                           retry_min=retry_min, retry_max=retry_max)

        # not functools.wraps: its __wrapped__ would make inspect show the asyncio order
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(in_sync_order, attr, getattr(acquire, attr))
        self._in_sync_order = in_sync_order

    @overload
    def __get__(self, lock: None, owner: Any = None) -> Callable[..., bool]: ...

    @overload
    def __get__(self, lock: object, owner: Any = None) -> SyncAcquire: ...

    def __get__(self, lock: Optional[object],
                owner: Any = None) -> Union[Callable[..., bool], SyncAcquire]:
        if lock is None:
            return self._in_sync_order
        return types.MethodType(self._in_sync_order, lock)
