"""Who is calling: an instance's identity, named as a SPIFFE-style URI, and the caller of the
request being handled.

An identity is `spiffe://herd.local/{app}/{service}/{group}/{instance}`. The transport learns the
caller's identity once per connection (from the peer's certificate, `herd._wire.tls`); the server
puts it in force around the handler, where `caller()` reads it.
"""

from __future__ import annotations

import contextvars
import re

import msgspec

TRUST_DOMAIN = "herd.local"
_SCHEME = f"spiffe://{TRUST_DOMAIN}/"
#: One path segment: what app, service, group and instance names are made of.
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

#: The control plane's service name: it may call admin methods and every service.
CONTROL = "herd-control"
#: The front door's service name: the front-door service allows it without being told.
FRONT_DOOR = "herd-front-door"
#: The registry's service name.
REGISTRY = "herd-registry"
#: Names no app's service may take: the control plane's own identities.
RESERVED = frozenset({CONTROL, FRONT_DOOR, REGISTRY})


class Identity(msgspec.Struct, frozen=True):
    """One process's identity in one app: which instance of which group of which service."""

    app: str
    service: str
    group: str
    instance: str

    @property
    def uri(self) -> str:
        """`spiffe://herd.local/{app}/{service}/{group}/{instance}`."""
        return f"{_SCHEME}{self.app}/{self.service}/{self.group}/{self.instance}"

    @property
    def is_control(self) -> bool:
        """Whether this is the control plane."""
        return self.service == CONTROL


def parse(uri: str) -> Identity | None:
    """The identity a URI names; None when it is not a herd identity."""
    if not uri.startswith(_SCHEME):
        return None
    parts = uri[len(_SCHEME) :].split("/")
    if len(parts) != 4 or not all(_SEGMENT.match(part) for part in parts):
        return None
    return Identity(*parts)


_CALLER: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "herd_caller", default=None
)


def caller() -> Identity | None:
    """The identity of the caller of the request being handled; None when the server runs
    without identities (standalone, no TLS) or outside a request."""
    return _CALLER.get()


def use(identity: Identity | None) -> contextvars.Token[Identity | None]:
    """Put `identity` in force as the caller; undo with `reset`."""
    return _CALLER.set(identity)


def reset(token: contextvars.Token[Identity | None]) -> None:
    """Undo `use`."""
    _CALLER.reset(token)
