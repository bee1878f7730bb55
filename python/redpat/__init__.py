"""redpat: production-grade Redis patterns written once in C, for Python.

    import redpat
    client = redpat.Client("redis://127.0.0.1:6379/0", namespace="myapp")
    with client.lock("report", timeout=10.0):
        ...

    api = client.ratelimiter("api", "gcra", limit=100, window=60.0)
    decision = api.check("user:42")       # Decision(allowed=True, remaining=99, ...)

    with redpat.Client(["redis://a:6379", "redis://b:6379", "redis://c:6379"]).redlock("job"):
        ...                               # a Redlock: a majority of independent servers

    lock = client.lock("report", timeout=10.0)
    rows = lock.using(build_report, day)  # held (and renewed) while build_report runs

    p = client.pubsub(); p.subscribe("news")
    for message in p.listen(): ...

    users = client.cache("users", ttl=60.0)
    user = users.get_or_load("42", load_user)  # load_user("42") on a miss, once for all

redpat.asyncio has the same Client, Cache, Lock, PubSub and RateLimiter with async/await.
"""
from __future__ import annotations

from . import _core
from ._common import JSON, BytesLike, JsonSerializer, Seconds, Serializer
from ._records import (CacheInfo, CacheResult, Decision, FenceResult, LockInfo, LockRenewal,
                       RateLimiterInfo)
from ._sync.cache import Cache
from ._sync.client import Client
from ._sync.lock import Lock
from ._sync.pubsub import PubSub
from ._sync.ratelimit import RateLimiter
from .errors import (AuthenticationError, CallbackError, ConnectionError, InvalidArgument,
                     LockError, LockLostError, LockNotOwnedError, OperationCancelled,
                     OutOfMemoryError, ProtocolError, RateLimited, RedpatError, ResponseError,
                     StateError, TimeoutError)

__version__ = "0.1.0"
#: The version of the C core the extension was built from.
core_version: str = _core.VERSION

__all__ = [
    "Client", "Cache", "Lock", "PubSub", "RateLimiter", "CacheInfo", "CacheResult", "Decision",
    "FenceResult", "LockInfo", "LockRenewal", "RateLimiterInfo", "JSON", "JsonSerializer",
    "Serializer", "BytesLike", "Seconds", "RedpatError", "ConnectionError",
    "AuthenticationError", "TimeoutError", "ResponseError", "ProtocolError", "InvalidArgument", "OutOfMemoryError",
    "StateError", "OperationCancelled", "CallbackError", "LockError", "LockNotOwnedError",
    "LockLostError", "RateLimited", "__version__", "core_version",
]
