"""identity's implementation over the store: ``python -m examples.flix.identity.service``.

Environment: ``FLIX_DB`` (the database), ``HERD_PORT`` (default 0: any free port).
"""

from __future__ import annotations

import herd
from examples.flix.identity.interface import Identity, Person, UnknownVisitor
from examples.flix.ids import VisitorId
from examples.flix.store import IDENTITY_PEOPLE, PersonRecord, Store


def _person(visitor: VisitorId, record: PersonRecord) -> Person:
    return Person(
        id=visitor,
        name=record.name,
        email=record.email,
        country=record.country,
        plan=record.plan,
        member_since=record.member_since,
    )


class IdentityService(Identity):
    """Reads people from the `identity_people` table."""

    def __init__(self, store: Store) -> None:
        self.people_table = store.table(IDENTITY_PEOPLE)

    async def person(self, visitor: VisitorId) -> Person:
        record = self.people_table.get(visitor)
        if record is None:
            raise UnknownVisitor(f"no visitor {visitor}", visitor=visitor)
        return _person(visitor, record)

    async def people(self, visitors: list[VisitorId]) -> list[Person]:
        found = self.people_table.get_many(visitors)
        return [_person(v, found[v]) for v in dict.fromkeys(visitors) if v in found]


def main() -> None:
    herd.run(IdentityService(Store.from_env()))


if __name__ == "__main__":
    main()
