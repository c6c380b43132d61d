"""identity's library: what application code uses to learn who a visitor is.

Picks the implementation by configuration: ``FLIX_IDENTITY=real`` (default) calls the identity
service through its driver (instances from ``FLIX_IDENTITY_ADDR`` or the registry);
``FLIX_IDENTITY=fake`` answers from `FakeIdentity`, with no identity service running at all.
People are cached for a minute; when identity cannot answer, the last known person is used.
"""

from __future__ import annotations

import os

import herd
from examples.flix import config
from examples.flix.cache import TtlCache
from examples.flix.identity.fake import FakeIdentity
from examples.flix.identity.interface import Identity, Person
from examples.flix.ids import VisitorId

MODES = ("real", "fake")


def identity_from_env() -> Identity:
    """The `Identity` that ``FLIX_IDENTITY`` selects: the real service's driver, or the fake."""
    mode = os.environ.get("FLIX_IDENTITY", "real").strip().lower() or "real"
    if mode not in MODES:
        raise herd.ConfigurationError(f"FLIX_IDENTITY={mode!r}: use one of {', '.join(MODES)}")
    if mode == "fake":
        return FakeIdentity()
    return config.driver(Identity, "identity")


class IdentityLibrary:
    """Who a visitor is, cached; None when identity cannot answer and nothing is cached."""

    def __init__(self, identity: Identity, ttl: float = 60.0) -> None:
        self.identity = identity
        self.fake = isinstance(identity, FakeIdentity)
        self.cache: TtlCache[VisitorId, Person] = TtlCache(ttl)

    @classmethod
    def from_env(cls) -> IdentityLibrary:
        return cls(identity_from_env())

    async def person(self, visitor: VisitorId) -> Person | None:
        """The person, or None if identity is unavailable; raises `UnknownVisitor`."""
        cached = self.cache.get(visitor)
        if cached is not None:
            return cached
        return await herd.fallback(self._fetch(visitor), lambda _: self.cache.stale(visitor))

    async def _fetch(self, visitor: VisitorId) -> Person | None:
        person = await self.identity.person(visitor)
        self.cache.put(visitor, person)
        return person

    async def sign_in(self, visitor: VisitorId, password: str) -> Person:
        """The person if the password is theirs; raises `BadCredentials` (never cached)."""
        return await self.identity.sign_in(visitor, password)
