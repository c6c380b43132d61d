"""herd: build systems out of small, resilient services.

A service's interface is a typed Python class; herd derives the server and the driver from it.
Every call carries a deadline that telescopes through the hops, is retried once on a different
instance inside a retry budget, and is guarded by a circuit breaker and a bulkhead.
"""

from __future__ import annotations

# First: an instance of the local cloud imports only what it uses (see there).
from herd import _startup  # noqa: F401
from herd._cache.cache import Cache
from herd._cache.metrics import CACHE_METRICS as cache_metrics
from herd._cache.metrics import CacheMetrics
from herd._client.attempts import HedgePolicy
from herd._client.balance import EjectionPolicy
from herd._client.breaker import BreakerPolicy
from herd._client.budget import BudgetPolicy
from herd._client.fallback import fallback
from herd._client.metrics import CLIENT_METRICS as client_metrics
from herd._client.metrics import ClientMetrics
from herd._client.policy import CallPolicy
from herd._client.resolver import Resolver, StaticResolver
from herd._model.criticality import Criticality
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
from herd._model.identity import Identity, caller
from herd._model.instance import Instance, Status
from herd._model.interface import Interface, ServiceError, method
from herd._model.limit import LimitPolicy
from herd._model.routing import RoutingContext, criticality, current_criticality, routing
from herd._model.routing import current as routing_context
from herd._model.web import WebRequest, WebResponse, route
from herd._process.caches import cache
from herd._process.connect import driver
from herd._process.registry_client import RegistryResolver
from herd._process.run import run, serve
from herd._server.server import Server
from herd._store.errors import Conflict, InvalidKey, StoreError, StoreUnavailable, TooLarge
from herd._store.events import Event, Events, Subscription
from herd._store.open import events, store
from herd._store.store import Appended, Entry, Log, Record, Records, Store

__all__ = [
    "Appended",
    "BadRequest",
    "BreakerPolicy",
    "BudgetPolicy",
    "Cache",
    "CacheMetrics",
    "CallPolicy",
    "CircuitOpen",
    "ClientMetrics",
    "ConfigurationError",
    "Criticality",
    "Conflict",
    "DeadlineExceeded",
    "EjectionPolicy",
    "Entry",
    "Event",
    "Events",
    "Facet",
    "Forbidden",
    "HedgePolicy",
    "HerdError",
    "Identity",
    "Instance",
    "Interface",
    "InvalidKey",
    "LimitPolicy",
    "Log",
    "Overloaded",
    "Rejected",
    "RoutingContext",
    "Record",
    "Records",
    "RegistryResolver",
    "RemoteError",
    "Resolver",
    "Server",
    "ServiceError",
    "StaticResolver",
    "Status",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "TooLarge",
    "Unavailable",
    "WebRequest",
    "WebResponse",
    "cache",
    "cache_metrics",
    "caller",
    "client_metrics",
    "criticality",
    "current_criticality",
    "deadline",
    "driver",
    "events",
    "fallback",
    "fill",
    "method",
    "remaining",
    "route",
    "routing",
    "routing_context",
    "run",
    "serve",
    "store",
]
