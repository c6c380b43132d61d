# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""identity's interface: who a visitor is. Callers import this module and nothing else."""

from __future__ import annotations

import herd
from examples.flix.ids import VisitorId


class Person(herd.Facet, of=VisitorId):
    """A visitor as a person: what a page greets and what an account shows."""

    id: VisitorId  # herd adds it from `of=`; declared so the type checker sees it too
    name: str
    email: str
    country: str
    plan: str
    member_since: int


class UnknownVisitor(herd.ServiceError):
    """No such visitor."""

    visitor: VisitorId


class BadCredentials(herd.ServiceError):
    """No such visitor, no account, or the wrong password (which one is not said)."""


class Identity(herd.Interface, name="identity"):
    """Visitors' identities."""

    @herd.method(idempotent=True)
    async def person(self, visitor: VisitorId) -> Person:
        """The person behind `visitor`; raises `UnknownVisitor`."""

    @herd.method(idempotent=True)
    async def people(self, visitors: list[VisitorId]) -> list[Person]:
        """The people among `visitors` that exist (unknown ids are left out)."""

    @herd.method()
    async def sign_in(self, visitor: VisitorId, password: str) -> Person:
        """The person, if `password` is theirs; raises `BadCredentials`. Not retried: each
        try costs the service a deliberately slow hash."""
