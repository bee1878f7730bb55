"""Caching, written once for both flavours (the build makes the sync redpat/_sync/cache.py
from this source with unasync): cache-aside with negative entries and versioned fills,
stampede protection (lock, stale-while-revalidate, XFetch), write-through, tag
invalidation and an in-process near-cache, over the core's cache ops (redpat/cache.h).

Only the Python idiom lives here: values go through a serializer (JSON by default), the
user's loader and writer are wrapped as the core's CALLs (called with the key as the user
gave it; what they raise is re-raised as raised), and a near-cache gets its invalidation
subscriber (a daemon thread under redpat.Client, a task under redpat.asyncio) that hands
every message of its subscription to the core. Every decision (hit, miss, who loads, what
is stale, whether a fill may be stored, what the near-cache may serve) is the core's."""
from __future__ import annotations

import functools
import logging
import threading
import weakref
from types import TracebackType
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple,
                    Type, TypeVar, Union, cast)

from .. import _core
from .._aio import Fn, Func, Worker, check_callback
from .._common import JSON, BytesLike, KeyFunc, Seconds, Serializer, tag_list
from .._records import CacheInfo, CacheNearApply, CacheResult
from ..errors import StateError
from .pubsub import PubSub

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("redpat")
# Ops performed by name (a str, not one of the stub's literals): untyped on purpose.
_call: Callable[..., Any] = _core.call

F = TypeVar("F", bound=Func)
#: An entry's tags: bytes or str each (at most 16).
Tags = Optional[Iterable[BytesLike]]
#: cached's tags: fixed ones, or a function of the decorated call's arguments.
TagsArg = Union[None, Iterable[BytesLike], Callable[..., Iterable[BytesLike]]]

#: The longest the near-cache's subscriber waits for a message before it looks whether it
#: was stopped (a Cache collected without close()), and its pause after a failure.
_SLICE = 0.5
_RETRY = 1.0
_DELIVERIES = ("message", "pmessage")


def _dump(serializer: Optional[Serializer], value: Any) -> Optional[bytes]:
    """A value as the bytes the core stores (None: "none", a negative entry)."""
    if value is None:
        return None
    if serializer is None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("a cache with serializer=None stores bytes, not %s (give it a "
                            "serializer, e.g. redpat.JSON)" % type(value).__name__)
        return bytes(value)
    data = serializer.dumps(value)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("the serializer's dumps() must return bytes, not %s"
                        % type(data).__name__)
    return bytes(data)


def _default_key(fn: Callable[..., Any]) -> KeyFunc:
    """cached's key when none is given: the function's name and the repr of the call's
    arguments ("app.users.fetch(42, full=True)")."""
    name = "%s.%s" % (getattr(fn, "__module__", "?"), getattr(fn, "__qualname__", repr(fn)))

    def key_of(*args: Any, **kwargs: Any) -> str:
        parts = [repr(a) for a in args] + ["%s=%r" % kv for kv in sorted(kwargs.items())]
        return "%s(%s)" % (name, ", ".join(parts))
    return key_of


