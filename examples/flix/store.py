"""flix's data: typed wide-row tables (partition key + clustering key) in SQLite.

Each table holds rows ``(pk, ck) -> value``: `pk` spreads the data (a video, a visitor), `ck`
orders the rows inside one partition (row position, recency). Values are msgspec structs stored
as MessagePack, so a table is typed end to end. Each service owns its tables and reads them only;
the data is denormalized the way the service reads it (one partition read per request).

Create a database::

    python -m examples.flix.store seed flix.db            # 1,000 videos, 10,000 visitors
    python -m examples.flix.store seed flix.db --seed 7 --videos 2000 --visitors 50000

Services open it read-only from the path in ``FLIX_DB``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import msgspec

V = TypeVar("V", bound=msgspec.Struct)

# --------------------------------------------------------------------------------------------
# Schema: one record type per table, and the tables.


class VideoRecord(msgspec.Struct, array_like=True, frozen=True):
    """movie's view of a video: what a page shows."""

    title: str
    synopsis: str
    year: int
    boxshot: str


class MerchRecord(msgspec.Struct, array_like=True, frozen=True):
    """merch's view of a video: what ranking uses."""

    genre: str
    rating: str
    popularity: float


class PersonRecord(msgspec.Struct, array_like=True, frozen=True):
    """identity's view of a visitor."""

    name: str
    email: str
    country: str
    plan: str
    member_since: int


class CredentialRecord(msgspec.Struct, array_like=True, frozen=True):
    """identity's secret of a visitor who can sign in: an scrypt hash of the password."""

    salt: bytes
    hash: bytes
    n: int
    r: int
    p: int


class RowRecord(msgspec.Struct, array_like=True, frozen=True):
    """One merchandising row of a visitor's home page (ck: its position on the page)."""

    title: str
    videos: list[int]


class WatchRecord(msgspec.Struct, array_like=True, frozen=True):
    """One viewing (ck: 0 is the most recent)."""

    video: int
    watched_at: int
    progress: float


@dataclasses.dataclass(frozen=True)
class TableSpec(Generic[V]):
    """A table's name and the type of its values."""

    name: str
    value: type[V]


MOVIE_VIDEOS = TableSpec("movie_videos", VideoRecord)  # pk: video, ck: 0
MERCH_VIDEOS = TableSpec("merch_videos", MerchRecord)  # pk: video, ck: 0
MERCH_ROWS = TableSpec("merch_rows", RowRecord)  # pk: visitor (0: everyone), ck: position
IDENTITY_PEOPLE = TableSpec("identity_people", PersonRecord)  # pk: visitor, ck: 0
IDENTITY_CREDENTIALS = TableSpec("identity_credentials", CredentialRecord)  # pk: visitor, ck: 0
HISTORY_VIEWS = TableSpec("history_views", WatchRecord)  # pk: visitor, ck: recency
TABLES: tuple[TableSpec[Any], ...] = (
    MOVIE_VIDEOS,
    MERCH_VIDEOS,
    MERCH_ROWS,
    IDENTITY_PEOPLE,
    IDENTITY_CREDENTIALS,
    HISTORY_VIEWS,
)

#: The partition of MERCH_ROWS that holds the rows for visitors with none of their own.
EVERYONE = 0

_MAX_VARS = 500  # below SQLite's limit on bound parameters

#: SQLite's integers are signed 64-bit: a key outside cannot be stored, so no row has it.
_KEY_MIN, _KEY_MAX = -(2**63), 2**63 - 1


def _storable(key: int) -> bool:
    """Whether SQLite can hold `key` (binding one it cannot raises OverflowError)."""
    return _KEY_MIN <= key <= _KEY_MAX


# --------------------------------------------------------------------------------------------
# The store.


