"""The distributed lock, written once for both flavours (the build makes the sync
redpat/_sync/lock.py from this source with unasync): redis-py's Lock interface over the C
core, always a TTL, owner-checked release and extend, optional fencing tokens, and an
opt-in auto-renew watchdog (a thread under redpat.Client, a task under redpat.asyncio)."""
from __future__ import annotations

import functools
import logging
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Type

from .. import _core
from .._aio import Mutex, Worker, settle
from .._common import (DEFAULT_MAX_HOLD, DEFAULT_TTL, BytesLike, Seconds, check_max_hold,
                       wait_arg)
from .._records import LockInfo, LockRemaining
from ..errors import LockError, LockLostError, LockNotOwnedError

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("redpat")

#: on_lost(lock, error): told when the watchdog failed to renew (a coroutine function is
#: awaited under redpat.asyncio).
LostCallback = Callable[["Lock", BaseException], Any]


class Lock:
    """A distributed lock called ``name``, held for ``timeout`` seconds (the TTL: redpat
    has no lock without one) unless extended.

    Like redis-py's Lock: ``acquire(blocking, blocking_timeout, token) -> bool``,
    ``release()``, ``extend(additional_time, replace_ttl=False)``, ``reacquire()``,
    ``locked()``, ``owned()``, and ``with lock:`` (raises LockError if it cannot acquire);
    under redpat.asyncio each is awaited and ``async with lock:`` is the context manager.
    A Lock object holds one owner token: share the Client, not the Lock.

    ``fenced=True``: each acquire also hands out ``lock.fence``, a strictly increasing
    integer, for storage to check with ``client.fence_check(resource, fence)``.

    ``auto_renew=True``: while held, a watchdog renews the TTL every ``timeout/3`` seconds,
    for at most ``max_hold`` seconds in all (None: no cap). If a renewal fails,
    ``on_lost(lock, error)`` is called, ``lock.lost`` becomes True and leaving the ``with``
    block raises LockLostError.

    A blocking acquire waits in the core; under redpat.Client the GIL is released and, in
    the main thread, signal handlers run between attempts, so Ctrl-C (KeyboardInterrupt)
    ends the wait within about 50 ms, leaving the lock not acquired.
    """

    def __init__(self, client: "Client", name: BytesLike, timeout: Seconds = DEFAULT_TTL,
                 sleep: Optional[Seconds] = None, blocking: bool = True,
                 blocking_timeout: Optional[Seconds] = None, *, fenced: bool = False,
                 retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
                 auto_renew: bool = False, max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
                 on_lost: Optional[LostCallback] = None) -> None:
        self._client = client
        self._x = client._x
        self._h = _core.make("lock.new", client._x.template, name, timeout, fenced)
        self._mutex = Mutex()
        info = self.info()
        self._name, self._ttl = info.name, info.ttl
        self.blocking = blocking
        self.blocking_timeout = blocking_timeout
        self._wait = wait_arg(blocking, blocking_timeout)
        # redis-py's sleep is a fixed delay between attempts: both bounds, unless given
        self._retry_min = sleep if retry_min is None else retry_min
        self._retry_max = sleep if retry_max is None else retry_max
        self.auto_renew = auto_renew
        self._max_hold = check_max_hold(max_hold)
        self.on_lost = on_lost
        self._watchdog: Optional[Worker] = None
        self._lost: Optional[LockLostError] = None

    # -- what the handle knows (no I/O) --------------------------------------------------

    def info(self) -> LockInfo:
        """What the handle knows: name, ttl (seconds), fenced, token (None when not held),
        fence."""
        info: LockInfo = self._x.peek(self._mutex, "lock.info", self._h)
        return info

    @property
    def name(self) -> bytes:
        return self._name

    @property
    def timeout(self) -> float:
        """The TTL in seconds."""
        return self._ttl

    @property
    def fenced(self) -> bool:
        return self.info().fenced

    @property
    def token(self) -> Optional[bytes]:
        """The owner token of the last successful acquire (None when not holding)."""
        return self.info().token

    @property
    def fence(self) -> int:
        """The fencing token of the last successful acquire of a fenced lock, else 0."""
        return self.info().fence

    @property
    def lost(self) -> bool:
        """True once the watchdog failed to renew the lock."""
        return self._lost is not None

    # -- operations ----------------------------------------------------------------------

    async def acquire(self, blocking: Optional[bool] = None,
                      blocking_timeout: Optional[Seconds] = None,
                      token: Optional[BytesLike] = None, *,
                      retry_min: Optional[Seconds] = None,
                      retry_max: Optional[Seconds] = None) -> bool:
        """Takes the lock: once (``blocking=False``), or retrying with jittered backoff for
        up to ``blocking_timeout`` seconds (None: until acquired). ``token`` replaces the
        random owner token. Returns whether the lock is now held."""
        if blocking is None and blocking_timeout is None:
            wait = self._wait
        else:
            wait = wait_arg(self.blocking if blocking is None else blocking,
                            self.blocking_timeout if blocking_timeout is None
                            else blocking_timeout)
        async with self._mutex:
            acquired: bool = (await self._x.call(
                "lock.acquire", self._h, wait,
                self._retry_min if retry_min is None else retry_min,
                self._retry_max if retry_max is None else retry_max, token)).acquired
            if acquired:
                self._lost = None
                if self.auto_renew:
                    self._start_watchdog()
        return acquired

    async def release(self) -> None:
        """Releases the lock if this handle still holds it; LockNotOwnedError if it does
        not (expired, or taken by another owner, whose key is left alone)."""
        if self._watchdog is not None:
            self._stop_watchdog()
        async with self._mutex:
            await self._x.call("lock.release", self._h)

    async def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> bool:
        """Adds ``additional_time`` seconds to the remaining TTL (or sets the TTL to it with
        ``replace_ttl=True``). LockNotOwnedError if the lock is not held any more."""
        async with self._mutex:
            await self._x.call("lock.extend", self._h, additional_time, replace_ttl)
        return True

    async def reacquire(self) -> bool:
        """Resets the TTL to the lock's timeout. LockNotOwnedError if not held any more."""
        return await self.extend(self._ttl, True)

    async def locked(self) -> bool:
        """Whether anyone holds the lock."""
        async with self._mutex:
            value: bool = (await self._x.call("lock.locked", self._h)).value
        return value

    async def owned(self) -> bool:
        """Whether this handle holds the lock."""
        async with self._mutex:
            value: bool = (await self._x.call("lock.owned", self._h)).value
        return value

    async def remaining(self) -> LockRemaining:
        """How long the lock has left if this handle still holds it: ``owned`` and
        ``remaining`` (seconds; 0.0 when not owned). One script; the owner check is the
        server's."""
        async with self._mutex:
            left: LockRemaining = await self._x.call("lock.remaining", self._h)
        return left

    # -- context manager -----------------------------------------------------------------

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
        self._watchdog = Worker(functools.partial(_watch, weakref.ref(self), self._ttl,
                                                  self._max_hold), "redpat-lock-watchdog")
        self._watchdog.start()

    def _stop_watchdog(self) -> None:
        worker, self._watchdog = self._watchdog, None
        if worker is not None:
            worker.stop()

    async def _renew(self, worker: Worker, seconds: float) -> bool:
        async with self._mutex:
            if worker.stopped or self._watchdog is not worker:
                return False
            await self._x.call("lock.extend", self._h, seconds, True)
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
            await settle(self.on_lost(self, err))
        except Exception:
            log.exception("redpat: on_lost callback failed")


async def _watch(ref: "weakref.ReferenceType[Lock]", ttl: float, max_hold: Optional[float],
                 worker: Worker) -> None:
    """Renews a held lock every ttl/3 until stopped, the hold cap, a failure, or the Lock
    being garbage-collected (it keeps only a weak reference)."""
    deadline = None if max_hold is None else time.monotonic() + max_hold
    while await worker.pause(ttl / 3.0):
        lock = ref()
        if lock is None:
            return
        seconds = ttl
        if deadline is not None:
            # Never renew past the hold cap: the lock then expires on its own.
            seconds = min(seconds, deadline - time.monotonic())
            if seconds < 0.001:
                return
        try:
            if not await lock._renew(worker, seconds):
                return
        except Exception as exc:
            await lock._report_lost(exc)
            return
        del lock
