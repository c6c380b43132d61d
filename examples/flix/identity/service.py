"""identity's implementation over the store: ``python -m examples.flix.identity.service``.

Environment: ``FLIX_DB`` (the database), ``HERD_PORT`` (default 0: any free port).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import herd
from examples.flix.identity.interface import BadCredentials, Identity, Person, UnknownVisitor
from examples.flix.ids import VisitorId
from examples.flix.store import (
    IDENTITY_CREDENTIALS,
    IDENTITY_PEOPLE,
    CredentialRecord,
    PersonRecord,
    Store,
    credential,
)

#: Checked when a visitor has no account, so a wrong visitor costs the same time as a wrong
#: password and the answer's timing does not tell which visitors can sign in.
_NOBODY = credential("", b"no such account!")
#: Passwords longer than this are refused before hashing (a hash's cost grows with its input).
MAX_PASSWORD = 256


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
        self.credentials = store.table(IDENTITY_CREDENTIALS)

    async def person(self, visitor: VisitorId) -> Person:
        record = self.people_table.get(visitor)
        if record is None:
            raise UnknownVisitor(f"no visitor {visitor}", visitor=visitor)
        return _person(visitor, record)

    async def people(self, visitors: list[VisitorId]) -> list[Person]:
        found = self.people_table.get_many(visitors)
        return [_person(v, found[v]) for v in dict.fromkeys(visitors) if v in found]

    async def sign_in(self, visitor: VisitorId, password: str) -> Person:
        stored = self.credentials.get(visitor)
        known = stored is not None and len(password) <= MAX_PASSWORD
        record = stored if stored is not None and known else _NOBODY
        # scrypt holds the GIL little and takes ~40 ms: off the event loop.
        matches = await asyncio.to_thread(_matches, record, password[:MAX_PASSWORD])
        person = self.people_table.get(visitor) if known and matches else None
        if person is None:
            raise BadCredentials("wrong visitor or password")
        return _person(visitor, person)


def _matches(record: CredentialRecord, password: str) -> bool:
    key = hashlib.scrypt(
        password.encode(), salt=record.salt, n=record.n, r=record.r, p=record.p, dklen=32
    )
    return hmac.compare_digest(key, record.hash)


def main() -> None:
    herd.run(IdentityService(Store.from_env()))


if __name__ == "__main__":
    main()
