"""The blocking executor, under redpat.Client (sync, threads).

The pattern classes are written once, in redpat/_async, against an executor; the build turns
them into redpat/_sync with unasync (setup.py), where they import this module instead of
_aio.py. Here each op runs in one C call (_core.call: begin, run over a connection with the
GIL released, result), on a connection of its own from a small pool, so one Client can be
shared by many threads. After os.fork() the child drops the pool it inherited and opens its
own connections. Waits between retries run Python's signal handlers: Ctrl-C ends them.
"""
from __future__ import annotations

import inspect
import os
import threading
import weakref
from typing import Any, Callable, List, TypeVar

from . import _core
from ._common import BytesLike, Seconds

#: The functions the sync decorators take.
Func = Callable[..., Any]
T = TypeVar("T")
#: The mutex of a Lock object (an op of another thread may be changing its handle).
Mutex = threading.Lock

# Ops performed by name (a str, not one of the stub's literals): untyped on purpose.
_call: Callable[..., Any] = _core.call

_executors: "weakref.WeakSet[Executor]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for executor in list(_executors):
        # The inherited sockets belong to the parent's conversation. Freeing a handle only
        # closes the child's copy of the descriptor.
        executor._idle = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Executor:
    """A client's connections. template makes handles and ops and never connects; pooled
    connected clients run them (the core allows an op to run on another client's
    connection)."""

    def __init__(self, url: str, namespace: BytesLike, connect_timeout: Seconds,
                 command_timeout: Seconds, tcp_keepalive: bool, max_idle: int) -> None:
        config = (namespace, connect_timeout, command_timeout, tcp_keepalive)
        self.template = _core.make("client.new", None, *config)
        self._config = (url,) + config
        # list.append/pop are atomic under the GIL: the pool needs no lock of its own.
        self._idle: List[_core.Handle] = [_core.make("client.new", *self._config)]  # checks url
        self._max_idle = max_idle
        _executors.add(self)

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

    def close(self) -> None:
        idle, self._idle = self._idle, []
        del idle


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