class Store:
    """An SQLite database of wide-row tables. `Store.open` for services (read-only)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open a seeded database read-only."""
        where = Path(path)
        if not where.is_file():
            raise FileNotFoundError(
                f"no flix database at {where}: create one with "
                f"`python -m examples.flix.store seed {where}`"
            )
        uri = f"file:{quote(str(where.resolve()))}?mode=ro"
        return cls(sqlite3.connect(uri, uri=True, check_same_thread=False))

    @classmethod
    def from_env(cls) -> Store:
        """Open the database named by ``FLIX_DB`` read-only."""
        path = os.environ.get("FLIX_DB")
        if not path:
            raise SystemExit(
                "set FLIX_DB to a database made by `python -m examples.flix.store seed`"
            )
        return cls.open(path)

    def table(self, spec: TableSpec[V]) -> Table[V]:
        """A typed handle on one table."""
        return Table(self._db, spec)

    def create(self) -> None:
        """Create every table (for seeding)."""
        for spec in TABLES:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {spec.name} ("
                "pk INTEGER NOT NULL, ck INTEGER NOT NULL, value BLOB NOT NULL, "
                "PRIMARY KEY (pk, ck)) WITHOUT ROWID"
            )

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class Table(Generic[V]):
    """Rows ``(pk, ck) -> value`` of one record type."""

    def __init__(self, db: sqlite3.Connection, spec: TableSpec[V]) -> None:
        self._db = db
        self.name = spec.name
        self._decoder = msgspec.msgpack.Decoder(spec.value)
        self._encoder = msgspec.msgpack.Encoder()

    def get(self, pk: int, ck: int = 0) -> V | None:
        """One row, or None (also for a key no row can have)."""
        if not (_storable(pk) and _storable(ck)):
            return None
        found = self._db.execute(
            f"SELECT value FROM {self.name} WHERE pk = ? AND ck = ?", (pk, ck)
        ).fetchone()
        return None if found is None else self._decoder.decode(found[0])

    def get_many(self, pks: Sequence[int], ck: int = 0) -> dict[int, V]:
        """The row at `ck` of each partition in `pks` that has one."""
        found: dict[int, V] = {}
        if not _storable(ck):
            return found
        unique = [pk for pk in dict.fromkeys(pks) if _storable(pk)]
        for start in range(0, len(unique), _MAX_VARS):
            chunk = unique[start : start + _MAX_VARS]
            marks = ",".join("?" * len(chunk))
            for pk, value in self._db.execute(
                f"SELECT pk, value FROM {self.name} WHERE ck = ? AND pk IN ({marks})",
                (ck, *chunk),
            ):
                found[pk] = self._decoder.decode(value)
        return found

    def partition(self, pk: int, limit: int | None = None) -> list[tuple[int, V]]:
        """The rows of one partition in clustering order; at most `limit` (none if negative)."""
        if not _storable(pk):
            return []
        query = f"SELECT ck, value FROM {self.name} WHERE pk = ? ORDER BY ck"
        params: tuple[int, ...] = (pk,)
        if limit is not None:
            query += " LIMIT ?"
            params = (pk, max(0, min(limit, _KEY_MAX)))
        return [(ck, self._decoder.decode(value)) for ck, value in self._db.execute(query, params)]

    def put_many(self, rows: Iterable[tuple[int, int, V]]) -> None:
        """Insert or replace rows."""
        encode = self._encoder.encode
        self._db.executemany(
            f"INSERT OR REPLACE INTO {self.name} (pk, ck, value) VALUES (?, ?, ?)",
            ((pk, ck, encode(value)) for pk, ck, value in rows),
        )

    def count(self) -> int:
        """How many rows the table holds."""
        return int(self._db.execute(f"SELECT COUNT(*) FROM {self.name}").fetchone()[0])


# --------------------------------------------------------------------------------------------
# Deterministic seed data.

GENRES = (
    "Drama",
    "Comedy",
    "Thriller",
    "Science Fiction",
    "Documentary",
    "Romance",
    "Horror",
    "Animation",
    "Action",
    "Crime",
    "Family",
    "Fantasy",
)
RATINGS = ("G", "PG", "PG-13", "R", "TV-14", "TV-MA")
_ADJECTIVES = (
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Midnight", "Frozen", "Wild",
    "Distant", "Burning", "Lost", "Electric", "Quiet", "Northern", "Hollow", "Secret", "Iron",
    "Paper", "Velvet", "Restless", "Endless", "Forgotten", "Bright", "Savage", "Gentle",
)  # fmt: skip
_NOUNS = (
    "River", "Harbor", "Signal", "Garden", "Machine", "Kingdom", "Orchard", "Witness", "Empire",
    "Lantern", "Horizon", "Voyage", "Mirror", "Circuit", "Fortune", "Island", "Shadow", "Season",
    "Letter", "Engine", "Frontier", "Canyon", "Archive", "Comet", "Verdict", "Carnival",
)  # fmt: skip
_PLACES = (
    "Lisbon", "the North", "Cold Creek", "Mars", "the Valley", "Harlow Street", "Kyoto",
    "the Deep", "Saint-Malo", "Red Mesa", "Port Alba", "the Old City", "Zanzibar", "Avalon",
)  # fmt: skip
_FIRST = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Liam", "Maya", "Nils", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera",
    "Wen", "Xavier", "Yara", "Zoe", "Marco", "Lena", "Tomas", "Aisha",
)  # fmt: skip
_LAST = (
    "Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Haddad", "Kowalski", "Reyes",
    "Brennan", "Castillo", "Fischer", "Osei", "Petrova", "Nakamura", "Adeyemi", "Larsen",
    "Dubois", "Kaur", "Romano", "Walsh", "Yilmaz", "Costa", "Bauer",
)  # fmt: skip
_WHO = (
    "a retired detective", "an estranged sister", "a young engineer", "an aging jazz pianist",
    "a ship's cook", "a small-town mayor", "a runaway robot", "a disgraced chef",
    "a rookie journalist", "a trio of childhood friends", "a reluctant heir", "a night-shift nurse",
    "a family of clockmakers", "a stubborn botanist", "a border guard", "a teenage hacker",
)  # fmt: skip
_WHAT = (
    "uncovers a secret buried for decades", "must cross the country in five days",
    "inherits a crumbling hotel", "races to stop a city-wide blackout",
    "finds a map that should not exist", "returns home for one last summer",
    "takes on a case nobody else will touch", "is stranded after a storm",
    "starts a band against all advice", "trades places with a stranger",
    "opens a restaurant in a ghost town", "receives letters from the future",
)  # fmt: skip
_TWIST = (
    "and learns who their friends really are", "while the past closes in",
    "before the winter comes", "as an old rival resurfaces", "with a dog who knows too much",
    "and nothing goes to plan", "while the whole town watches", "as the clock runs out",
)  # fmt: skip
_COUNTRIES = ("US", "CA", "GB", "DE", "FR", "BR", "MX", "JP", "KR", "IN", "AU", "ES", "NL")
_PLANS = ("basic", "standard", "premium")

