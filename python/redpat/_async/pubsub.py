"""Pub/Sub, written once for both flavours (the build makes the sync redpat/_sync/pubsub.py
from this source with unasync): redis-py's PubSub interface over the core's subscription and
its long-lived listen op, which keeps a connection of its own, reconnects after it drops
(re-subscribing everything) and says so with a message of type "reconnect"."""
from __future__ import annotations

import time
from types import TracebackType
from typing import (TYPE_CHECKING, Any, AsyncIterator, Dict, FrozenSet, Iterable, List,
                    Optional, Set, Type)

from .. import _core
from .._aio import Listener
from .._common import BytesLike, to_bytes
from ..errors import StateError

if TYPE_CHECKING:
    from .client import Client

#: A message as redis-py's PubSub hands it out: {"type", "pattern", "channel", "data"}.
Message = Dict[str, Any]

_CONFIRMATIONS = frozenset(("subscribe", "unsubscribe", "psubscribe", "punsubscribe"))
_DELIVERIES = frozenset(("message", "pmessage"))


def _names(values: Iterable[BytesLike], what: str) -> List[BytesLike]:
    if isinstance(values, (str, bytes, bytearray, memoryview)):
        # Iterating it would subscribe to each character.
        raise TypeError("%s must be an iterable of names, not one %s"
                        % (what, type(values).__name__))
    return list(values)


def as_message(record: Any) -> Message:
    """The core's message record (kind, channel, pattern, data, count) as redis-py's dict:
    ``data`` is the payload of a message / pmessage, the subscription count of a
    confirmation, None for "reconnect"; a p(un)subscribe names its pattern in ``channel``
    (as redis-py does) and ``pattern`` is set for a pmessage only."""
    kind = record.kind
    if kind in _DELIVERIES:
        data = record.data
    elif kind in _CONFIRMATIONS:
        data = record.count
    else:
        data = None
    if kind in ("psubscribe", "punsubscribe"):
        channel, pattern = record.pattern, None
    else:
        channel, pattern = record.channel, record.pattern if kind == "pmessage" else None
    return {"type": kind, "pattern": pattern, "channel": channel, "data": data}


