"""The distributed lock, written once for both flavours (the build makes the sync
redpat/_sync/lock.py from this source with unasync): redis-py's Lock interface over the C
core, always a TTL, owner-checked release and extend, optional fencing tokens, Redlock over
several servers, scoped use with renewal in the core (``using``), and an opt-in auto-renew
watchdog (a thread under redpat.Client, a task under redpat.asyncio) that follows the core's
renewal plan."""
from __future__ import annotations

import functools
import logging
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Type, TypeVar

from .. import _core
from .._aio import Fn, Mutex, Worker, check_callback, settle
from .._common import (DEFAULT_MAX_HOLD, DEFAULT_TTL, BytesLike, Seconds, check_max_hold,
                       wait_arg)
from .._records import LockInfo, LockRemaining, LockRenewal
from ..errors import InvalidArgument, LockError, LockLostError, LockNotOwnedError, StateError

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("redpat")

#: on_lost(lock, error): told when the watchdog failed to renew (a coroutine function is
#: awaited under redpat.asyncio).
LostCallback = Callable[["Lock", BaseException], Any]
T = TypeVar("T")


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
    for at most ``max_hold`` seconds in all (None: no cap), as the core's renewal plan
    (``lock.renewal``) says. If a renewal fails, ``on_lost(lock, error)`` is called,
    ``lock.lost`` becomes True and leaving the ``with`` block raises LockLostError.

    ``using(fn, *args, **kwargs)`` takes the lock, runs ``fn`` while the core renews it,
    releases it and returns what ``fn`` returned (see there).

    A Redlock (``client.redlock(...)``, ``redlock=True``) is the same class over every
    server of the client's URL list: each operation asks all of them in one parallel round
    and needs a majority (see Client.redlock for what it does and does not promise).

    A blocking acquire waits in the core; under redpat.Client the GIL is released and, in
    the main thread, signal handlers run between attempts, so Ctrl-C (KeyboardInterrupt)
    ends the wait within about 50 ms, leaving the lock not acquired.
    """

    def __init__(self, client: "Client", name: BytesLike, timeout: Seconds = DEFAULT_TTL,
                 sleep: Optional[Seconds] = None, blocking: bool = True,
                 blocking_timeout: Optional[Seconds] = None, *, fenced: bool = False,
                 retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
                 auto_renew: bool = False, max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
                 on_lost: Optional[LostCallback] = None, redlock: bool = False,
                 node_timeout: Optional[Seconds] = None) -> None:
        self._client = client
        self._x = client._x
        if redlock:
            if fenced:
                raise InvalidArgument("fenced is not offered for a Redlock (its N servers "
                                      "share no counter)", _core.EINVAL)
            self._h = _core.make("redlock.new", client._x.template, name, timeout, node_timeout)
        else:
            if node_timeout is not None:
                raise InvalidArgument("node_timeout is for Redlocks (client.redlock)",
                                      _core.EINVAL)
            self._h = _core.make("lock.new", client._x.template, name, timeout, fenced)
        self._mutex = Mutex()
        self._in_use = False  # a using() runs: the handle is the core's until it returns
        info = self.info()
        self._name, self._ttl, self._nodes = info.name, info.ttl, info.nodes
        self._validity = 0.0
        self._attempts = 0
        self._renewals = 0
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

    @property
    def nodes(self) -> int:
        """How many servers the lock lives on: 1, or N for a Redlock."""
        return self._nodes

    @property
    def validity(self) -> float:
        """Seconds the last successful acquire's hold was safe for when it returned (the
        TTL less the time the acquire took, and for a Redlock the clock drift); 0.0 when the
        last acquire failed."""
        return self._validity

    @property
    def attempts(self) -> int:
        """How many times the last acquire asked Redis (a Redlock's: rounds over all its
        servers)."""
        return self._attempts

    @property
    def renewals(self) -> int:
        """How many times the last using() renewed the lock while its function ran."""
        return self._renewals

    def _check_free(self) -> None:
        if self._in_use:
            raise StateError("lock %r is in use by using(): only using may touch it until it "
                             "returns" % self._name, _core.ESTATE)

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
            self._check_free()
            got = await self._x.call(
                "lock.acquire", self._h, wait,
                self._retry_min if retry_min is None else retry_min,
                self._retry_max if retry_max is None else retry_max, token)
            acquired: bool = got.acquired
            self._validity, self._attempts = got.validity, got.attempts
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
            self._check_free()
            await self._x.call("lock.release", self._h)

    async def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> bool:
        """Adds ``additional_time`` seconds to the remaining TTL (or sets the TTL to it with
        ``replace_ttl=True``). LockNotOwnedError if the lock is not held any more."""
        async with self._mutex:
            self._check_free()
            await self._x.call("lock.extend", self._h, additional_time, replace_ttl)
        return True

    async def reacquire(self) -> bool:
        """Resets the TTL to the lock's timeout. LockNotOwnedError if not held any more."""
        return await self.extend(self._ttl, True)

    async def locked(self) -> bool:
        """Whether anyone holds the lock."""
        async with self._mutex:
            self._check_free()
            value: bool = (await self._x.call("lock.locked", self._h)).value
        return value

    async def owned(self) -> bool:
        """Whether this handle holds the lock."""
        async with self._mutex:
            self._check_free()
            value: bool = (await self._x.call("lock.owned", self._h)).value
        return value

    async def remaining(self) -> LockRemaining:
        """How long the lock has left if this handle still holds it: ``owned`` and
        ``remaining`` (seconds; 0.0 when not owned). One script; the owner check is the
        server's."""
        async with self._mutex:
            self._check_free()
            left: LockRemaining = await self._x.call("lock.remaining", self._h)
        return left

    async def using(self, fn: "Fn[T]", *args: Any, blocking: Optional[bool] = None,
                    blocking_timeout: Optional[Seconds] = None,
                    retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
                    max_hold: Optional[Seconds] = None, renew: bool = True,
                    **kwargs: Any) -> T:
        """Takes the lock, runs ``fn(*args, **kwargs)`` while the core renews the lock every
        ``timeout/3`` seconds, releases it whatever happened, and returns what ``fn``
        returned. Under redpat.Client ``fn`` is a plain callable (it runs in this thread
        while a helper thread of the core renews); under redpat.asyncio it is a coroutine
        function (it runs as a task while this one renews). The keyword arguments named
        below are using's own; every other one goes to ``fn``.

        ``blocking``, ``blocking_timeout``, ``retry_min``, ``retry_max``: how to take the
        lock, as acquire() (None: the Lock's settings). ``max_hold``: renew for at most this
        many seconds after the acquire (None or 0: for as long as ``fn`` runs); past it the
        lock expires. ``renew=False``: no renewal (``fn`` must end within the TTL).

        Raises LockError if the lock could not be taken (``fn`` never ran);
        LockLostError if a renewal failed or the lock had expired by the release (``fn``
        ran without the lock for a while: whatever it did may clash with another holder);
        whatever ``fn`` raised, as it raised it, after the release. A cancelled task, or
        Ctrl-C inside ``fn``, also releases the lock before the CancelledError or
        KeyboardInterrupt goes on. While using runs the Lock object is the core's: its other
        operations raise StateError.
        """
        check_callback(fn, "using's fn")
        if blocking is None and blocking_timeout is None:
            wait = self._wait
        else:
            wait = wait_arg(self.blocking if blocking is None else blocking,
                            self.blocking_timeout if blocking_timeout is None
                            else blocking_timeout)
        returned: List[T] = []

        async def run() -> None:
            returned.append(await fn(*args, **kwargs))

        async with self._mutex:
            self._check_free()
            if _core.call(None, "lock.info", self._h).token is not None:  # (mutex held)
                raise StateError("lock %r is held by this handle already: using takes it "
                                 "itself" % self._name, _core.ESTATE)
            self._in_use = True
            self._renewals = 0
        try:
            got = await self._x.call(
                "lock.using", self._h, run, wait,
                self._retry_min if retry_min is None else retry_min,
                self._retry_max if retry_max is None else retry_max,
                0 if max_hold is None else max_hold, renew)
        finally:
            self._in_use = False
        self._renewals = got.renewals
        if not got.acquired:
            raise LockError("Unable to acquire lock %r within the time specified" % self.name)
        return returned[0]

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
        self._watchdog = Worker(functools.partial(_watch, weakref.ref(self)),
                                "redpat-lock-watchdog")
        self._watchdog.start()

    def _stop_watchdog(self) -> None:
        worker, self._watchdog = self._watchdog, None
        if worker is not None:
            worker.stop()

    def renewal(self, max_hold: Optional[Seconds] = None) -> LockRenewal:
        """The core's renewal plan for this handle's hold, for a watchdog of your own (no
        I/O): ``renew`` False means stop (not held, or the hold cap reached); else wait
        ``delay`` seconds, then ``extend(ttl, replace_ttl=True)``. ``max_hold``: the hold
        cap in seconds after the acquire (None: the Lock's; 0: none). auto_renew=True runs
        this loop for you."""
        plan: LockRenewal = self._x.peek(
            self._mutex, "lock.renewal", self._h,
            (0 if self._max_hold is None else self._max_hold) if max_hold is None else max_hold)
        return plan

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


async def _watch(ref: "weakref.ReferenceType[Lock]", worker: Worker) -> None:
    """Follows the core's renewal plan (lock.renewal: when to renew, and to what TTL, never
    past the hold cap) until stopped, the plan says stop (not held, or the cap reached: the
    lock then expires on its own), a renewal fails, or the Lock is garbage-collected (this
    keeps only a weak reference)."""
    while True:
        lock = ref()
        if lock is None or worker.stopped:
            return
        plan = lock.renewal()
        del lock
        if not plan.renew or not await worker.pause(plan.delay):
            return
        lock = ref()
        if lock is None:
            return
        try:
            if not await lock._renew(worker, plan.ttl):
                return
        except Exception as exc:
            await lock._report_lost(exc)
            return
        del lock