ROW_LENGTH = 12

#: Visitors 1..ACCOUNTS can sign in (the landing page's profiles). Each hash costs scrypt's
#: 40 ms on purpose, so the seed makes few: every other visitor is reached with `?visitor=N`.
ACCOUNTS = 8
#: scrypt's cost: n=2**14, r=8, p=1 (16 MiB, the interactive-login setting of its paper).
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def password_of(visitor: int, seed: int = 1) -> str:
    """Visitor `visitor`'s demo password in the database seeded with `seed` (the same every
    time, so a demo and its tests can sign in): ``python -m examples.flix.store password N``."""
    digest = hashlib.blake2b(f"flix-password:{seed}:{visitor}".encode(), digest_size=8)
    return digest.hexdigest()


def credential(password: str, salt: bytes) -> CredentialRecord:
    """The scrypt hash of `password` with `salt`, as identity stores it."""
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return CredentialRecord(salt, key, **SCRYPT)


def _title(rng: random.Random) -> str:
    shape = rng.randrange(6)
    adjective, noun, place = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_PLACES)
    if shape == 0:
        return f"The {adjective} {noun}"
    if shape == 1:
        return f"{noun} of {place}"
    if shape == 2:
        return f"{rng.choice(_FIRST)}'s {noun}"
    if shape == 3:
        return f"Return to {place}"
    if shape == 4:
        return f"{adjective} {noun}s"
    return f"A {noun} in {place}"


def _synopsis(rng: random.Random) -> str:
    who = rng.choice(_WHO)
    return f"{who[0].upper()}{who[1:]} {rng.choice(_WHAT)} {rng.choice(_TWIST)}."


@dataclasses.dataclass
class SeedReport:
    """What `seed` wrote."""

    videos: int
    visitors: int
    rows: int
    views: int
    seconds: float


def seed(
    path: str | os.PathLike[str], *, seed: int = 1, videos: int = 1_000, visitors: int = 10_000
) -> SeedReport:
    """Create the database at `path` (replacing it atomically), the same for the same `seed`.

    Videos are 1..videos, visitors 1..visitors. Every visitor has a profile, four to five
    rows of twelve videos, and zero to fifteen recent viewings (about one in eight has none).
    """
    started = time.monotonic()
    rng = random.Random(seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".flix-", suffix=".db", dir=target.parent)
    os.close(fd)
    try:
        db = sqlite3.connect(temporary)
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        store = Store(db)
        store.create()
        counts = _fill(store, rng, videos, visitors, seed)
        store.commit()
        store.close()
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return SeedReport(videos, visitors, counts[0], counts[1], time.monotonic() - started)


