"""redpat: production-grade Redis patterns written once in C, for Python.

    import redpat
    client = redpat.Client("redis://127.0.0.1:6379/0", namespace="myapp")
    with client.lock("report", timeout=10.0):
        ...

    api = client.ratelimiter("api", "gcra", limit=100, window=60.0)
    decision = api.check("user:42")       # Decision(allowed=True, remaining=99, ...)

redpat.asyncio has the same Client, Lock and RateLimiter with async/await.
"""
from __future__ import annotations

from . import _core
from ._common import BytesLike, Seconds
from ._records import Decision, FenceResult, LockInfo, RateLimiterInfo
from ._sync.client import Client
from ._sync.lock import Lock
from ._sync.ratelimit import RateLimiter
from .errors import (ConnectionError, InvalidArgument, LockError, LockLostError,
                     LockNotOwnedError, OperationCancelled, OutOfMemoryError, ProtocolError,
                     RateLimited, RedpatError, ResponseError, StateError, TimeoutError)

__version__ = "0.1.0"
#: The version of the C core the extension was built from.
core_version: str = _core.VERSION

__all__ = [
    "Client", "Lock", "RateLimiter", "Decision", "FenceResult", "LockInfo", "RateLimiterInfo",
    "BytesLike", "Seconds", "RedpatError", "ConnectionError", "TimeoutError", "ResponseError",
    "ProtocolError", "InvalidArgument", "OutOfMemoryError", "StateError", "OperationCancelled",
    "LockError", "LockNotOwnedError", "LockLostError", "RateLimited", "__version__",
    "core_version",
]
