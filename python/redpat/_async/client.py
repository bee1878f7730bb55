"""The Client, written once for both flavours (this asyncio source is the sync one too: the
build makes redpat/_sync/client.py from it with unasync, over the blocking executor).

A URL, a key namespace, timeouts and a small pool of connections, so one Client can be
shared by many threads (sync: the GIL is released while a call waits on Redis) or tasks
(asyncio: nothing blocks the loop). No I/O happens here: connections open on first use.
"""
from __future__ import annotations

import functools
import os
import re
from typing import (Any, Callable, Iterable, List, Optional, Sequence, Type, TypeVar, Union,
                    cast)

from .. import _core
from .._aio import Executor, Func
from .._common import (DEFAULT_MAX_HOLD, DEFAULT_MAX_REPLY_SIZE, DEFAULT_TTL, DEFAULT_URL, JSON,
                       BytesLike, CostArg, KeyFunc, Seconds, Serializer, encode_arg, to_bytes)
from .._records import Decision, FenceResult
from ..errors import InvalidArgument
from .cache import Cache
from .lock import LostCallback, Lock
from .pubsub import PubSub
from .ratelimit import RateLimiter

F = TypeVar("F", bound=Func)


#: A client's URL: one, or several (a list, or one string with ',' between them) for a
#: Redlock over independent servers.
Url = Union[str, Sequence[str]]


#: A file name for the tls_* options.
StrPath = Union[str, "os.PathLike[str]"]


def _path(p: Optional[StrPath]) -> Optional[str]:
    return None if p is None else os.fspath(p)


def hide_passwords(urls: str) -> str:
    """urls (','-joined) with each password replaced by ***, where the core finds it: the
    user info ends at the last '@' before the host's end (redis://) or before the path's
    first '/' (unix://); unix:// also takes ?password=."""
    out = []
    for url in urls.split(","):
        scheme, sep, rest = url.partition("://")
        if sep:
            unix = scheme.lower() == "unix"
            end = rest.find("/") if unix else min(
                [i for i in (rest.find(c) for c in "/?#") if i >= 0] or [len(rest)])
            at = rest.rfind("@", 0, end if end >= 0 else len(rest))
            if at >= 0 and ":" in rest[:at]:
                rest = rest[:rest.index(":")] + ":***" + rest[at:]
            if unix:
                rest = re.sub(r"([?&]password=)[^&]*", r"\1***", rest)
            url = scheme + sep + rest
        out.append(url)
    return ",".join(out)


def join_urls(url: Url) -> str:
    if isinstance(url, str):
        return url
    if isinstance(url, (bytes, bytearray, memoryview)):
        raise TypeError("url must be a str or a list of str, not %s" % type(url).__name__)
    urls = list(url)
    for i, one in enumerate(urls):
        if not isinstance(one, str):
            raise TypeError("url[%d] must be a str, not %s" % (i, type(one).__name__))
    return ",".join(urls)


