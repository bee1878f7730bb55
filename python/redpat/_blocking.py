"""The blocking executor, under redpat.Client (sync, threads).

The pattern classes are written once, in redpat/_async, against an executor; the build turns
them into redpat/_sync with unasync (setup.py), where they import this module instead of
_aio.py. Here each op runs in one C call (_core.call: begin, then drive.h's rp_client_drive
over a connection with the GIL released, result), on a client of its own from a small pool,
so one Client can be shared by many threads. The C transport does the rest of the driver
contract: targets by address (a Redlock's N servers), parallel rounds, per-target timeouts.
An op that CALLs (lock.using) runs its callable in the calling thread while a helper thread
of the core keeps renewing. After os.fork() the child drops the pool it inherited and opens
its own connections. Waits between retries run Python's signal handlers: Ctrl-C ends them.
"""
from __future__ import annotations

import collections
import inspect
import os
import threading
import time
import weakref
from typing import Any, Callable, Deque, List, Optional, Tuple, TypeVar

from . import _core
from ._common import BytesLike, Seconds
from .errors import StateError

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
# The longest a Listener's wait holds the subscription for itself: another thread's
# subscribe() gets in within this.
_PUMP_SLICE = 0.1

_executors: "weakref.WeakSet[Executor]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for executor in list(_executors):
        # The inherited sockets belong to the parent's conversation. Freeing a handle only
        # closes the child's copy of the descriptor.
        executor._idle = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Executor:
    """A client's connections. template (made with the url: ops find their targets through
    its endpoints) makes handles and ops and never connects; pooled connected clients run
    them (the core lets an op run on another client's connections)."""

    def __init__(self, url: str, namespace: BytesLike, connect_timeout: Seconds,
                 command_timeout: Seconds, tcp_keepalive: bool, max_idle: int,
                 max_reply_size: int) -> None:
        self._config = (url, namespace, connect_timeout, command_timeout, tcp_keepalive,
                        max_reply_size)
        self.template = _core.make("client.new", *self._config)  # checks every option
        # list.append/pop are atomic under the GIL: the pool needs no lock of its own.
        self._idle: List[_core.Handle] = []
        self._max_idle = max_idle
        _executors.add(self)

    def connection(self) -> _core.Handle:
        """A connected client of this executor's own (for a long-lived op)."""
        return _core.make("client.new", *self._config)

    def call(self, op: str, *args: Any) -> Any:
        """Performs op (an op name of the descriptor table) with args on a pooled connection
        (the hot path: kept short)."""
        idle = self._idle
        conn = idle.pop() if idle else _core.make("client.new", *self._config)
        try:
            return _call(conn, op, *args)
        finally:
            if len(idle) < self._max_idle:
                idle.append(conn)

    def peek(self, mutex: Mutex, op: str, *args: Any) -> Any:
        """Performs an op answered from its handle (no I/O) while no other thread uses it."""
        with mutex:
            return _call(None, op, *args)

    def listener(self, op: str, *args: Any) -> "Listener":
        """Begins the long-lived op (a subscription's listen) on a connection of its own."""
        return Listener(self, op, *args)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        del idle


class Listener:
    """A long-lived op (a subscription's listen) on a connected client of its own. One
    thread steps it at a time: a thread waiting for messages waits in slices, and a thread
    that changes what the op wants (subscribe from another thread) gets in between them;
    the messages a change found on its way wait in order for next()."""

    def __init__(self, x: Executor, op: str, *args: Any) -> None:
        self._op: Optional[_core.Op] = _begin(op, *args)
        self._conn: Optional[_core.Handle] = x.connection()
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
            self._turn.notify_all()


_now = time.monotonic


def _closed() -> Exception:
    return StateError("the subscription is closed", _core.ESTATE)


class Worker:
    """A background job (the lock watchdog): a daemon thread running target(worker)."""

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