class PubSub:
    """Subscriptions to channels and glob-style patterns, as redis-py's PubSub:

        p = client.pubsub()
        p.subscribe("news", "alerts")          # (await ... under redpat.asyncio)
        p.psubscribe("user.*")
        for message in p.listen():             # or: for message in p / async for
            if message["type"] == "message":
                handle(message["channel"], message["data"])

    Messages are dicts {"type", "pattern", "channel", "data"}: type "message" / "pmessage"
    (data: the payload), "subscribe" / "unsubscribe" / "psubscribe" / "punsubscribe" (the
    server's confirmations, data: how many subscriptions the connection has now;
    ``ignore_subscribe_messages`` skips them), and "reconnect": the connection dropped and
    everything was subscribed again on a new one, so messages published meanwhile were
    missed (a near-cache clears itself on it). Channel names and payloads are bytes
    (binary-safe); names may be given as str.

    A PubSub owns its connection (opened by the first subscribe or read, or connect()) and
    must be closed (close(), or use it as a context manager). Pub/Sub is fire and forget:
    a message reaches whoever is subscribed at that moment; use a stream when every message
    must be processed. Under redpat.Client one thread may read while others subscribe.
    """

    def __init__(self, client: "Client", *, ignore_subscribe_messages: bool = False,
                 channels: Iterable[BytesLike] = (),
                 patterns: Iterable[BytesLike] = ()) -> None:
        wanted = _names(channels, "channels")
        matched = _names(patterns, "patterns")
        self._client = client
        self._x = client._x
        self._h = _core.make("subscription.new", client._x.template, wanted, matched)
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self._channels: Set[bytes] = {to_bytes(c) for c in wanted}
        self._patterns: Set[bytes] = {to_bytes(p) for p in matched}
        self._listener: Optional[Listener] = None
        self._closed = False

    @property
    def channels(self) -> FrozenSet[bytes]:
        """The channels this PubSub wants (subscribed, or being subscribed)."""
        return frozenset(self._channels)

    @property
    def patterns(self) -> FrozenSet[bytes]:
        """The patterns this PubSub wants."""
        return frozenset(self._patterns)

    @property
    def subscribed(self) -> bool:
        """Whether it wants any channel or pattern."""
        return bool(self._channels or self._patterns)

    def _open(self) -> Listener:
        if self._closed:
            raise StateError("the PubSub is closed", _core.ESTATE)
        if self._listener is None:
            self._listener = self._x.listener("subscription.listen", self._h)
        return self._listener

    async def connect(self) -> None:
        """Opens the connection now and subscribes to what is wanted (the first subscribe
        or read does it otherwise)."""
        await self._open().flush()

    async def _change(self, op: str, channels: Optional[List[BytesLike]],
                      patterns: Optional[List[BytesLike]]) -> None:
        await self._open().change(op, self._h, channels, patterns)

    async def subscribe(self, *channels: BytesLike,
                        patterns: Optional[Iterable[BytesLike]] = None) -> None:
        """Subscribes to channels (and ``patterns``); the request is sent at once and the
        server's confirmations arrive as messages."""
        wanted = list(channels)
        matched = None if patterns is None else _names(patterns, "patterns")
        await self._change("subscription.subscribe", wanted, matched)
        self._channels.update(to_bytes(c) for c in wanted)
        self._patterns.update(to_bytes(p) for p in matched or ())

    async def psubscribe(self, *patterns: BytesLike) -> None:
        """Subscribes to glob-style patterns ("user.*")."""
        await self.subscribe(patterns=patterns)

    async def unsubscribe(self, *channels: BytesLike,
                          patterns: Optional[Iterable[BytesLike]] = None) -> None:
        """Unsubscribes from channels (and ``patterns``); with no argument at all, from
        everything: every channel and every pattern."""
        dropped = list(channels)
        unmatched = None if patterns is None else _names(patterns, "patterns")
        if not dropped and unmatched is None:
            await self._change("subscription.unsubscribe", None, None)
            self._channels.clear()
            self._patterns.clear()
            return
        if not dropped and not unmatched:
            return  # nothing named (the core would take "nothing" for everything)
        await self._change("subscription.unsubscribe", dropped, unmatched)
        self._channels.difference_update(to_bytes(c) for c in dropped)
        self._patterns.difference_update(to_bytes(p) for p in unmatched or ())

    async def punsubscribe(self, *patterns: BytesLike) -> None:
        """Unsubscribes from patterns; with none given, from every pattern (the channels
        stay)."""
        await self.unsubscribe(patterns=list(patterns) if patterns else list(self._patterns))

    async def get_message(self, ignore_subscribe_messages: bool = False,
                          timeout: Optional[float] = 0.0) -> Optional[Message]:
        """The next message, waiting up to ``timeout`` seconds for one (0: only what is
        there; None: for ever); None when none came. ``ignore_subscribe_messages`` (or the
        PubSub's own setting) skips the subscribe / unsubscribe confirmations."""
        ignore = ignore_subscribe_messages or self.ignore_subscribe_messages
        listener = self._open()
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            record = await listener.next(left)
            if record is None:
                return None
            if ignore and record.kind in _CONFIRMATIONS:
                continue
            return as_message(record)

    async def listen(self) -> AsyncIterator[Message]:
        """Every message, as they come, until the PubSub is closed (for under
        redpat.Client, async for under redpat.asyncio)."""
        while not self._closed:
            try:
                message = await self.get_message(timeout=None)
            except StateError:
                if self._closed:
                    return
                raise
            if message is not None:
                yield message

    def __aiter__(self) -> AsyncIterator[Message]:
        return self.listen()

    async def close(self) -> None:
        """Closes the connection; the PubSub cannot be used afterwards."""
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def __aenter__(self) -> "PubSub":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()

    def __repr__(self) -> str:
        return "<%s channels=%d patterns=%d%s>" % (type(self).__name__, len(self._channels),
                                                   len(self._patterns),
                                                   " closed" if self._closed else "")
