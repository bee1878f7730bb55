"""The distributed lock, written once for both flavours (the build makes the sync
redpat/_sync/lock.py from this source with unasync): redis-py's Lock interface over the C
core, always a TTL, owner-checked release and extend, optional fencing tokens, Redlock over
several servers, scoped use with renewal in the core (``using``), and an opt-in auto-renew
watchdog (a thread under redpat.Client, a task under redpat.asyncio) that follows the core's
renewal plan."""
from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import threading
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Type, TypeVar

from .. import _core
from .._aio import Fn, Mutex, Worker, acquire_order, check_callback, settle
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

#: The shortest retry delay the core takes (1 ms), in seconds.
_SLEEP_MIN = 0.001


def check_sleep(sleep: Optional[Seconds]) -> None:
    """A Lock's or an acquire's sleep, checked in the user's words (it becomes the core's
    retry_min and retry_max, which would be named in the core's errors)."""
    if sleep is None:
        return
    if isinstance(sleep, bool) or not isinstance(sleep, (int, float, datetime.timedelta)):
        raise TypeError("sleep must be a number of seconds, not %s" % type(sleep).__name__)
    value = sleep.total_seconds() if isinstance(sleep, datetime.timedelta) else float(sleep)
    if not value >= _SLEEP_MIN:  # (NaN too)
        raise InvalidArgument("sleep must be >= %g seconds (got %g)" % (_SLEEP_MIN, value),
                              _core.EINVAL)


def check_blocking(blocking: Optional[bool]) -> None:
    if blocking is not None and not isinstance(blocking, bool):
        raise TypeError("blocking must be a bool, not %s" % type(blocking).__name__)


