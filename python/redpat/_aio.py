"""The asyncio executor, under redpat.asyncio.Client.

The pattern classes in redpat/_async are written against it (and turned into the sync ones
at build time, which import _blocking.py instead). It drives the core's sans-IO ops itself
(step, request bytes, feed reply bytes, sleep) over its own asyncio stream connections: no
thread pool, nothing blocks the event loop. Each op in flight has a connection of its own,
taken from a small pool, so concurrent tasks can share one Client. A connection with a
request unanswered (a timeout, a cancelled task, a broken reply) is closed, never reused.
"""
from __future__ import annotations

import asyncio
import inspect
import os
import socket
import sys
from typing import Any, Awaitable, Callable, Coroutine, List, Optional, Tuple, TypeVar

from . import _core
from ._common import BytesLike, Seconds, seconds
from .errors import RedpatError, error_for

#: The functions the asyncio decorators take.
Func = Callable[..., Awaitable[Any]]
T = TypeVar("T")

_READ_SIZE = 65536
# Ops performed by name (a str, not one of the stub's literals): untyped on purpose.
_begin: Callable[..., _core.Op] = _core.begin
_call: Callable[..., Any] = _core.call

if sys.version_info >= (3, 11):
    async def _read(reader: asyncio.StreamReader, timeout: float) -> bytes:
        async with asyncio.timeout(timeout):
            return await reader.read(_READ_SIZE)
else:  # pragma: no cover - exercised on older Pythons only
    async def _read(reader: asyncio.StreamReader, timeout: float) -> bytes:
        return await asyncio.wait_for(reader.read(_READ_SIZE), timeout)


class _Connection:
    """One stream connection. clean is False while requests are unanswered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.clean = True

    def usable(self) -> bool:
        return self.clean and not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.clean = False
        self.writer.close()

    async def exchange(self, op: _core.Op, requests: Tuple[bytes, ...], timeout: float) -> None:
        """One IO step: write the op's request, feed the reply bytes back until complete.
        I/O failures are handed to the op (fail_node), which then ends in ERROR."""
        for node, request in enumerate(requests):
            if not request:
                continue
            if node > 0:
                _core.fail_node(op, node, _core.ETRANSPORT,
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
                    rc = _core.feed(op, node, data)
                    if rc != _core.MORE:
                        break
            except asyncio.TimeoutError:
                self.close()
                _core.fail_node(op, node, _core.ETIMEOUT, "command timed out after %gs" % timeout)
                continue
            except OSError as exc:
                self.close()
                _core.fail_node(op, node, _core.ETRANSPORT, str(exc) or type(exc).__name__)
                continue
            if rc == _core.OK:
                self.clean = True
            else:
                self.close()  # the op failed the node (protocol error): stream out of step


class Executor:
    """A client's connections. template makes handles and ops; url_client only says where
    to connect (the core parses the URL) and makes each new connection's AUTH/SELECT."""

    def __init__(self, url: str, namespace: BytesLike, connect_timeout: Seconds,
                 command_timeout: Seconds, tcp_keepalive: bool, max_idle: int) -> None:
        config = (namespace, connect_timeout, command_timeout, tcp_keepalive)
        self.template = _core.make("client.new", None, *config)
        self._url_client = _core.make("client.new", url, *config)
        self._unix, self._host, self._port, self._path = _core.endpoint(self._url_client)[:4]
        self._connect_timeout = seconds(connect_timeout)
        self._command_timeout = seconds(command_timeout)
        self._keepalive = tcp_keepalive
        self._max_idle = max_idle
        self._idle: List[_Connection] = []
        self._pid = os.getpid()

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
            await self._drive(_core.begin("client.handshake", self._url_client), conn)
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

    async def _drive(self, op: _core.Op, conn: Optional[_Connection] = None) -> Any:
        """Drives op to the end and returns its result (a failed op raises). Without conn, a
        connection is checked out at the op's first IO step (and checked in at the end); if
        none can be opened, the failure is handed to the op as a failed node, so the op
        decides what it means (a rate limiter's on_error policy may answer without Redis),
        as the blocking transport does."""
        own = conn is None
        try:
            while True:
                step, what = _core.step(op)
                if step == _core.STEP_IO:
                    if conn is None:
                        try:
                            conn = await self._checkout()
                        except RedpatError as exc:
                            code = exc.code if exc.code is not None else _core.ETRANSPORT
                            for node, request in enumerate(what):
                                if request:
                                    _core.fail_node(op, node, code, str(exc))
                            continue
                    await conn.exchange(op, what, self._command_timeout)
                elif step == _core.STEP_SLEEP:
                    await asyncio.sleep(what)
                else:
                    return what  # DONE: the result
        finally:
            if own and conn is not None:
                self._checkin(conn)

    async def call(self, op: str, *args: Any) -> Any:
        """Performs op (an op name of the descriptor table) with args."""
        return await self._drive(_begin(op, *args))

    def peek(self, mutex: "Mutex", op: str, *args: Any) -> Any:
        """Performs an op answered from its handle (no I/O; one thread: no mutex needed)."""
        return _call(None, op, *args)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass


class Mutex:
    """The mutex of a Lock object: an asyncio.Lock, made on first use inside the loop."""

    def __init__(self) -> None:
        self._lock: Optional[asyncio.Lock] = None

    async def __aenter__(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()


class Worker:
    """A background job (the lock watchdog): a task on the running loop running
    target(worker); stop() cancels it (unless it is the task stopping itself)."""

    def __init__(self, target: Callable[["Worker"], Coroutine[Any, Any, None]],
                 name: str) -> None:
        self._target = target
        self._name = name
        self._task: "Optional[asyncio.Task[None]]" = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._target(self), name=self._name)

    def stop(self) -> None:
        self._stopped = True
        if self._task is not None and self._task is not _current_task():
            self._task.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def pause(self, seconds: float) -> bool:
        """Waits seconds; False if the worker was stopped meanwhile."""
        await asyncio.sleep(seconds)
        return not self._stopped


def _current_task() -> "Optional[asyncio.Task[Any]]":
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def settle(value: Any) -> Any:
    """A user callback's result, awaited when it is awaitable (on_lost may be a coroutine
    function)."""
    return await value if inspect.isawaitable(value) else value


def check_decorated(fn: Callable[..., Any]) -> None:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError("%s is not a coroutine function: limit it with a limiter of "
                        "redpat.Client" % getattr(fn, "__qualname__", fn))
