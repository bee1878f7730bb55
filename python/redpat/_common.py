"""What the sync and asyncio flavours share beyond the pattern classes: argument types, the
defaults of the Python API, and small helpers of its idioms. Values go to the core as given:
the marshaller converts them (seconds to ms, str to UTF-8) and the core checks them."""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable, Iterable, List, Optional, Protocol, Tuple, Union

from . import _core
from .errors import InvalidArgument

#: What redpat accepts for names, tokens, subjects and resources: str is encoded as UTF-8.
BytesLike = Union[bytes, bytearray, memoryview, str]
#: Seconds: int, float or datetime.timedelta.
Seconds = Union[int, float, datetime.timedelta]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_TTL = 30.0
DEFAULT_MAX_HOLD = 300.0
#: The most memory one reply may take (bytes): Redis' own proto-max-bulk-len.
DEFAULT_MAX_REPLY_SIZE = 512 * 1024 * 1024
#: A Client's TLS options as the executors get them, in client.new's order: tls_ca_file,
#: tls_cert_file, tls_key_file, tls_server_name, tls_verify.
TlsConfig = Tuple[Optional[str], Optional[str], Optional[str], Optional[str], bool]
NO_TLS: TlsConfig = (None, None, None, None, True)
#: A decorator's subject: a function of the decorated call's arguments.
KeyFunc = Callable[..., BytesLike]
#: A decorator's cost: a fixed one, or a function of the decorated call's arguments.
CostArg = Union[int, Callable[..., int]]


def to_bytes(value: BytesLike) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def seconds(value: Seconds) -> float:
    """Seconds as a float, for what the Python layer times itself (the watchdog, asyncio's
    socket timeouts); the core's durations go through the marshaller."""
    return value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)


def wait_arg(blocking: bool, blocking_timeout: Optional[Seconds]) -> Seconds:
    """redis-py's (blocking, blocking_timeout) as lock.acquire's wait: 0 tries once, None
    waits for ever."""
    if not blocking:
        return 0
    return _core.FOREVER if blocking_timeout is None else blocking_timeout


def check_max_hold(max_hold: Optional[Seconds]) -> Optional[float]:
    """A Lock's max_hold as seconds (None: no cap), checked when the Lock is made rather
    than at the first renewal (the core plans renewals by it: lock.renewal)."""
    if max_hold is None:
        return None
    if isinstance(max_hold, bool) or not isinstance(max_hold, (int, float, datetime.timedelta)):
        raise TypeError("max_hold must be a number of seconds, not %s" % type(max_hold).__name__)
    value = seconds(max_hold)
    if not value > 0:
        raise InvalidArgument("max_hold must be > 0 seconds (got %g)" % value, _core.EINVAL)
    return value


def check_max_connections(value: Optional[int]) -> Optional[int]:
    """A Client's max_connections: None (unbounded) or an int >= 1, checked before any I/O."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("max_connections must be an int or None, not %s" % type(value).__name__)
    if value < 1:
        raise InvalidArgument("max_connections must be >= 1 (got %d)" % value, _core.EINVAL)
    return value


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


def subject_list(subjects: Iterable[BytesLike]) -> List[BytesLike]:
    if isinstance(subjects, (str, bytes, bytearray, memoryview)):
        # Iterating it would check each character as a subject of its own.
        raise TypeError("subjects must be an iterable of subjects, not one %s"
                        % type(subjects).__name__)
    return list(subjects)


def call_key(fn: Callable[..., Any], key: Optional[KeyFunc]) -> KeyFunc:
    """A decorator's key function: key, or one subject for all calls of fn (its name)."""
    if key is not None:
        return key
    subject = ("%s.%s" % (getattr(fn, "__module__", "?"),
                          getattr(fn, "__qualname__", repr(fn)))).encode()
    return lambda *args, **kwargs: subject


def subject_and_cost(key: KeyFunc, cost: CostArg, args: Any,
                     kwargs: Any) -> Tuple[BytesLike, int]:
    return key(*args, **kwargs), (cost(*args, **kwargs) if callable(cost) else cost)


class Serializer(Protocol):
    """How a Cache turns values into the bytes it stores, and back: any object with these
    two methods (redpat.JSON, the default; pickle and msgpack modules fit as they are)."""

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonSerializer:
    """Values as compact JSON in UTF-8 (``separators=(",", ":")``, non-ASCII kept as is):
    what a Cache stores by default (redpat.JSON). Tuples come back as lists, dict keys as
    str, as JSON has them."""

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "redpat.JSON"


#: The default serializer of a Cache: compact JSON in UTF-8.
JSON = JsonSerializer()


def tag_list(tags: Optional[Iterable[BytesLike]]) -> Optional[List[BytesLike]]:
    """A cache op's tags as the core takes them (None: none given)."""
    if tags is None:
        return None
    if isinstance(tags, (str, bytes, bytearray, memoryview)):
        # Iterating it would make a tag of each character.
        raise TypeError("tags must be an iterable of tags, not one %s" % type(tags).__name__)
    return list(tags)
