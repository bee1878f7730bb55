"""Conversions shared by the sync and asyncio layers: Python habits (seconds as floats,
str or bytes) to the core's (integer milliseconds, bytes). Only types and units are
converted here; whether a value is acceptable is the core's decision."""
from __future__ import annotations

import datetime
import math
from typing import NamedTuple, Optional, Tuple, Union

from . import _core
from .errors import InvalidArgument, RedpatError

#: What redpat accepts for names, tokens and resources: str is encoded as UTF-8.
BytesLike = Union[bytes, bytearray, memoryview, str]
#: Seconds: int, float or datetime.timedelta.
Seconds = Union[int, float, datetime.timedelta]

_MS_LIMIT = 1 << 62
DEFAULT_TTL = 30.0
DEFAULT_MAX_HOLD = 300.0


class Decision(NamedTuple):
    """A rate limiter's answer for one request. Truthy when the request is allowed.

    ``limit``: the limit that decided (the burst for token_bucket and gcra).
    ``remaining``: requests of cost 1 still allowed now.
    ``retry_after``: seconds until this request would be allowed (0.0 when allowed).
    ``reset_after``: seconds until the limiter is back to its full allowance.
    ``degraded``: Redis failed and the limiter's ``on_error`` policy decided; ``error`` is
    then the exception Redis failed with (what ``on_error="report"`` would have raised: a
    ConnectionError, TimeoutError, ResponseError, ...; its ``status`` names the failure),
    else None.
    ``refused_by``: for a multi-limit check, the index of the limit that refused; else -1.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    degraded: bool
    refused_by: int
    error: Optional["RedpatError"]

    def __bool__(self) -> bool:
        return self.allowed


# The extension builds decisions as this class.
_core.set_decision_class(Decision)


class FenceResult(NamedTuple):
    """The outcome of a fence check: accepted is False for a stale (older) token."""

    accepted: bool
    highest: int


def to_ms(value: Seconds, name: str) -> int:
    """Seconds -> integer milliseconds. NaN and infinities are refused naming the argument;
    a positive value below 1 ms becomes 1 ms (never silently 0)."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a number of seconds, not %s" % (name, type(value).__name__))
    if isinstance(value, int):
        ms = value * 1000
    else:
        if math.isnan(value) or math.isinf(value):
            raise InvalidArgument("%s must be a finite number of seconds, not %r" % (name, value),
                                  _core.EINVAL)
        ms = int(round(value * 1000.0))
        if ms == 0 and value > 0:
            ms = 1
    if not -_MS_LIMIT < ms < _MS_LIMIT:
        raise InvalidArgument("%s is out of range: %r" % (name, value), _core.EINVAL)
    return ms


def opt_ms(value: Optional[Seconds], name: str) -> Optional[int]:
    return None if value is None else to_ms(value, name)


def wait_ms(blocking: bool, blocking_timeout: Optional[Seconds]) -> int:
    """redis-py's (blocking, blocking_timeout) as the core's wait: 0 tries once."""
    if not blocking:
        return 0
    if blocking_timeout is None:
        return int(_core.WAIT_FOREVER)
    return to_ms(blocking_timeout, "blocking_timeout")


def retry_ms(sleep: Optional[Seconds], retry_min: Optional[Seconds],
             retry_max: Optional[Seconds]) -> Tuple[Optional[int], Optional[int]]:
    """Retry delays in ms (None: the core's default). redis-py's ``sleep`` is a fixed delay:
    it sets both bounds unless they are given."""
    lo = opt_ms(retry_min, "retry_min")
    hi = opt_ms(retry_max, "retry_max")
    if sleep is not None:
        s = to_ms(sleep, "sleep")
        lo = s if lo is None else lo
        hi = s if hi is None else hi
    return lo, hi


def encode_arg(value: object) -> BytesLike:
    """A raw command argument as bytes (str as UTF-8, numbers in decimal)."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return value
    if isinstance(value, bool):
        raise TypeError("command arguments must be bytes, str or numbers, not bool")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode()
    raise TypeError("command arguments must be bytes, str or numbers, not %s"
                    % type(value).__name__)
