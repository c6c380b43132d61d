"""How a flix process finds its database, its port and its dependencies: environment variables.

- ``FLIX_DB``: the SQLite database made by ``python -m examples.flix.store seed PATH``.
- ``HERD_PORT``, ``HERD_HOST``: where the service listens (read by `herd.run`; default any free
  port on loopback); the process prints ``HERD_READY {...}`` with its address once serving.
- ``FLIX_<SERVICE>_ADDR``: ``host:port,host:port`` instances of a dependency (``FLIX_MOVIE_ADDR``).
  Without it, `herd.driver` finds instances in the registry (``HERD_REGISTRY``).
"""

from __future__ import annotations

import os
from typing import TypeVar

import herd

IfaceT = TypeVar("IfaceT", bound=herd.Interface)


def addresses(service: str) -> list[str] | None:
    """The fixed instances of `service` from ``FLIX_<SERVICE>_ADDR``, or None (use the registry)."""
    value = os.environ.get(f"FLIX_{service.upper()}_ADDR", "")
    found = [part.strip() for part in value.split(",") if part.strip()]
    return found or None


def driver(interface: type[IfaceT], service: str, policy: herd.CallPolicy | None = None) -> IfaceT:
    """The driver of `interface`: fixed addresses if configured, else the registry."""
    fixed = addresses(service)
    if fixed is not None:
        return herd.driver(interface, address=fixed, policy=policy)
    return herd.driver(interface, policy=policy)