class Cache:
    """A cache called ``name``: entries ``<namespace>:cache:{<name>:<key>}`` that live
    ``ttl`` seconds (always a TTL; ``jitter``: up to that many seconds more, at random, so
    entries written together do not expire together), filled from the loader you give on a
    miss (cache-aside) or by ``set`` / ``write``.

        users = client.cache("users", ttl=60.0)
        user = users.get_or_load("42", lambda key: db.fetch_user(int(key)))
        users.delete("42")                     # after the row changed

    Under redpat.asyncio each operation is awaited and loaders (and writers, and cached
    functions) are coroutine functions. A Cache may be shared by threads or tasks.

    Values: ``serializer`` turns them into bytes and back (``dumps(obj) -> bytes``,
    ``loads(bytes) -> obj``): redpat.JSON (compact UTF-8 JSON) by default; with
    ``serializer=None`` values are bytes, stored and returned as they are. None is never a
    value: it is "none" (no such row), cached as a negative entry for ``negative_ttl``
    seconds (0: not cached), told apart from a miss (``get`` returns None for it, the
    default for a miss; ``lookup(...).negative``).

    Versioned fills (``versioned=True``, the default): a value loaded after a miss is stored
    only if no ``set``, ``write`` or ``delete`` of the key came meanwhile (and the load took
    at most ``load_timeout`` seconds), so a reader that loaded the old row while a writer
    committed and invalidated never caches the old row: it gets it, the cache does not.

    ``stampede``: how concurrent misses of one key are kept from all loading. "lock" (the
    default): one caller loads, the others wait for its value (a dead loader's lock expires
    after ``lock_ttl`` seconds, and a waiter loads). "swr": an entry is fresh for ``ttl``
    and then served stale for ``stale`` more seconds (None: ttl) while one caller
    refreshes. "xfetch": a reader recomputes early, at random, the more likely the closer
    the entry is to its expiry and the longer it took to compute (``beta``: larger is
    earlier). "none": every caller that misses loads.

    Tags (``tags=[...]`` on a fill or a read): ``invalidate_tags(tag)`` misses every entry
    filled with it, at once, at the cost of one counter per tag (nothing grows with the
    entries; it works across a cluster's slots).

    Near-cache (``near_size`` > 0): up to that many entries kept in this process for at
    most ``near_ttl`` seconds, answering without a round trip (``lookup(...).near``), kept
    coherent by the invalidations every write publishes on ``cache.channel``: the Cache
    runs a subscriber of its own (a daemon thread under redpat.Client, a task under
    redpat.asyncio; started by the first operation, stopped by ``close()``), and serves
    from the near-cache only while that subscription is up (a reconnect or a missed
    invalidation clears it). ``near_subscriber=False``: no subscriber of its own; hand
    ``near_apply`` the messages of a subscription of yours instead (without them the
    near-cache never serves). A near hit's value is decoded once and the same object is
    handed out again while the near-cache holds the same bytes (as lua-resty-mlcache's L1
    does): treat what near hits return as read-only.
    """

    def __init__(self, client: "Client", name: BytesLike, ttl: Seconds = 60.0, *,
                 negative_ttl: Seconds = 30.0, jitter: Seconds = 0.0, stampede: str = "lock",
                 lock_ttl: Seconds = 5.0, stale: Optional[Seconds] = None, beta: float = 1.0,
                 load_timeout: Seconds = 60.0, versioned: bool = True, near_size: int = 0,
                 near_ttl: Seconds = 1.0, serializer: Optional[Serializer] = JSON,
                 near_subscriber: bool = True) -> None:
        if serializer is not None and not (callable(getattr(serializer, "dumps", None))
                                           and callable(getattr(serializer, "loads", None))):
            raise TypeError("serializer must have dumps(obj) -> bytes and loads(bytes) -> obj "
                            "(or be None: values are bytes), not %r" % (serializer,))
        self._client = client
        self._x = client._x
        self._h = _core.make("cache.new", client._x.template, name, ttl, negative_ttl, jitter,
                             stampede, lock_ttl, stale, beta, load_timeout, versioned,
                             near_size, near_ttl)
        self.serializer: Optional[Serializer] = serializer
        info = self.info()
        self.name: str = info.name.decode("utf-8", "replace")
        #: The channel its invalidations are published on (the near-caches' subscription).
        self.channel: bytes = info.channel
        self._near = info.near_size > 0 and bool(near_subscriber)
        self._near_size = info.near_size
        # A near hit's value decoded once, by key: (the bytes it came from, the object).
        self._decoded: Dict[BytesLike, Tuple[bytes, Any]] = {}
        self._sub: Optional[_Subscriber] = None
        self._starting = threading.Lock()
        self._closed = False
        # A Cache dropped without close() stops its subscriber (which holds no reference
        # to it): the finalizer holds the list of the one running.
        self._subs: List[_Subscriber] = []
        weakref.finalize(self, _stop_all, self._subs)

    # -- no I/O ----------------------------------------------------------------------------

    def info(self) -> CacheInfo:
        """The cache's settings (durations in seconds) and its near-cache now: name,
        channel, ttl, negative_ttl, jitter, stampede, lock_ttl, stale, beta, load_timeout,
        versioned, near_size, near_ttl, near_entries, near_armed (its subscriber vouches for
        it: it serves)."""
        info: CacheInfo = _core.call(None, "cache.info", self._h)
        return info

    def near_apply(self, kind: BytesLike, data: Optional[BytesLike] = None) -> CacheNearApply:
        """Hands the near-cache a message of a subscription to ``cache.channel`` (kind: the
        message's type, "subscribe", "message", "reconnect", ...; data: a message's
        payload): the subscribe confirmation arms it, an invalidation drops what it names,
        a reconnect (or a gap in a publisher's sequence) clears it. Only for a Cache made
        with ``near_subscriber=False`` (its own subscriber does it otherwise)."""
        applied: CacheNearApply = _core.call(None, "cache.near_apply", self._h, kind, data)
        return applied

    def __repr__(self) -> str:
        info = self.info()
        near = ""
        if info.near_size:
            near = " near=%d (%s, %d entries)" % (info.near_size,
                                                  "armed" if info.near_armed else "not armed",
                                                  info.near_entries)
        return "<%s %r ttl=%gs stampede=%s serializer=%r%s%s>" % (
            type(self).__name__, self.name, info.ttl, info.stampede, self.serializer, near,
            " closed" if self._closed else "")

    def _serve(self) -> None:
        """Before an operation: the near-cache's subscriber runs (started on first use;
        again once its event loop ended, or in a forked child)."""
        if not self._near or self._closed:
            return
        sub = self._sub
        if sub is not None and sub.alive:
            return
        with self._starting:  # (no await inside: one thread at a time, in either flavour)
            sub = self._sub
            if self._closed or (sub is not None and sub.alive):
                return
            if sub is not None:
                # Its subscriber is gone (its event loop ended; or this is a forked child,
                # where the parent's thread does not run): what it armed vouches for
                # nothing here until the new one's subscription is confirmed.
                _call(None, "cache.near_apply", self._h, "unsubscribe", None)
            sub = _Subscriber(self._h, PubSub(self._client, channels=[self.channel]),
                              self.name)
            sub.start()
            self._sub = sub
            self._subs[:] = [sub]

    def _peek(self, op: str, *args: Any) -> Optional[CacheResult]:
        """The near-cache's answer when it has one: the op DONE at its first step, run
        with no connection at all (no executor, no round trip); None when it needs Redis
        (the core says so: StateError, "needs a connection")."""
        if not self._near_size:
            return None
        try:
            found: CacheResult = _call(None, op, self._h, *args)
        except StateError:
            return None
        return found

    def _decode(self, key: BytesLike, found: CacheResult) -> Any:
        """found's value as an object. A near hit's is decoded once and handed out again
        while the near-cache holds the same bytes (as lua-resty-mlcache's L1 hands out its
        Lua values): the objects of near hits are shared, treat them as read-only."""
        raw = found.value
        if raw is None or self.serializer is None:
            return raw
        if not found.near:
            return self.serializer.loads(raw)
        if not isinstance(key, (str, bytes)):
            key = bytes(key)  # (a bytearray or memoryview key: not hashable as it is)
        memo = self._decoded.get(key)
        if memo is not None and memo[0] == raw:
            return memo[1]
        value = self.serializer.loads(raw)
        self._decoded[key] = (raw, value)
        if len(self._decoded) > self._near_size:
            try:  # the oldest goes (another thread may be at it too)
                del self._decoded[next(iter(self._decoded))]
            except (KeyError, RuntimeError, StopIteration):
                pass
        return value

    def _result(self, key: BytesLike, found: CacheResult) -> CacheResult:
        if found.value is None or self.serializer is None:
            return found
        return found._replace(value=self._decode(key, found))

    # -- operations ------------------------------------------------------------------------

    async def lookup(self, key: BytesLike, *, tags: Tags = None) -> CacheResult:
        """Reads ``key``: one round trip (a near-cache hit: none). The record: ``value``
        (None when negative or a miss), ``hit``, ``negative``, ``stale``, ``near``, ``ttl``
        (seconds left) and the rest of CacheResult. ``tags``: those the entry is expected
        to carry (an entry filled with an invalidated one is a miss)."""
        self._serve()
        wanted = tag_list(tags)
        found = self._peek("cache.get", key, wanted)
        if found is None:
            found = await self._x.call("cache.get", self._h, key, wanted)
        return self._result(key, found)

    async def get(self, key: BytesLike, default: Any = None, *, tags: Tags = None) -> Any:
        """The value of ``key``: None for a negative entry ("none" was cached), ``default``
        on a miss."""
        self._serve()
        wanted = tag_list(tags)
        found = self._peek("cache.get", key, wanted)
        if found is None:
            found = await self._x.call("cache.get", self._h, key, wanted)
        return self._decode(key, found) if found.hit else default

    async def load(self, key: BytesLike, loader: "Fn[Any]", *, tags: Tags = None,
                   random: Optional[float] = None) -> CacheResult:
        """get_or_load's record: ``loaded`` (this call ran the loader), ``stored`` (its
        value went to the cache: False after a write or delete meanwhile, a load past
        load_timeout, or a none not cached), ``waits`` (polls while another caller loaded),
        and the rest of CacheResult. ``random``: xfetch's uniform draw in (0, 1] (None: the
        core draws one)."""
        check_callback(loader, "the loader")
        self._serve()
        serializer = self.serializer

        async def call(*_: Any) -> Optional[bytes]:  # the core hands it the key's bytes
            return _dump(serializer, await loader(key))

        wanted = tag_list(tags)
        found = self._peek("cache.get_or_load", key, call, wanted, random)
        if found is None:
            found = await self._x.call("cache.get_or_load", self._h, key, call, wanted, random)
        return self._result(key, found)

    async def get_or_load(self, key: BytesLike, loader: "Fn[Any]", *, tags: Tags = None,
                          random: Optional[float] = None) -> Any:
        """The value of ``key``; on a miss (or as the stampede mode says) ``loader(key)``
        is called, with the key as given here, and what it returns is stored (None: a
        negative entry) and returned. Under redpat.asyncio the loader is a coroutine
        function. If the loader raises, nothing is stored, its lock is released and its
        exception goes on as it was raised; a cancelled task (or Ctrl-C) while it runs
        releases the lock as well."""
        return (await self.load(key, loader, tags=tags, random=random)).value

    async def set(self, key: BytesLike, value: Any, *, tags: Tags = None) -> CacheResult:
        """Stores ``value`` under ``key`` (None: a negative entry) with a fresh TTL, so that
        a load in flight will not overwrite it, and publishes the invalidation for the
        near-caches. Returns the record (``stored``)."""
        self._serve()
        found: CacheResult = await self._x.call("cache.set", self._h, key,
                                                _dump(self.serializer, value), tag_list(tags))
        return found._replace(value=value) if found.value is not None else found

    async def write(self, key: BytesLike, value: Any, writer: "Fn[Any]", *,
                    tags: Tags = None) -> CacheResult:
        """Write-through: ``writer(key, value)`` (your database write, with the key and
        value as given here) first, then the cache as ``set``. If the writer raises, the
        cache is untouched and its exception goes on as it was raised. Under redpat.asyncio
        the writer is a coroutine function. Returns the record (``stored``)."""
        check_callback(writer, "the writer")
        self._serve()

        async def call(*_: Any) -> None:  # the core hands it the key's and value's bytes
            await writer(key, value)

        found: CacheResult = await self._x.call("cache.write", self._h, key,
                                                _dump(self.serializer, value), call,
                                                tag_list(tags))
        return found._replace(value=value) if found.value is not None else found

    async def delete(self, key: BytesLike) -> bool:
        """Deletes ``key``'s entry (a load in flight will not store its value) and publishes
        the invalidation. Whether an entry existed."""
        self._serve()
        found: CacheResult = await self._x.call("cache.delete", self._h, key)
        return found.hit

    async def invalidate_tags(self, *tags: BytesLike) -> None:
        """Every entry filled with one of ``tags`` is a miss from now on (one counter bumped
        per tag; the invalidations are published for the near-caches)."""
        self._serve()
        await self._x.call("cache.invalidate_tags", self._h, list(tags))

    def cached(self, key: Optional[KeyFunc] = None, *, tags: TagsArg = None) -> Callable[[F], F]:
        """A decorator: the function's result is cached, the function being the loader.
        ``key(*args, **kwargs)`` gives the cache key of a call (default: the function's
        name and the repr of its arguments); ``tags``: the entry's tags, or a function of
        the call's arguments giving them. Under redpat.asyncio it decorates coroutine
        functions. ``fn.invalidate(*args, **kwargs)`` deletes a call's entry.

            @users.cached(key=lambda user_id: "user:%d" % user_id)
            def fetch_user(user_id: int) -> dict: ...
        """
        def decorate(fn: F) -> F:
            check_callback(fn, "a cached function")
            key_of = key if key is not None else _default_key(fn)

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async def load(*_: Any) -> Any:
                    return await fn(*args, **kwargs)
                entry_tags = tags(*args, **kwargs) if callable(tags) else tags
                return await self.get_or_load(key_of(*args, **kwargs), load, tags=entry_tags)

            async def invalidate(*args: Any, **kwargs: Any) -> bool:
                return await self.delete(key_of(*args, **kwargs))

            setattr(wrapper, "invalidate", invalidate)
            setattr(wrapper, "cache", self)
            return cast(F, wrapper)
        return decorate

    async def close(self) -> None:
        """Stops the near-cache's subscriber (the near-cache stops serving at once). The
        cache stays usable, without its near-cache."""
        self._closed = True
        sub, self._sub = self._sub, None
        self._subs[:] = []
        if sub is not None:
            await sub.close()

    async def __aenter__(self) -> "Cache":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()