class Client:
    """A redpat client.

    ``url``: ``redis://[[user]:password@]host[:port][/db]`` or
    ``unix://[[user]:password@]/path[?db=N][&password=...]``; or
    several of them (a list or tuple, or one string joining them with ``,``), up to 16:
    independent servers for ``redlock`` (every other pattern uses the first).
    ``namespace`` prefixes every key (``<namespace>:lock:{name}`` ...). Timeouts are in
    seconds; ``command_timeout`` bounds each exchange with a server (the handshake of a new
    connection, the request and its whole reply) on each server. ``max_reply_size`` (bytes,
    default 512 MiB, at least 1024) is the most memory one reply may take: a larger one (or
    a reply header announcing one) fails with ProtocolError naming max_reply_size.
    TLS: a ``rediss://`` URL (same syntax as ``redis://``) speaks TLS, verifying the
    server's certificate and name by default; ``tls_ca_file`` (PEM CAs to trust; default:
    the system's store), ``tls_cert_file`` + ``tls_key_file`` (a client certificate),
    ``tls_server_name`` (SNI and the name checked; default: the URL's host) and
    ``tls_verify=False`` (no check at all) configure it; they are refused without a
    ``rediss://`` URL.
    ``max_connections`` (None: unbounded, the default) bounds the connections the client
    has open to each server at once, its subscriptions' included; a call that finds them
    all in use waits up to ``command_timeout`` for one, then raises ConnectionError ("too
    many connections"). A lock acquire waiting between attempts holds none.
    Under redpat.asyncio every operation is awaited.
    """

    def __init__(self, url: Url = DEFAULT_URL, *, namespace: BytesLike = "redpat",
                 connect_timeout: Seconds = 2.0, command_timeout: Seconds = 2.0,
                 tcp_keepalive: bool = True, max_idle: int = 64,
                 max_reply_size: int = DEFAULT_MAX_REPLY_SIZE,
                 tls_ca_file: Optional[StrPath] = None, tls_cert_file: Optional[StrPath] = None,
                 tls_key_file: Optional[StrPath] = None, tls_server_name: Optional[str] = None,
                 tls_verify: bool = True, max_connections: Optional[int] = None) -> None:
        self.url: str = join_urls(url)
        tls = (_path(tls_ca_file), _path(tls_cert_file), _path(tls_key_file), tls_server_name,
               tls_verify)
        self._x = Executor(self.url, namespace, connect_timeout, command_timeout,
                           tcp_keepalive, max_idle, max_reply_size, tls=tls,
                           max_connections=max_connections)
        self._namespace = to_bytes(namespace)

    @classmethod
    def from_url(cls, url: Url, **kwargs: Any) -> "Client":
        """Same as Client(url, **kwargs), as redis-py spells it."""
        return cls(url, **kwargs)

    @property
    def namespace(self) -> bytes:
        return self._namespace

    def __repr__(self) -> str:
        """The URL (each password shown as ***) and the namespace."""
        return "<%s %s namespace=%r>" % (type(self).__name__, hide_passwords(self.url),
                                         self._namespace)

    async def close(self) -> None:
        """Closes idle connections. The client stays usable (it reconnects on use)."""
        await self._x.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- locks ---------------------------------------------------------------------------

    def lock(self, name: BytesLike, timeout: Seconds = DEFAULT_TTL,
             sleep: Optional[Seconds] = None, blocking: bool = True,
             blocking_timeout: Optional[Seconds] = None,
             lock_class: Optional[Type[Lock]] = None, thread_local: bool = True,
             raise_on_release_error: bool = True, *, fenced: bool = False,
             retry_min: Optional[Seconds] = None, retry_max: Optional[Seconds] = None,
             auto_renew: bool = False, max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
             on_lost: Optional[LostCallback] = None) -> Lock:
        """A Lock handle for ``name`` (see Lock), with redis-py's arguments in its order.
        No I/O; its options are checked here. ``lock_class``: the class to make instead of
        Lock (a subclass of it; called as Lock is, with keyword arguments)."""
        return (Lock if lock_class is None else lock_class)(
            self, name, timeout=timeout, sleep=sleep, blocking=blocking,
            blocking_timeout=blocking_timeout, thread_local=thread_local,
            raise_on_release_error=raise_on_release_error, fenced=fenced,
            retry_min=retry_min, retry_max=retry_max, auto_renew=auto_renew,
            max_hold=max_hold, on_lost=on_lost)

    def redlock(self, name: BytesLike, timeout: Seconds = DEFAULT_TTL,
                sleep: Optional[Seconds] = None, blocking: bool = True,
                blocking_timeout: Optional[Seconds] = None,
                lock_class: Optional[Type[Lock]] = None, thread_local: bool = True,
                raise_on_release_error: bool = True, *,
                node_timeout: Optional[Seconds] = None, retry_min: Optional[Seconds] = None,
                retry_max: Optional[Seconds] = None, auto_renew: bool = False,
                max_hold: Optional[Seconds] = DEFAULT_MAX_HOLD,
                on_lost: Optional[LostCallback] = None) -> Lock:
        """A Redlock called ``name`` over every server of this client's URL list (an odd
        number, at least 3, of independent servers): the same Lock API, each operation one
        parallel round to all of them. An acquire holds when a majority took it and
        ``timeout`` less the time it took and the clock drift (1% + 2 ms) is still left
        (``lock.validity``); it returns as soon as a majority has answered, so a slow or
        stopped server delays nothing while a majority is up, and each server gets at most
        ``node_timeout`` seconds (default 0.05) per round. A failed acquire releases what
        it took. Release and extend go to every server; extend needs a majority again.

        What Redlock does not promise: it assumes bounded clock drift and pauses; a process
        pause (GC, swap) or a clock jump longer than the validity, or a server restarting
        without its data (no fsync), can let two holders overlap. Where correctness depends
        on it, use a fenced single-server lock (``client.lock(name, fenced=True)``) and have
        the storage check the fence.
        """
        return (Lock if lock_class is None else lock_class)(
            self, name, timeout=timeout, sleep=sleep, blocking=blocking,
            blocking_timeout=blocking_timeout, thread_local=thread_local,
            raise_on_release_error=raise_on_release_error, retry_min=retry_min,
            retry_max=retry_max, auto_renew=auto_renew, max_hold=max_hold, on_lost=on_lost,
            redlock=True, node_timeout=node_timeout)

    def locked(self, name: BytesLike, **lock_options: Any) -> Callable[[F], F]:
        """A decorator: each call of the function runs holding the lock ``name`` (a fresh
        Lock per call, so threads or tasks may call it concurrently). ``lock_options`` are
        those of Client.lock; LockError if the lock cannot be acquired.

            @client.locked("nightly-report", timeout=60.0, blocking_timeout=5.0)
            def report() -> None: ...      # (async def under redpat.asyncio)
        """
        self.lock(name, **lock_options)  # refuse bad options now, not at the first call

        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self.lock(name, **lock_options):
                    return await fn(*args, **kwargs)
            return cast(F, wrapper)
        return decorate

    async def fence_check(self, resource: BytesLike, token: int) -> FenceResult:
        """For storage that receives fenced writes: records ``token`` as the highest seen
        for ``resource`` unless a higher one was seen. ``accepted`` False means the writer
        is stale and its write must be refused."""
        result: FenceResult = await self._x.call("fence.check", self._x.template, resource,
                                                 token)
        return result

    # -- rate limiters -------------------------------------------------------------------

    def ratelimiter(self, name: BytesLike, algorithm: str = "gcra", *, limit: int,
                    window: Seconds, burst: Optional[int] = None,
                    on_error: str = "report") -> RateLimiter:
        """A RateLimiter: ``limit`` requests per ``window`` seconds per subject (see
        RateLimiter). No I/O; every option is checked here.

            api = client.ratelimiter("api", "gcra", limit=100, window=60.0)
            if not api.check(user_id):     # (await ... under redpat.asyncio)
                ...  # refused: decision.retry_after seconds to wait
        """
        return RateLimiter(self, name, algorithm, limit=limit, window=window, burst=burst,
                           on_error=on_error)

    async def ratelimit_multi(self, limiters: Sequence[RateLimiter], subject: BytesLike,
                              cost: int = 1) -> Decision:
        """Checks ``subject`` against several limiters of this client at once (e.g. 10 per
        second and 1000 per hour), all-or-nothing in one round trip: allowed only if every
        limiter allows, and then ``cost`` is consumed from all; a refusal consumes nothing
        and ``decision.refused_by`` is the index of the limiter that refused. The strictest
        ``on_error`` of the limiters applies (fail_closed > report > fail_open)."""
        handles = []
        for i, limiter in enumerate(limiters):
            if not isinstance(limiter, RateLimiter):
                raise TypeError("limiters[%d] is not a RateLimiter: %r" % (i, limiter))
            if limiter._client is not self:
                # It would run on this Client's connections (maybe another server).
                raise InvalidArgument("limiters[%d] was made from another Client" % i,
                                      _core.EINVAL)
            handles.append(limiter._h)
        decision: Decision = await self._x.call("ratelimit.multi", handles, subject, cost)
        return decision

    def ratelimited(self, name: BytesLike, algorithm: str = "gcra", *,
                    key: Optional[KeyFunc] = None, cost: CostArg = 1,
                    **limiter_options: Any) -> Callable[[F], F]:
        """A decorator with a limiter of its own: ``client.ratelimiter(name, algorithm,
        **limiter_options).limited(key, cost)``. Calls over the limit raise RateLimited.

            @client.ratelimited("login", "sliding_log", limit=5, window=60.0,
                                key=lambda username, password: username)
            def login(username: str, password: str) -> bool: ...
        """
        return self.ratelimiter(name, algorithm, **limiter_options).limited(key, cost)

    # -- caches ----------------------------------------------------------------------------

    def cache(self, name: BytesLike, ttl: Seconds = 60.0, *, negative_ttl: Seconds = 30.0,
              jitter: Seconds = 0.0, stampede: str = "lock", lock_ttl: Seconds = 5.0,
              stale: Optional[Seconds] = None, beta: float = 1.0, load_timeout: Seconds = 60.0,
              versioned: bool = True, near_size: int = 0, near_ttl: Seconds = 1.0,
              serializer: Optional[Serializer] = JSON, near_subscriber: bool = True) -> Cache:
        """A Cache called ``name`` whose entries live ``ttl`` seconds (see Cache for every
        option). No I/O; every option is checked here. With ``near_size`` > 0 it keeps an
        invalidation subscriber of its own from its first operation on: close() it.

            users = client.cache("users", ttl=60.0)
            user = users.get_or_load("42", load_user)  # (await ... under redpat.asyncio)
        """
        return Cache(self, name, ttl, negative_ttl=negative_ttl, jitter=jitter,
                     stampede=stampede, lock_ttl=lock_ttl, stale=stale, beta=beta,
                     load_timeout=load_timeout, versioned=versioned, near_size=near_size,
                     near_ttl=near_ttl, serializer=serializer, near_subscriber=near_subscriber)

    # -- pub/sub ---------------------------------------------------------------------------

    async def publish(self, channel: BytesLike, message: BytesLike) -> int:
        """Publishes ``message`` on ``channel`` (fire and forget: only those subscribed at
        that moment get it); returns how many subscribers received it."""
        receivers: int = (await self._x.call("pubsub.publish", self._x.template, channel,
                                             message)).receivers
        return receivers

    def pubsub(self, *, ignore_subscribe_messages: bool = False,
               channels: Iterable[BytesLike] = (),
               patterns: Iterable[BytesLike] = ()) -> PubSub:
        """A PubSub (see there) with a connection of its own, opened when it first
        subscribes or reads. ``channels`` and ``patterns``: subscribe to these from the
        start."""
        return PubSub(self, ignore_subscribe_messages=ignore_subscribe_messages,
                      channels=channels, patterns=patterns)

    # -- raw commands --------------------------------------------------------------------

    async def execute_command(self, *args: object, key: Optional[BytesLike] = None) -> Any:
        """A raw Redis command. Replies: bytes (bulk and status), int, None, list; an error
        reply raises ResponseError (inside an array it is returned as an instance).

        On a cluster (``redis+cluster://``) the command goes to the master of its keys'
        hash slot; one whose keys span slots is refused (InvalidArgument, before any I/O),
        and so is one without keys (DBSIZE, CONFIG, PING...) unless ``key`` says where it
        goes: the master of that key's slot (``key="{orders}"``). No effect on one node."""
        argv: List[BytesLike] = [encode_arg(a) for a in args]
        if key is None:
            reply = (await self._x.call("client.command", self._x.template, argv)).reply
        else:
            reply = (await self._x.call("client.command", self._x.template, argv,
                                        key)).reply
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def ping(self) -> bool:
        """PING; True when Redis answers PONG. On a cluster it asks the master of hash slot
        0 (the key "", where the client's pub/sub goes too)."""
        return bool(await self.execute_command("PING", key="") == b"PONG")
