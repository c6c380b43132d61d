"""`herd.driver`: a driver wired to where this process finds instances (an address, a resolver
the caller owns, or the registry named in the environment)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from herd._client.driver import make_driver, static_driver
from herd._client.metrics import ClientMetrics
from herd._client.policy import CallPolicy
from herd._client.resolver import Resolver
from herd._model.instance import Instance
from herd._model.interface import Interface
from herd._process.config import settings
from herd._process.registry_client import registry_resolver

IfaceT = TypeVar("IfaceT", bound=Interface)


def driver(
    interface: type[IfaceT],
    *,
    address: str | Sequence[str | Instance] | None = None,
    resolver: Resolver | None = None,
    zone: str | None = None,
    policy: CallPolicy | None = None,
    token: str | None = None,
    metrics: ClientMetrics | None = None,
) -> IfaceT:
    """The driver of an interface: the same methods and types, calling remote instances.

    Use it as an async context manager, or close it with `await movies.aclose()`::

        async with herd.driver(Movies) as movies:
            shown = await movies.presentation([VideoId(7)])

    Args:
        interface: the interface class (`Movies`), not an implementation.
        address: one `host:port`, or a list of `host:port` strings or `herd.Instance`s (each with
            its own zone), for a fixed set of instances.
        resolver: where instances come from, owned by the caller (the driver never closes it).
        zone: this caller's zone, for same-zone-first balancing (default: `HERD_ZONE`).
        policy: timeouts, retries, breaker, budget and bulkhead settings.
        token: the admin token, sent with every call, for methods declared `admin=True`.
        metrics: where the driver counts its calls (default: `herd.client_metrics`).

    With neither `address` nor `resolver`, the driver follows the registry named by
    `HERD_REGISTRY` through the process's shared watch; closing the driver releases its share.
    """
    zone = zone or settings().zone
    if resolver is not None:
        return make_driver(
            interface,
            resolver,
            owns_resolver=False,
            zone=zone,
            policy=policy,
            token=token,
            metrics=metrics,
        )
    if address is not None:
        return static_driver(
            interface, address, zone=zone, policy=policy, token=token, metrics=metrics
        )
    return make_driver(
        interface,
        registry_resolver(),
        owns_resolver=True,
        zone=zone,
        policy=policy,
        token=token,
        metrics=metrics,
    )
