"""redpat's exceptions: one hierarchy, mapped from the core's status codes in one table.

    RedpatError
    +-- ConnectionError      (also builtins.ConnectionError) connect/read/write failed
    |   +-- AuthenticationError  the server refused the password (WRONGPASS, NOAUTH, ...)
    +-- TimeoutError         (also builtins.TimeoutError)    connect or command timeout
    +-- ResponseError        Redis answered with an error reply (WRONGTYPE, OOM, ...)
    +-- ProtocolError        a reply could not be parsed or had an unexpected shape
    +-- InvalidArgument      (also ValueError) an argument was refused before any I/O
    +-- OutOfMemoryError     (also MemoryError) the allocator failed
    +-- StateError           an API was used out of order
    +-- OperationCancelled   the driver cancelled an op (a signal handler raised: that
    |                        exception, e.g. KeyboardInterrupt, is what the caller sees)
    +-- CallbackError        a user callback of an op failed (the callback's own exception
    |                        is what the caller sees: this one only stands in for it)
    +-- LockError            a lock could not be acquired (context manager, using) or was
    |   |                    misused; ``lock_name`` is the lock's name (bytes)
    |   +-- LockNotOwnedError  release/extend of a lock this handle does not hold
    |   +-- LockLostError      a renewal failed (watchdog, using): the lock may be gone
    +-- RateLimited          a rate-limited function was called over its limit (decorators)

Every exception raised for a core status carries ``code`` (the rp_status number) and
``status`` (its stable name: "not_owned", "timeout", ...). RateLimited is no failure of
redpat's (its code is None): a refused check raises it only where a decorator has no other
way to say so; RateLimiter.check itself returns the refusal as a Decision.
"""
from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type

from . import _core

if TYPE_CHECKING:
    from ._records import Decision

__all__ = [
    "RedpatError", "ConnectionError", "AuthenticationError", "TimeoutError", "ResponseError",
    "ProtocolError", "InvalidArgument", "OutOfMemoryError", "StateError", "OperationCancelled", "CallbackError",
    "LockError",
    "LockNotOwnedError", "LockLostError", "RateLimited", "error_for",
]


class RedpatError(Exception):
    """Base class of every redpat error."""

    code: Optional[int]

    def __init__(self, message: str = "", code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.message, self.code))

    @property
    def status(self) -> str:
        """The core's name for this error's status ("not_owned", ...), "" if none."""
        return _core.status_name(self.code) if self.code is not None else ""


class ConnectionError(RedpatError, builtins.ConnectionError):
    """Connecting to Redis, or writing or reading, failed; the connection was dropped."""


class AuthenticationError(ConnectionError):
    """The server refused the connection's credentials (a wrong password or user, a
    password the server does not require, or none where it requires one), as redis-py's
    AuthenticationError; the message is Redis' own."""


class TimeoutError(RedpatError, builtins.TimeoutError):
    """The connect or command timeout ran out; the connection was dropped."""


class ResponseError(RedpatError):
    """Redis answered with an error reply."""


class ProtocolError(RedpatError):
    """A reply could not be parsed or had an unexpected shape."""


class InvalidArgument(RedpatError, ValueError):
    """An argument was refused before any I/O; the message names it."""


class OutOfMemoryError(RedpatError, MemoryError):
    """The allocator returned NULL."""


class StateError(RedpatError):
    """An API was called out of order."""


class OperationCancelled(RedpatError):
    """The driver cancelled an op before it ended; no request was left in flight."""


class CallbackError(RedpatError):
    """A user callback of an op (lock.using's function) failed. The callback's own
    exception is re-raised in its place wherever there is one."""


class LockError(RedpatError):
    """A lock could not be acquired where it had to be, or was misused. ``lock_name``: the
    name of the lock (bytes; None when raised outside a Lock), as redis-py's."""

    def __init__(self, message: str = "", code: Optional[int] = None,
                 lock_name: Optional[bytes] = None) -> None:
        super().__init__(message, code)
        self.lock_name = lock_name

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.message, self.code, self.lock_name))


class LockNotOwnedError(LockError):
    """Release or extend of a lock this handle does not hold (any more)."""


class LockLostError(LockError):
    """A renewal of a held lock failed (the auto-renew watchdog's, or using()'s while its
    function ran), or the lock had expired by its release: it may have been lost, and
    another holder may have had it meanwhile."""


class RateLimited(RedpatError):
    """A call refused by a rate limiter (raised by the ``limited`` / ``ratelimited``
    decorators). ``decision`` is the limiter's Decision, ``retry_after`` its seconds to wait,
    ``subject`` the key the call was counted under."""

    def __init__(self, decision: "Decision", subject: Optional[bytes] = None,
                 message: Optional[str] = None) -> None:
        if message is None:
            if decision.degraded:
                message = ("rate limited: Redis failed and the limiter fails closed (%s)"
                           % decision.error)
            else:
                message = ("rate limited (%d per window): retry after %.3fs"
                           % (decision.limit, decision.retry_after))
        super().__init__(message, None)
        self.decision = decision
        self.subject = subject

    @property
    def retry_after(self) -> float:
        return self.decision.retry_after

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.decision, self.subject, self.message))


# THE table: core status code -> exception class. The extension raises through it.
_BY_STATUS: Dict[int, Type[RedpatError]] = {
    _core.EINVAL: InvalidArgument,
    _core.ENOMEM: OutOfMemoryError,
    _core.ETRANSPORT: ConnectionError,
    _core.ETIMEOUT: TimeoutError,
    _core.EPROTOCOL: ProtocolError,
    _core.EREPLY: ResponseError,
    _core.ENOTOWNED: LockNotOwnedError,
    _core.ESTATE: StateError,
    _core.ECANCELED: OperationCancelled,
    _core.ECALLBACK: CallbackError,
    _core.ELOST: LockLostError,
    _core.EAUTH: AuthenticationError,
}

_core.set_error_classes(RedpatError, _BY_STATUS)


def error_for(code: int, message: str) -> RedpatError:
    """The exception for a core status code (used by drivers that fail an I/O themselves)."""
    return _BY_STATUS.get(code, RedpatError)(message, code)
