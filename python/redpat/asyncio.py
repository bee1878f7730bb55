"""redpat for asyncio: the same Client, Cache, Lock, PubSub and RateLimiter API with
async/await.

The classes are redpat's one source of each pattern (redpat/_async), run over the asyncio
executor (redpat/_aio.py): it drives the core's operations itself over its own asyncio
stream connections, with no thread pool, so nothing blocks the event loop.
"""
from __future__ import annotations

from ._async.cache import Cache
from ._async.client import Client
from ._async.lock import Lock
from ._async.pubsub import PubSub
from ._async.ratelimit import RateLimiter
from ._common import JSON
from ._records import CacheInfo, CacheResult, Decision, FenceResult, LockInfo, RateLimiterInfo

__all__ = ["Client", "Cache", "Lock", "PubSub", "RateLimiter", "CacheInfo", "CacheResult",
           "Decision", "FenceResult", "LockInfo", "RateLimiterInfo", "JSON"]
