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
from ._common import BytesLike, Decision, FenceResult, Seconds
from .client import Client
from .errors import (ConnectionError, InvalidArgument, LockError, LockLostError,
                     LockNotOwnedError, OutOfMemoryError, ProtocolError, RateLimited,
                     RedpatError, ResponseError, StateError, TimeoutError)
from .lock import Lock
from .ratelimit import RateLimiter

__version__ = "0.1.0"
#: The version of the C core the extension was built from.
core_version: str = _core.VERSION

__all__ = [
    "Client", "Lock", "RateLimiter", "Decision", "FenceResult", "BytesLike", "Seconds",
    "RedpatError", "ConnectionError", "TimeoutError", "ResponseError", "ProtocolError",
    "InvalidArgument", "OutOfMemoryError", "StateError", "LockError", "LockNotOwnedError",
    "LockLostError", "RateLimited", "__version__", "core_version",
]
