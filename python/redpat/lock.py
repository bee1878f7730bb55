"""Distributed lock with redis-py's Lock interface, over the C core: always a TTL, owner-
checked release and extend, optional fencing tokens, and an opt-in auto-renew watchdog."""
from __future__ import annotations

import logging
import threading
import time
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Optional, Type

from . import _core
from ._common import (DEFAULT_MAX_HOLD, DEFAULT_TTL, BytesLike, Seconds, opt_ms, retry_ms,
                      to_ms, wait_ms)
from .errors import InvalidArgument, LockError, LockLostError, LockNotOwnedError

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("redpat")

LostCallback = Callable[["Lock", BaseException], None]


def check_max_hold(max_hold: Optional[Seconds]) -> Optional[int]:
    ms = opt_ms(max_hold, "max_hold")
    if ms is not None and ms <= 0:
        # The watchdog lives in the frontends, so its own option is checked here.
        raise InvalidArgument("max_hold must be > 0 seconds (or None: no cap)", _core.EINVAL)
    return ms


class Lock:
    """A distributed lock called ``name``, held for ``timeout`` seconds (the TTL: redpat
    has no lock without one) unless extended.

    Like redis-py's Lock: ``acquire(blocking, blocking_timeout, token) -> bool``,
    ``release()``, ``extend(additional_time, replace_ttl=False)``, ``reacquire()``,
    ``locked()``, ``owned()``, and ``with lock:`` (raises LockError if it cannot acquire).
    A Lock object holds one owner token: share the Client between threads, not the Lock.

    ``fenced=True``: each acquire also hands out ``lock.fence``, a strictly increasing
    integer, for storage to check with ``client.fence_check(resource, fence)``.

    ``auto_renew=True``: while held, a watchdog thread renews the TTL every ``timeout/3``
    seconds, for at most ``max_hold`` seconds in all (None: no cap). If a renewal fails,
    ``on_lost(lock, error)`` is called, ``lock.lost`` becomes True and leaving the ``with``
    block raises LockLostError.
    """

    def __init__(self, client: "Client", name: BytesLike, timeout: Seconds = DEFAULT_TTL,
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
        self._mutex = threading.Lock()
        self._watchdog: Optional[_Watchdog] = None
        self._lost: Optional[LockLostError] = None

    # -- what the handle knows ----------------------------------------------------------

    @property
    def name(self) -> bytes:
        return self._h.name()

    @property
    def timeout(self) -> float:
        """The TTL in seconds."""
        return self._h.ttl_ms() / 1000.0

    @property
    def token(self) -> Optional[bytes]:
        """The owner token of the last successful acquire (None when not holding)."""
        with self._mutex:  # an op on another thread may be replacing it (GIL released)
            return self._h.token()

    @property
    def fence(self) -> int:
        """The fencing token of the last successful acquire of a fenced lock, else 0."""
        with self._mutex:
            return self._h.fence()

    @property
    def lost(self) -> bool:
        """True once the watchdog failed to renew the lock."""
        return self._lost is not None

    # -- operations ----------------------------------------------------------------------

    def acquire(self, blocking: Optional[bool] = None,
                blocking_timeout: Optional[Seconds] = None,
                token: Optional[BytesLike] = None, *, retry_min: Optional[Seconds] = None,
                retry_max: Optional[Seconds] = None) -> bool:
        """Takes the lock: once (``blocking=False``), or retrying with jittered backoff for
        up to ``blocking_timeout`` seconds (None: until acquired). ``token`` replaces the
        random owner token. Returns whether the lock is now held.

        The wait happens in the extension with the GIL released, so other threads run; in
        the main thread, signal handlers run between attempts, so Ctrl-C (KeyboardInterrupt)
        ends the wait within about 50 ms, leaving the lock not acquired."""
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
        client = self._client
        with self._mutex:
            conn = client._checkout()
            try:
                acquired, _fence = self._h.acquire(conn, wait, lo, hi, token)
            finally:
                client._checkin(conn)
            if acquired:
                self._lost = None
                if self.auto_renew:
                    self._start_watchdog()
        return bool(acquired)

    def release(self) -> None:
        """Releases the lock if this handle still holds it; LockNotOwnedError if it does
        not (expired, or taken by another owner, whose key is left alone)."""
        if self._watchdog is not None:
            self._stop_watchdog()
        client = self._client
        with self._mutex:
            conn = client._checkout()
            try:
                self._h.release(conn)
            finally:
                client._checkin(conn)

    def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> bool:
        """Adds ``additional_time`` seconds to the remaining TTL (or sets the TTL to it with
        ``replace_ttl=True``). LockNotOwnedError if the lock is not held any more."""
        ms = to_ms(additional_time, "additional_time")
        client = self._client
        with self._mutex:
            conn = client._checkout()
            try:
                self._h.extend(conn, ms, 1 if replace_ttl else 0)
            finally:
                client._checkin(conn)
        return True

    def reacquire(self) -> bool:
        """Resets the TTL to the lock's timeout. LockNotOwnedError if not held any more."""
        client = self._client
        with self._mutex:
            conn = client._checkout()
            try:
                self._h.extend(conn, self._h.ttl_ms(), 1)
            finally:
                client._checkin(conn)
        return True

    def locked(self) -> bool:
        """Whether anyone holds the lock."""
        return self._query(0)

    def owned(self) -> bool:
        """Whether this handle holds the lock."""
        return self._query(1)

    def _query(self, which: int) -> bool:
        client = self._client
        with self._mutex:
            conn = client._checkout()
            try:
                return bool(self._h.query(conn, which))
            finally:
                client._checkin(conn)

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> "Lock":
        if self.acquire():
            return self
        raise LockError("Unable to acquire lock %r within the time specified" % self.name)

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        lost = self._lost
        try:
            self.release()
        except LockNotOwnedError:
            if lost is None:
                raise
        if lost is not None:
            raise lost

    # -- watchdog ------------------------------------------------------------------------

    def _start_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        self._watchdog = _Watchdog(self, self._h.ttl_ms(), self._max_hold_ms)
        self._watchdog.start()

    def _stop_watchdog(self) -> None:
        wd, self._watchdog = self._watchdog, None
        if wd is not None:
            wd.stop()

    def _renew(self, wd: "_Watchdog", ms: int) -> bool:
        client = self._client
        with self._mutex:
            if wd.stopped or self._watchdog is not wd:
                return False
            conn = client._checkout()
            try:
                self._h.extend(conn, ms, 1)
            finally:
                client._checkin(conn)
        return True

    def _report_lost(self, cause: BaseException) -> None:
        err = LockLostError("lock %r could not be renewed and may be lost: %s"
                            % (self.name, cause), getattr(cause, "code", None))
        err.__cause__ = cause
        self._lost = err
        if self.on_lost is not None:
            try:
                self.on_lost(self, err)
            except Exception:
                log.exception("redpat: on_lost callback failed")
        else:
            log.warning("%s", err)


class _Watchdog:
    """Renews a held lock every ttl/3 until stopped, the hold cap, a failure, or the Lock
    being garbage-collected (it keeps only a weak reference)."""

    def __init__(self, lock: Lock, ttl_ms: int, max_hold_ms: Optional[int]) -> None:
        self._ref = weakref.ref(lock)
        self._ttl_ms = ttl_ms
        self._deadline = (None if max_hold_ms is None
                          else time.monotonic() + max_hold_ms / 1000.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redpat-lock-watchdog",
                                        daemon=True)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self._ttl_ms / 3000.0
        while not self._stop.wait(interval):
            lock = self._ref()
            if lock is None:
                return
            ms = self._ttl_ms
            if self._deadline is not None:
                # Never renew past the hold cap: the lock then expires on its own.
                left = int((self._deadline - time.monotonic()) * 1000.0)
                if left <= 0:
                    return
                ms = min(ms, left)
            try:
                if not lock._renew(self, ms):
                    return
            except Exception as exc:
                lock._report_lost(exc)
                return
            del lock
