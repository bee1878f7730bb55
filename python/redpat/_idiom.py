"""THE idiom table: how Python users spell what the core's descriptor table describes.

The core names each op's arguments and result fields (``lock.new``'s ``ttl`` in ms); the
Python API follows redis-py and Python habits (``client.lock(name, timeout=...)`` in
seconds). Everything below is only a difference from the core's names, stated once: the
marshaller (bindings/redpat.i) names arguments in errors by ARG_NAMES (_records.py
registers them), the record classes are named by RECORDS, and the stub generator
(scripts/gen_pyi.py) and the matrix runners (tests/python/matrix_common.py) read the same
tables, so none of them can drift apart from the others.
"""
from __future__ import annotations

from typing import Dict, Tuple

#: op -> {core argument name: the Python API's name}. Durations are seconds in Python.
ARG_NAMES: Dict[str, Dict[str, str]] = {
    "lock.new": {"ttl": "timeout"},
    "redlock.new": {"ttl": "timeout"},
    "lock.acquire": {"wait": "blocking_timeout"},
    "lock.using": {"wait": "blocking_timeout"},
    "lock.extend": {"ms": "additional_time", "replace": "replace_ttl"},
    "client.command": {"argv": "*args"},
    "subscription.subscribe": {"channels": "*channels"},
    "subscription.unsubscribe": {"channels": "*channels"},
    "cache.invalidate_tags": {"tags": "*tags"},
}

#: op -> the class its records are made as (ops sharing a class have the same fields).
#: Other ops' records get a private class named after the op ("LockAcquire").
RECORDS: Dict[str, str] = {
    "ratelimit.check": "Decision",
    "ratelimit.multi": "Decision",
    "ratelimit.batch": "Decision",
    "fence.check": "FenceResult",
    "lock.info": "LockInfo",
    "lock.remaining": "LockRemaining",
    "ratelimit.info": "RateLimiterInfo",
    "cache.get": "CacheResult",
    "cache.get_or_load": "CacheResult",
    "cache.set": "CacheResult",
    "cache.write": "CacheResult",
    "cache.delete": "CacheResult",
    "cache.info": "CacheInfo",
    "cache.near_apply": "CacheNearApply",
}

#: op -> the class its EMITted messages are made as (others: "<Record>Message").
MESSAGES: Dict[str, str] = {"subscription.listen": "SubscriptionMessage"}

#: record class -> the field its truth value is (``if not limiter.check(s): ...``).
TRUTH: Dict[str, str] = {"Decision": "allowed"}

#: record class -> its docstring's first line (the fields' docs come from the core).
RECORD_DOCS: Dict[str, str] = {
    "Decision": "A rate limiter's answer for one request. Truthy when the request is allowed.",
    "FenceResult": "The outcome of a fence check: accepted is False for a stale (older) token.",
    "LockInfo": "What a lock handle knows (Lock.info()).",
    "LockRemaining": "How long a lock has left for its holder (Lock.remaining()).",
    "RateLimiterInfo": "A rate limiter's settings (RateLimiter.info()).",
    "SubscriptionMessage": "A message a subscription's listen op hands out (PubSub turns it "
                           "into redis-py's dict).",
    "CacheResult": "What a cache operation found or did (Cache.lookup, load, set, write).",
    "CacheInfo": "A cache's settings and its near-cache now (Cache.info()).",
    "CacheNearApply": "What a subscription message did to a near-cache (Cache.near_apply()).",
}

#: (op, field) -> the field's Python type, where the core's type does not say it all.
FIELD_TYPES: Dict[Tuple[str, str], str] = {
    ("lock.info", "token"): "Optional[bytes]",
    ("subscription.listen", "channel"): "Optional[bytes]",
    ("subscription.listen", "pattern"): "Optional[bytes]",
    ("subscription.listen", "data"): "Optional[bytes]",
    # a cache's value: what its serializer loads (bytes without one); None: none or a miss
    ("cache.get", "value"): "Any",
    ("cache.get_or_load", "value"): "Any",
    ("cache.set", "value"): "Any",
    ("cache.write", "value"): "Any",
    ("cache.delete", "value"): "Any",
}

#: How the public API performs each op, for the matrix runners: (on, name), on being
#: "client" (a method of the Client), "class" (the Client class itself) or "self" (a
#: method of the object the op acts on: a Lock, a RateLimiter). Ops not listed: the verb,
#: on "self". A "*" before an argument's Python name passes it as positional arguments.
METHODS: Dict[str, Tuple[str, str]] = {
    "client.new": ("class", "Client"),
    "client.command": ("client", "execute_command"),
    "lock.new": ("client", "lock"),
    "fence.check": ("client", "fence_check"),
    "ratelimit.new": ("client", "ratelimiter"),
    "ratelimit.multi": ("client", "ratelimit_multi"),
    "redlock.new": ("client", "redlock"),
    "pubsub.publish": ("client", "publish"),
    "subscription.new": ("client", "pubsub"),
    # A PubSub's listen op begins with its connection; its messages are get_message's.
    "subscription.listen": ("self", "connect"),
    "cache.new": ("client", "cache"),
    # get / get_or_load return the value: lookup / load return the record
    "cache.get": ("self", "lookup"),
    "cache.get_or_load": ("self", "load"),
}

#: op -> the result field that its method returns as a plain value, not a record (redis-py's
#: ``acquire() -> bool``); the op's other fields are attributes of the object it acted on
#: (``lock.fence``).
RETURNS: Dict[str, str] = {
    "lock.acquire": "acquired",
    "lock.locked": "value",
    "lock.owned": "value",
    "pubsub.publish": "receivers",
    "client.command": "reply",
    "cache.delete": "hit",
}

#: op -> the bool result field whose False its method raises as LockError instead of
#: returning (``lock.using`` returns what the user's function returned); its other fields
#: are attributes of the object it acted on (``lock.renewals``, ``lock.fence``).
REFUSALS: Dict[str, str] = {"lock.using": "acquired"}


def arg_name(op: str, arg: str) -> str:
    """The Python API's name for the core's argument arg of op."""
    return ARG_NAMES.get(op, {}).get(arg, arg).lstrip("*")


def record_name(op: str) -> str:
    """The class op's records are made as."""
    return RECORDS.get(op) or "".join(part.capitalize() for part in op.replace(".", "_").split("_"))


def message_name(op: str) -> str:
    """The class the messages op EMITs are made as."""
    return MESSAGES.get(op) or record_name(op) + "Message"
