"""One classification of failures, used everywhere a failure is judged: the driver (breaker,
outlier ejection, retries), `herd.fallback`, the front door and the server's web layer.

The rule the talk implies: a caller's own fault (a malformed request, a forbidden caller, a body
too large) would fail at any instance, so it never counts against an instance or a dependency,
is never retried and is never hidden behind a fallback.
"""

from __future__ import annotations

import enum

from herd._model.errors import DeadlineExceeded, RemoteError, Unavailable
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


#: Error-answer kinds that are the caller's fault.
CALLER_FAULT_KINDS = frozenset(
    {
        "bad_request",
        "forbidden",
        "unknown_method",
        "not_found",
        "method_not_allowed",
        "too_large",
        "unsupported_media_type",
        "request_timeout",
    }
)
#: Error-answer kinds that say the instance itself failed.
INSTANCE_FAILURE_KINDS = frozenset({"internal", "overloaded", "deadline_exceeded"})


def blame_of_kind(kind: str) -> Blame:
    """Whose fault an error answer of this kind is."""
    if kind in CALLER_FAULT_KINDS:
        return Blame.CALLER
    if kind == "service_error":
        return Blame.ANSWER
    if kind in INSTANCE_FAILURE_KINDS:
        return Blame.INSTANCE
    return Blame.SERVICE


def blame_of_status(status: int) -> Blame | None:
    """Whose fault an HTTP status is; None for a success."""
    if status < 400:
        return None
    if status < 500:
        return Blame.CALLER
    if status == 502:
        return Blame.SERVICE
    return Blame.INSTANCE


def blame(error: BaseException) -> Blame:
    """Whose fault an exception raised by a call is."""
    if isinstance(error, ServiceError):
        return Blame.ANSWER
    if isinstance(error, RemoteError):
        return blame_of_kind(error.kind)
    if isinstance(error, Unavailable | DeadlineExceeded):
        return Blame.INSTANCE
    return Blame.CALLER


def is_caller_fault(error: BaseException) -> bool:
    """True for failures that are the caller's own (or answers): never a dependency's failure."""
    return blame(error) in (Blame.CALLER, Blame.ANSWER)
