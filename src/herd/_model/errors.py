"""herd's exception hierarchy. Every error herd raises is a `HerdError`."""

from __future__ import annotations


class HerdError(Exception):
    """Root of every error herd raises.

    Errors raised by a driver name the dependency they came from in `service` and `method`.
    """

    service: str | None = None
    method: str | None = None


class DeadlineExceeded(HerdError, TimeoutError):
    """The call's deadline passed, or too little of it was left for a useful attempt."""


class Unavailable(HerdError):
    """No instance could answer: none known, connections refused, or every attempt failed."""


class Overloaded(Unavailable):
    """The server shed the request (in-flight limit, draining, or too many retries)."""


class CircuitOpen(Unavailable):
    """The dependency's circuit breaker is open: nothing was sent."""


class Rejected(Unavailable):
    """The dependency's bulkhead is full: nothing was sent."""


class RemoteError(HerdError):
    """The server failed in a way the interface does not declare.

    Carries which service and method failed and the server's message, never a bare HTTP status.
    """

    def __init__(self, service: str, method: str, message: str, kind: str = "internal") -> None:
        super().__init__(f"{service}.{method}: {kind}: {message}")
        self.service = service
        self.method = method
        self.message = message
        self.kind = kind

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.service, self.method, self.message, self.kind))


class BadRequest(RemoteError):
    """The server refused the request as malformed (types, fields, size, headers)."""


class Forbidden(RemoteError):
    """The server's allow rules do not let this caller call it."""


class ConfigurationError(HerdError, ValueError):
    """An interface, policy or app description is invalid."""