class _Subscriber:
    """A near-cache's invalidation subscriber: a PubSub of its own on the cache's channel,
    read by a Worker (a daemon thread, or a task) that hands every message (the subscribe
    confirmation, invalidations, reconnects) to the core (cache.near_apply), which arms,
    drops and clears the near-cache by them. It holds the cache's handle, not the Cache."""

    def __init__(self, h: _core.Handle, pubsub: PubSub, name: str) -> None:
        self._h = h
        self._pubsub = pubsub
        self._name = name
        self._worker = Worker(self._run, "redpat-cache-near")
        # near_apply and the stop under one mutex: nothing re-arms once stopped
        self._mutex = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._worker.alive and not self._worker.stopped

    def start(self) -> None:
        self._worker.start()

    def _apply(self, kind: str, data: Optional[bytes]) -> None:
        with self._mutex:
            if kind == "unsubscribe" or not self._worker.stopped:
                _core.call(None, "cache.near_apply", self._h, kind, data)

    async def _run(self, worker: Worker) -> None:
        pubsub = self._pubsub
        try:
            while not worker.stopped:
                try:
                    message = await pubsub.get_message(timeout=_SLICE)
                except StateError:
                    return  # closed (Cache.close)
                except Exception as exc:  # the subscription failed: it vouches for nothing
                    self._apply("unsubscribe", None)
                    log.warning("redpat: the near-cache subscriber of cache %r failed "
                                "(trying again in %gs): %s", self._name, _RETRY, exc)
                    if not await worker.pause(_RETRY):
                        return
                    continue
                if message is not None:
                    kind = message["type"]
                    self._apply(kind, message["data"] if kind in _DELIVERIES else None)
        finally:
            self._apply("unsubscribe", None)  # before the subscription stops: not after
            await pubsub.close()

    def stop(self) -> None:
        """Stops the worker and disarms the near-cache (no I/O; the worker closes the
        subscription)."""
        try:
            self._worker.stop()
        except RuntimeError:  # an asyncio task of an event loop that is closed
            pass
        self._apply("unsubscribe", None)

    async def close(self) -> None:
        self.stop()
        await self._pubsub.close()


def _stop_all(subs: List[_Subscriber]) -> None:
    for sub in subs:
        sub.stop()
