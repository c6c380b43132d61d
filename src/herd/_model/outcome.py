"""One classification of failures, used everywhere a failure is judged: the driver (breaker,
outlier ejection, retries), `herd.fallback`, the front door and the server's web layer.

The rule the talk implies: a caller's own fault (a malformed request, a forbidden caller, a body
too large) would fail at any instance, so it never counts against an instance or a dependency,
is never retried and is never hidden behind a fallback.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from herd._model.errors import DeadlineExceeded, Overloaded, RemoteError, Unavailable
from herd._model.interface import ServiceError


class Blame(enum.Enum):
    """Whose fault a failed call is."""

    CALLER = "caller"
    """The request itself: it would fail at any instance. Not retried, not counted."""
    ANSWER = "answer"
    """A declared service error: the service answered as its interface says."""
    INSTANCE = "instance"
    """The instance that was asked: eject it, count it toward the breaker."""
    SERVICE = "service"
    """The service, not this instance (its own dependency failed): count it toward the breaker."""
    LOAD = "load"
    """Nobody's: the instance refused it for want of capacity before running it (overloaded,
    draining). Tried elsewhere inside the retry budget; neither ejects the instance nor counts
    toward the breaker: the adaptive limits answer load, not the breaker."""


class Retryable(enum.Enum):
    """When a failed attempt of this kind may be tried again on another instance (inside the
    retry budget and the deadline)."""

    NEVER = "never"
    """Another instance would answer the same, or the first may have done the work."""
    IDEMPOTENT = "idempotent"
    """Only for an idempotent method: the instance may have run it, another may still answer."""
    ALWAYS = "always"
    """The instance refused it before running it (unless its answer says not to retry)."""


class _Traits(NamedTuple):
    status: int
    blame: Blame
    retryable: Retryable


class ErrorKind(enum.StrEnum):
    """Every kind of error answer, named on the wire by its value, with what it means: its HTTP
    status (for proxies, logs and readers that see only the status), whose fault it is, and
    whether another instance may be tried.

    The server answers a failure with its kind; the driver raises the typed error of that kind;
    the breaker, outlier ejection and `herd.fallback` judge it by its blame.
    """

    BAD_REQUEST = "bad_request"
    FORBIDDEN = "forbidden"
    UNKNOWN_METHOD = "unknown_method"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    SERVICE_ERROR = "service_error"
    """A declared service error: an answer, not a failure."""
    INTERNAL = "internal"
    DEPENDENCY = "dependency"
    """The instance's own dependency failed: the service's fault, not this instance's."""
    OVERLOADED = "overloaded"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    BAD_RESULT = "bad_result"
    """The answer could not be read as the method's result (raised by the driver, never sent)."""

    @property
    def status(self) -> int:
        """The HTTP status an answer of this kind carries."""
        return _TRAITS[self].status

    @property
    def blame(self) -> Blame:
        """Whose fault a failure of this kind is."""
        return _TRAITS[self].blame

    @property
    def retryable(self) -> Retryable:
        """When another instance may be tried after a failure of this kind."""
        return _TRAITS[self].retryable

    @classmethod
    def parse(cls, name: str) -> ErrorKind | None:
        """The kind named `name` on the wire; None for a name this version does not know."""
        try:
            return cls(name)
        except ValueError:
            return None

    @classmethod
    def of_status(cls, status: int) -> ErrorKind:
        """What an error status stands for to a reader that sees only the status: the first
        kind that has it; else `INTERNAL` for a 5xx, `BAD_REQUEST` for a 4xx."""
        for kind in cls:
            if kind.status == status:
                return kind
        return cls.INTERNAL if status >= 500 else cls.BAD_REQUEST


_CALLER = (Blame.CALLER, Retryable.NEVER)
_TRAITS: dict[ErrorKind, _Traits] = {
    ErrorKind.BAD_REQUEST: _Traits(400, *_CALLER),
    ErrorKind.FORBIDDEN: _Traits(403, *_CALLER),
    ErrorKind.UNKNOWN_METHOD: _Traits(404, *_CALLER),
    ErrorKind.NOT_FOUND: _Traits(404, *_CALLER),
    ErrorKind.METHOD_NOT_ALLOWED: _Traits(405, *_CALLER),
    ErrorKind.REQUEST_TIMEOUT: _Traits(408, *_CALLER),
    ErrorKind.TOO_LARGE: _Traits(413, *_CALLER),
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: _Traits(415, *_CALLER),
    ErrorKind.SERVICE_ERROR: _Traits(422, Blame.ANSWER, Retryable.NEVER),
    ErrorKind.INTERNAL: _Traits(500, Blame.INSTANCE, Retryable.NEVER),
    ErrorKind.DEPENDENCY: _Traits(502, Blame.SERVICE, Retryable.NEVER),
    ErrorKind.OVERLOADED: _Traits(503, Blame.LOAD, Retryable.ALWAYS),
    ErrorKind.DEADLINE_EXCEEDED: _Traits(504, Blame.INSTANCE, Retryable.IDEMPOTENT),
    ErrorKind.BAD_RESULT: _Traits(502, Blame.SERVICE, Retryable.NEVER),
}


def blame_of_kind(kind: str) -> Blame:
    """Whose fault an error answer of this kind is (a kind this version does not know: the
    service's)."""
    known = ErrorKind.parse(kind)
    return known.blame if known is not None else Blame.SERVICE


def blame_of_status(status: int) -> Blame | None:
    """Whose fault an HTTP status is; None for a success."""
    if status < 400:
        return None
    return ErrorKind.of_status(status).blame


def blame(error: BaseException) -> Blame:
    """Whose fault an exception raised by a call is."""
    if isinstance(error, ServiceError):
        return Blame.ANSWER
    if isinstance(error, RemoteError):
        return blame_of_kind(error.kind)
    if isinstance(error, Overloaded):
        return Blame.LOAD
    if isinstance(error, Unavailable | DeadlineExceeded):
        return Blame.INSTANCE
    return Blame.CALLER


def is_caller_fault(error: BaseException) -> bool:
    """True for failures that are the caller's own (or answers): never a dependency's failure."""
    return blame(error) in (Blame.CALLER, Blame.ANSWER)


def is_server_failure(outcome: str) -> bool:
    """Whether a request outcome as a server's metrics label it (`ok`, `cancelled`, or an error
    kind's name) is a failure on the server's side (a 5xx answer)."""
    kind = ErrorKind.parse(outcome)
    return kind is not None and kind.status >= 500
