"""A fake identity driver: answers locally from a fixed list of twenty people.

As in the talk's "Boundary Interfaces": before there was an identity system in the cloud, a fake
driver holding the twenty developers let every layer above it be built and run. It implements
the same `Identity` interface, so code above it cannot tell; `IdentityLibrary` picks it when
``FLIX_IDENTITY=fake``. Its people are visitors 1..20, who have rows and history in the store.
"""

from __future__ import annotations

import hmac

from examples.flix.identity.interface import BadCredentials, Identity, Person, UnknownVisitor
from examples.flix.ids import VisitorId
from examples.flix.store import password_of

_NAMES = (
    "Avery Lindgren", "Bruno Takahashi", "Carmen Oduya", "Dmitri Halvorsen", "Esther Quaye",
    "Felix Marchetti", "Gita Raman", "Hugo Abernathy", "Ilse Varga", "Jamal Whitfield",
    "Keiko Morrow", "Lucas Pereira", "Mira Castellanos", "Noor Haddad", "Oskar Brandt",
    "Paloma Ruiz", "Rafael Stone", "Sofia Kovacs", "Theo Nakashima", "Uma Delacroix",
)  # fmt: skip

FAKE_PEOPLE: tuple[Person, ...] = tuple(
    Person(
        id=VisitorId(number),
        name=name,
        email=f"{name.split()[0].lower()}@flix.example",
        country="US",
        plan="premium",
        member_since=2009,
    )
    for number, name in enumerate(_NAMES, start=1)
)


class FakeIdentity(Identity):
    """The `Identity` interface, answered locally: only the twenty people exist."""

    def __init__(self, people: tuple[Person, ...] = FAKE_PEOPLE) -> None:
        self._people = {person.id: person for person in people}

    async def person(self, visitor: VisitorId) -> Person:
        found = self._people.get(visitor)
        if found is None:
            raise UnknownVisitor(f"no visitor {visitor} (fake identity)", visitor=visitor)
        return found

    async def people(self, visitors: list[VisitorId]) -> list[Person]:
        return [self._people[v] for v in dict.fromkeys(visitors) if v in self._people]

    async def sign_in(self, visitor: VisitorId, password: str) -> Person:
        """Any of the twenty signs in with the seeded database's password for that visitor."""
        person = self._people.get(visitor)
        if person is None or not hmac.compare_digest(password, password_of(visitor)):
            raise BadCredentials("wrong visitor or password (fake identity)")
        return person