def _fill(
    store: Store, rng: random.Random, videos: int, visitors: int, seed: int
) -> tuple[int, int]:
    ids = list(range(1, videos + 1))
    seen_titles: set[str] = set()
    movie_rows: list[tuple[int, int, VideoRecord]] = []
    merch_rows: list[tuple[int, int, MerchRecord]] = []
    by_genre: dict[str, list[int]] = {genre: [] for genre in GENRES}
    popularity: dict[int, float] = {}
    for video in ids:
        title = _title(rng)
        for _ in range(50):
            if title not in seen_titles:
                break
            title = _title(rng)
        else:
            title = f"{title}: Part {video}"
        seen_titles.add(title)
        year = rng.randint(1955, 2025)
        movie_rows.append((video, 0, VideoRecord(title, _synopsis(rng), year, boxshot_url(video))))
        genre = rng.choice(GENRES)
        score = round(min(100.0, rng.paretovariate(1.6) * 8.0), 2)
        by_genre[genre].append(video)
        popularity[video] = score
        merch_rows.append((video, 0, MerchRecord(genre, rng.choice(RATINGS), score)))
    store.table(MOVIE_VIDEOS).put_many(movie_rows)
    store.table(MERCH_VIDEOS).put_many(merch_rows)

    popular = sorted(ids, key=lambda v: -popularity[v])[: ROW_LENGTH * 4]
    released = {video: record.year for video, _, record in movie_rows}
    recent_years = sorted((v for v in ids if released[v] >= 2018), key=lambda v: -released[v])
    row_table = store.table(MERCH_ROWS)
    row_table.put_many(
        [
            (EVERYONE, 0, RowRecord("Popular on Flix", popular[:ROW_LENGTH])),
            (EVERYONE, 1, RowRecord("New Releases", recent_years[:ROW_LENGTH])),
        ]
    )
    people: list[tuple[int, int, PersonRecord]] = []
    rows: list[tuple[int, int, RowRecord]] = []
    views: list[tuple[int, int, WatchRecord]] = []
    now = 1_767_225_600  # 2026-01-01, fixed so the data is the same on every run
    sample = rng.sample
    for visitor in range(1, visitors + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        people.append(
            (
                visitor,
                0,
                PersonRecord(
                    name=f"{first} {last}",
                    email=f"{first.lower()}.{last.lower()}.{visitor}@example.com",
                    country=rng.choice(_COUNTRIES),
                    plan=rng.choice(_PLANS),
                    member_since=rng.randint(2008, 2025),
                ),
            )
        )
        likes = sample(GENRES, 2)
        taste = by_genre[likes[0]] + by_genre[likes[1]]
        visitor_rows = [
            RowRecord(f"Top Picks for {first}", sample(taste, min(ROW_LENGTH, len(taste)))),
            RowRecord("Popular on Flix", sample(popular, ROW_LENGTH)),
        ]
        for genre in likes:
            pool = by_genre[genre]
            visitor_rows.append(RowRecord(f"{genre}", sample(pool, min(ROW_LENGTH, len(pool)))))
        if rng.random() < 0.5:
            visitor_rows.append(
                RowRecord("New Releases", sample(recent_years, min(ROW_LENGTH, len(recent_years))))
            )
        visitor_rows = [row for row in visitor_rows if row.videos]
        rows.extend((visitor, position, row) for position, row in enumerate(visitor_rows))
        watched = 0 if rng.random() < 0.125 else rng.randint(1, 15)
        at = now - rng.randint(0, 86_400)
        for position, video in enumerate(sample(taste + popular, watched)):
            views.append((visitor, position, WatchRecord(video, at, round(rng.random(), 2))))
            at -= rng.randint(600, 3 * 86_400)
    store.table(IDENTITY_PEOPLE).put_many(people)
    store.table(IDENTITY_CREDENTIALS).put_many(
        (visitor, 0, credential(password_of(visitor, seed), _salt(seed, visitor)))
        for visitor in range(1, min(ACCOUNTS, visitors) + 1)
    )
    row_table.put_many(rows)
    store.table(HISTORY_VIEWS).put_many(views)
    return len(rows) + 2, len(views)


def _salt(seed: int, visitor: int) -> bytes:
    """Per visitor, and the same for the same seed (the database is the same bytes)."""
    return hashlib.blake2b(f"flix-salt:{seed}:{visitor}".encode(), digest_size=16).digest()


def boxshot_url(video: int) -> str:
    """Where a video's boxshot is served (by the edge)."""
    return f"/boxshot.svg?video={video}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.flix.store", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("seed", help="create a database, deterministically")
    make.add_argument("path")
    make.add_argument("--seed", type=int, default=1)
    make.add_argument("--videos", type=int, default=1_000)
    make.add_argument("--visitors", type=int, default=10_000)
    show = commands.add_parser("count", help="rows per table")
    show.add_argument("path")
    secret = commands.add_parser("password", help=f"a visitor's password (1..{ACCOUNTS})")
    secret.add_argument("visitor", type=int)
    secret.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "seed":
        if args.videos < ROW_LENGTH * 4 or args.visitors < 1:
            parser.error(f"need at least {ROW_LENGTH * 4} videos and 1 visitor")
        report = seed(args.path, seed=args.seed, videos=args.videos, visitors=args.visitors)
        print(
            f"seeded {args.path}: {report.videos} videos, {report.visitors} visitors, "
            f"{report.rows} rows, {report.views} viewings in {report.seconds:.2f}s"
        )
    elif args.command == "password":
        if not 1 <= args.visitor <= ACCOUNTS:
            parser.error(f"visitors 1 to {ACCOUNTS} have accounts")
        print(password_of(args.visitor, args.seed))
    else:
        store = Store.open(args.path)
        for spec in TABLES:
            print(f"{spec.name:16} {store.table(spec).count():>8}")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
