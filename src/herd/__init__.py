"""herd: build systems out of small, resilient services.

A service's interface is a typed Python class; herd derives the server and the driver from it.
Every call carries a deadline that telescopes through the hops, is retried once on a different
instance inside a retry budget, and is guarded by a circuit breaker and a bulkhead.
"""

from __future__ import annotations

from typing import Any

from herd._client.balance import EjectionPolicy
from herd._client.breaker import BreakerPolicy
from herd._client.budget import BudgetPolicy
from herd._client.driver import aclose, driver
from herd._client.fallback import fallback
from herd._client.metrics import CLIENT_METRICS as client_metrics
from herd._client.policy import CallPolicy
from herd._model.deadline import deadline, remaining
from herd._model.errors import (
    BadRequest,
    CircuitOpen,
    ConfigurationError,
    DeadlineExceeded,
    Forbidden,
    HerdError,
    Overloaded,
    Rejected,
    RemoteError,
    Unavailable,
)
from herd._model.facet import Facet, fill
from herd._model.instance import Instance, Status
from herd._model.interface import Interface, ServiceError, method
from herd._model.web import WebRequest, WebResponse, route
from herd._process.run import run
from herd._server.server import Server


def serve(impl: Interface, **options: Any) -> Server:
    """A server for an implementation of an interface; start it with ``async with``.

    Options: `host` (default loopback), `port` (default any free port), `max_inflight` (shed
    load above it with an overload answer), `max_body` (bytes, default 1 MiB),
    `default_timeout` (for requests that carry no deadline).
    """
    return Server(impl, **options)


__all__ = [
    "BadRequest",
    "BreakerPolicy",
    "BudgetPolicy",
    "CallPolicy",
    "CircuitOpen",
    "ConfigurationError",
    "DeadlineExceeded",
    "EjectionPolicy",
    "Facet",
    "Forbidden",
    "HerdError",
    "Instance",
    "Interface",
    "Overloaded",
    "Rejected",
    "RemoteError",
    "Server",
    "ServiceError",
    "Status",
    "Unavailable",
    "WebRequest",
    "WebResponse",
    "aclose",
    "client_metrics",
    "deadline",
    "driver",
    "fallback",
    "fill",
    "method",
    "remaining",
    "route",
    "run",
    "serve",
]