class Lock:
    """A distributed lock called ``name``, held for ``timeout`` seconds (the TTL: redpat
    has no lock without one) unless extended.

    Like redis-py's Lock, with its arguments in its order: ``Lock(client, name, timeout,
    sleep, blocking, blocking_timeout, thread_local, raise_on_release_error)``,
    ``acquire(...) -> bool`` in redis-py's order for each flavour (redpat.Client:
    ``acquire(sleep, blocking, blocking_timeout, token)``; redpat.asyncio:
    ``acquire(blocking, blocking_timeout, token, *, sleep)``), ``release()``,
    ``extend(additional_time, replace_ttl=False)``, ``reacquire()``, ``locked()``,
    ``owned()``, and ``with lock:`` (raises LockError if it cannot acquire); under
    redpat.asyncio each is awaited and ``async with lock:`` is the context manager. Every
    LockError it raises has ``lock_name``. A Lock object holds one owner token: share the
    Client, not the Lock.

    ``timeout`` is required to be a duration: redpat locks always expire (redis-py's
    ``timeout=None``, held until released, is refused; ``auto_renew`` or ``using`` keep a
    lock for as long as the work takes). A blocking acquire tries, then sleeps ``sleep``
    seconds between attempts (each delay jittered to [sleep/2, sleep], so that waiters
    spread out; None, the default: 10 ms doubling up to 200 ms, as ``retry_min`` and
    ``retry_max`` set), and gives up (returns False) as soon as the next attempt would come
    after ``blocking_timeout`` seconds (None: waits until acquired): with ``sleep=60,
    blocking_timeout=1`` a busy lock returns False at once, as redis-py's does. A fenced lock
    never sleeps past the moment its holder's key expires.

    ``thread_local=True`` (the default, as redis-py's): the token is seen only by the
    thread whose acquire took it, so another thread sharing this Lock object cannot
    release, extend or own it (``owned()`` is False there, ``token`` None, release raises
    LockError without asking Redis). Under redpat.asyncio, as redis-py's asyncio Lock, tasks
    of one event loop share a thread and so the token. ``raise_on_release_error=False``:
    leaving a ``with`` block whose lock was no longer held logs a warning instead of raising
    (LockNotOwnedError, or LockLostError after a failed renewal).

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
                 blocking_timeout: Optional[Seconds] = None, thread_local: bool = True,
                 raise_on_release_error: bool = True, *, fenced: bool = False,
                 retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
                 auto_renew: bool = False, max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
                 on_lost: Optional[LostCallback] = None, redlock: bool = False,
                 node_timeout: Optional[Seconds] = None) -> None:
        self._client = client
        self._x = client._x
        self.thread_local = bool(thread_local)
        self._owner: Optional[int] = None  # thread_local: the thread whose acquire took it
        if timeout is None:
            raise InvalidArgument("timeout must be a number of seconds (got None): redpat "
                                  "locks always expire; to hold one for as long as the work "
                                  "takes, use auto_renew=True or lock.using(fn)", _core.EINVAL)
        check_sleep(sleep)
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
        self.sleep = sleep
        self.raise_on_release_error = raise_on_release_error
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
        """What the handle knows: name, ttl (seconds), fenced, token (None when not held; with
        thread_local, in every thread but the acquiring one), fence."""
        info: LockInfo = self._x.peek(self._mutex, "lock.info", self._h)
        return info if self._visible() else info._replace(token=None)

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
        """The owner token of the last successful acquire (None when not holding; with
        thread_local, also in every thread but the one whose acquire took it)."""
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

    def _visible(self) -> bool:
        """Whether this thread sees the token (thread_local: only the acquiring thread)."""
        return not self.thread_local or self._owner in (None, threading.get_ident())

    def _check_visible(self, what: str) -> None:
        if not self._visible():
            # redis-py's words: the token is another thread's, so this one holds nothing
            raise LockNotOwnedError("Cannot %s lock %r: this thread does not hold it (another "
                                    "thread's acquire took it; thread_local=True)"
                                    % (what, self._name), _core.ENOTOWNED, self._name)

    @contextlib.contextmanager
    def _naming(self) -> Iterator[None]:
        """Every LockError out of an operation names the lock (lock_name, as redis-py)."""
        try:
            yield
        except LockError as exc:
            if exc.lock_name is None:
                exc.lock_name = self._name
            raise

    def _info_now(self) -> Optional[LockInfo]:
        """lock.info unless an operation is using the handle (then None), never waiting for
        one (a blocking acquire may hold it for long)."""
        mutex: Any = self._mutex  # sync: a threading.Lock; asyncio: no acquire (not needed)
        if not hasattr(mutex, "acquire"):  # asyncio: one thread, and lock.info never waits
            info: LockInfo = _core.call(None, "lock.info", self._h)
            return info
        if not mutex.acquire(False):
            return None
        try:
            info = _core.call(None, "lock.info", self._h)
            return info
        finally:
            mutex.release()

    def __repr__(self) -> str:
        """What the handle knows (no I/O): name, TTL, kind, and whether it holds the lock
        (never its token)."""
        info = self._info_now()
        if self._in_use:
            state = "in use by using()"
        elif info is None:
            state = "busy (an operation is running)"
        elif info.token is None:
            state = "not held"
        else:
            state = "held" if self._visible() else "held by another thread"
        kind = ("Redlock over %d servers " % self._nodes if self._nodes > 1
                else "fenced " if info is not None and info.fenced else "")
        return "<%s %r timeout=%gs %s%s%s>" % (
            type(self).__name__, self._name, self._ttl, kind, state,
            ", lost" if self._lost is not None else "")

    # -- operations ----------------------------------------------------------------------

    @acquire_order
    async def acquire(self, blocking: Optional[bool] = None,
                      blocking_timeout: Optional[Seconds] = None,
                      token: Optional[BytesLike] = None, *, sleep: Optional[Seconds] = None,
                      retry_min: Optional[Seconds] = None,
                      retry_max: Optional[Seconds] = None) -> bool:
        """Takes the lock: once (``blocking=False``), or trying again after each retry
        delay while the next attempt comes within ``blocking_timeout`` seconds (None: until
        acquired); it gives up as soon as the next attempt would come later. The delay is
        ``sleep`` seconds, each jittered to [sleep/2, sleep] (None: the Lock's; see Lock),
        never longer than a fenced lock's holder has left. ``token`` replaces the random
        owner token. Each argument left None is the Lock's. Returns whether the lock is now
        held. Positional order as redis-py's: under redpat.Client ``(sleep, blocking,
        blocking_timeout, token)``, under redpat.asyncio ``(blocking, blocking_timeout,
        token)`` with ``sleep`` a keyword."""
        check_blocking(blocking)
        check_sleep(sleep)
        if blocking is None and blocking_timeout is None:
            wait = self._wait
        else:
            wait = wait_arg(self.blocking if blocking is None else blocking,
                            self.blocking_timeout if blocking_timeout is None
                            else blocking_timeout)
        if sleep is not None:
            retry_min = sleep if retry_min is None else retry_min
            retry_max = sleep if retry_max is None else retry_max
        async with self._mutex:
            self._check_free()
            with self._naming():
                got = await self._x.call(
                    "lock.acquire", self._h, wait,
                    self._retry_min if retry_min is None else retry_min,
                    self._retry_max if retry_max is None else retry_max, token)
            acquired: bool = got.acquired
            self._validity, self._attempts = got.validity, got.attempts
            if acquired:
                self._owner = threading.get_ident()
                self._lost = None
                if self.auto_renew:
                    self._start_watchdog()
        return acquired

    async def release(self) -> None:
        """Releases the lock if this handle still holds it; LockNotOwnedError if it does
        not (expired, or taken by another owner, whose key is left alone; with
        thread_local, another thread's acquire took it). Cancelled (an asyncio task) with
        its request in flight, it still finds out whether the key went before the
        CancelledError goes on (asking Redis again, over a fresh connection, if the reply
        never came), so that ``token`` says what became of the lock: None once the lock is
        gone; kept if the request never went out, or asking again failed (the lock may
        then stay held up to its TTL)."""
        self._check_visible("release")
        if self._watchdog is not None:
            self._stop_watchdog()
        async with self._mutex:
            self._check_free()
            with self._naming():
                await self._x.call("lock.release", self._h)

    async def extend(self, additional_time: Seconds, replace_ttl: bool = False) -> bool:
        """Adds ``additional_time`` seconds to the remaining TTL (or sets the TTL to it with
        ``replace_ttl=True``). LockNotOwnedError if the lock is not held any more."""
        self._check_visible("extend")
        async with self._mutex:
            self._check_free()
            with self._naming():
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
        """Whether this handle holds the lock (with thread_local: this thread's acquire)."""
        if not self._visible():
            return False
        async with self._mutex:
            self._check_free()
            value: bool = (await self._x.call("lock.owned", self._h)).value
        return value

    async def remaining(self) -> LockRemaining:
        """How long the lock has left if this handle still holds it: ``owned`` and
        ``remaining`` (seconds; 0.0 when not owned). One script; the owner check is the
        server's. With thread_local, another thread's hold is not owned here."""
        if not self._visible():
            return LockRemaining(False, 0.0)
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
            raise LockError("Unable to acquire lock %r within the time specified" % self.name,
                            None, self._name)
        return returned[0]

    # -- context manager -----------------------------------------------------------------

    async def __aenter__(self) -> "Lock":
        if await self.acquire():
            return self
        raise LockError("Unable to acquire lock %r within the time specified" % self.name,
                        None, self._name)

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        lost = self._lost
        try:
            try:
                await self.release()
            except LockNotOwnedError:
                if lost is None:
                    raise
            if lost is not None:
                if lost.lock_name is None:
                    lost.lock_name = self._name
                raise lost
        except LockError as err:
            if self.raise_on_release_error:
                raise
            log.warning("redpat: lock %r was no longer held when the with block ended: %s",
                        self._name, err)

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
