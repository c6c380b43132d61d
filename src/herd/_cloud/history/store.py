"""The history of the local cloud (Netflix's Edda): every change, durably, with its time and cause.

One append-only SQLite table in the run folder (WAL: a write is one small append, and readers
never block the writer), so the history outlives the `herd up` that wrote it and the next one
carries on with it. An event is a wall-clock time, a sequence number (the order of record, even
when two events share a time), a `kind` (`instance.launched`, `group.scaled`, `chaos.kill`, ...),
the group and instance it concerns, a `cause` (why: `chaos`, `scale`, `deploy`, `crash`, `kill`,
`zone-outage`, `shutdown`, ...) and free-form details.

Queries are Edda's: the events in a time range (`_since`, `_until`, by group and kind), the
state of the cloud as of a time (`_at`: the groups and instances that existed then, replayed
from the events), and what changed between two times (`_diff`).
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import structlog

from herd._model.errors import ConfigurationError
from herd._model.instance import Status

log = structlog.get_logger("herd.history")

Clock = Callable[[], float]
_S = TypeVar("_S", "GroupState", "InstanceState")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    grp TEXT,
    instance TEXT,
    cause TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
"""
_SELECT = "SELECT seq, at, kind, grp, instance, cause, detail FROM events"

#: The kinds the state replay understands; any other kind is history only.
CLOUD_STARTED = "cloud.started"
CLOUD_STOPPED = "cloud.stopped"
GROUP_CREATED = "group.created"
GROUP_SCALED = "group.scaled"
GROUP_DISABLED = "group.disabled"
GROUP_ENABLED = "group.enabled"
GROUP_DESTROYED = "group.destroyed"
INSTANCE_LAUNCHED = "instance.launched"
INSTANCE_UP = "instance.up"
INSTANCE_DOWN = "instance.down"
INSTANCE_TERMINATED = "instance.terminated"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class InvalidTime(ConfigurationError):
    """A time or duration that cannot be read."""


def parse_duration(text: str) -> float:
    """Seconds in a duration like `300ms`, `30s`, `5m`, `2h`, `1d` (or a bare number of
    seconds); `InvalidTime` otherwise."""
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match is not None:
        return float(match[1]) * _UNITS[match[2]]
    try:
        seconds = float(text)
    except ValueError:
        raise InvalidTime(f"{text[:40]!r} is no duration: say 300ms, 30s, 5m, 2h or 1d") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise InvalidTime(f"{text[:40]!r} is no duration: it must be finite and >= 0")
    return seconds


def parse_time(text: str, now: float | None = None) -> float:
    """A wall-clock time (seconds since the epoch) from an ISO 8601 time (local time unless it
    names its zone), a number of seconds since the epoch, or a duration ago (`5m`: five minutes
    before `now`); `InvalidTime` otherwise."""
    text = text.strip()
    if _DURATION.fullmatch(text):
        return (time.time() if now is None else now) - parse_duration(text)
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else _iso(text)
    except ValueError:
        raise InvalidTime(
            f"{text[:40]!r} is no time: say 2026-11-30T08:15:00, seconds since the epoch,"
            " or how long ago (90s, 5m, 2h)"
        ) from None


def _iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One change, as recorded."""

    seq: int
    at: float
    """Wall-clock seconds since the epoch."""
    kind: str
    group: str | None = None
    instance: str | None = None
    cause: str = ""
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class GroupState(msgspec.Struct, frozen=True, kw_only=True, tag_field="what", tag="group"):
    """A server group as of some time."""

    name: str
    desired: int
    status: str
    """`active` or `disabled`."""
    since: float
    """When it last changed."""


class InstanceState(msgspec.Struct, frozen=True, kw_only=True, tag_field="what", tag="instance"):
    """An instance as of some time."""

    id: str
    group: str | None
    zone: str
    status: str
    """`STARTING` (launched), `UP`, or `DOWN` (stopped answering; not terminated yet)."""
    since: float


class CloudState(msgspec.Struct, frozen=True, kw_only=True):
    """The cloud as of `at`: every group and instance that existed then."""

    at: float
    groups: list[GroupState]
    instances: list[InstanceState]


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One group or instance that differs between two times: `before` None when it did not
    exist at the first, `after` None when it no longer existed at the second."""

    what: str
    """`group` or `instance`."""
    id: str
    before: GroupState | InstanceState | None
    after: GroupState | InstanceState | None


class Diff(msgspec.Struct, frozen=True, kw_only=True):
    """What changed from `since` to `until`: the resulting differences, and the events between."""

    since: float
    until: float
    changes: list[Change]
    events: list[Event]


def kind_matches(pattern: str, kind: str) -> bool:
    """`instance` matches every `instance.*` kind; a full kind matches itself."""
    return kind == pattern or kind.startswith(pattern + ".")


class HistoryQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which events to read: those with `since <= at < until` (wall-clock seconds), of `group`
    and of `kind` (a kind, or the prefix before its dot), in the order they were recorded; the
    last `limit` of them. A field left None does not filter."""

    since: float | None = None
    until: float | None = None
    group: str | None = None
    kind: str | None = None
    limit: int | None = None


class History:
    """The cloud's history in one SQLite file: `record` appends, the rest query.

    `clock` gives wall-clock seconds (tests pass their own). The file is opened on first use.
    """

    def __init__(self, path: Path, *, clock: Clock = time.time, quiet: Iterable[str] = ()) -> None:
        self.path = path
        self._clock = clock
        # Kinds recorded on a timer (tallies, not changes): kept, but logged only at debug so
        # `herd up`'s output stays a list of changes.
        self._quiet = frozenset(quiet)
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # WAL with NORMAL survives a crash of the process (not of the machine) with every
            # committed event, at the cost of an append instead of an fsync per event.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        """Close the file (a later call opens it again)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def record(
        self,
        kind: str,
        *,
        cause: str = "",
        group: str | None = None,
        instance: str | None = None,
        **detail: object,
    ) -> Event:
        """Append one event, now, and log it."""
        named = {"cause": cause, "group": group, "instance": instance}
        emit = log.debug if kind in self._quiet else log.info
        emit(kind, **{k: v for k, v in named.items() if v}, **detail)
        at = self._clock()
        encoded = json.dumps(detail, default=str, separators=(",", ":"))
        cursor = self._connection().execute(
            "INSERT INTO events (at, kind, grp, instance, cause, detail) VALUES (?,?,?,?,?,?)",
            (at, kind, group, instance, cause, encoded),
        )
        seq = cursor.lastrowid
        assert seq is not None
        return _event((seq, at, kind, group, instance, cause, encoded))

    def events(self, query: HistoryQuery | None = None) -> list[Event]:
        """The events `query` asks for (every event without one), oldest first."""
        q = query or HistoryQuery()
        where, args = ["1=1"], list[Any]()
        if q.since is not None:
            where.append("at >= ?")
            args.append(q.since)
        if q.until is not None:
            where.append("at < ?")
            args.append(q.until)
        if q.group is not None:
            where.append("grp = ?")
            args.append(q.group)
        if q.kind is not None:
            where.append("(kind = ? OR kind LIKE ? ESCAPE '\\')")
            args += [q.kind, _like_prefix(q.kind)]
        # Only the fixed conditions above are joined in: every value is a placeholder.
        sql = f"{_SELECT} WHERE {' AND '.join(where)}"
        if q.limit is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?)"
            args.append(q.limit)
        rows = self._connection().execute(f"{sql} ORDER BY seq", args).fetchall()
        return [_event(row) for row in rows]

    def at(self, when: float) -> CloudState:
        """The cloud as of `when`: every event up to and including it, replayed."""
        groups: dict[str, GroupState] = {}
        instances: dict[str, InstanceState] = {}
        rows = self._connection().execute(
            f"{_SELECT} WHERE at <= ? ORDER BY seq",
            (when,),
        )
        for row in rows:
            _replay(_event(row), groups, instances)
        return CloudState(
            at=when,
            groups=sorted(groups.values(), key=lambda g: g.name),
            instances=sorted(instances.values(), key=lambda i: i.id),
        )

    def diff(self, since: float, until: float) -> Diff:
        """What differs between the cloud as of `since` and as of `until`, and the events in
        between (`since < at <= until`)."""
        if until < since:
            raise InvalidTime("a diff goes forward in time: the second time is the later")
        first, second = self.at(since), self.at(until)
        changes = _changes("group", first.groups, second.groups, lambda g: g.name)
        changes += _changes("instance", first.instances, second.instances, lambda i: i.id)
        rows = self._connection().execute(
            f"{_SELECT} WHERE at > ? AND at <= ? ORDER BY seq",
            (since, until),
        )
        return Diff(since=since, until=until, changes=changes, events=[_event(r) for r in rows])


def _like_prefix(kind: str) -> str:
    escaped = kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}.%"


def _event(row: tuple[Any, ...]) -> Event:
    seq, at, kind, group, instance, cause, detail = row
    return Event(
        seq=seq,
        at=at,
        kind=kind,
        group=group,
        instance=instance,
        cause=cause,
        detail=json.loads(detail),
    )


def _replay(
    event: Event, groups: dict[str, GroupState], instances: dict[str, InstanceState]
) -> None:
    """Apply one event to the state being rebuilt."""
    kind, at = event.kind, event.at
    if kind in (CLOUD_STARTED, CLOUD_STOPPED):
        # A new `herd up` starts from no instance, whatever the last one failed to record.
        instances.clear()
        if kind == CLOUD_STOPPED:
            groups.clear()
        return
    if event.group is not None and kind.startswith("group."):
        _replay_group(event, groups)
        return
    if event.instance is None:
        return
    known = instances.get(event.instance)
    if kind == INSTANCE_LAUNCHED:
        instances[event.instance] = InstanceState(
            id=event.instance,
            group=event.group,
            zone=str(event.detail.get("zone", "")),
            status=Status.STARTING,
            since=at,
        )
    elif kind == INSTANCE_TERMINATED:
        instances.pop(event.instance, None)
    elif known is not None and kind in (INSTANCE_UP, INSTANCE_DOWN):
        status = Status.UP if kind == INSTANCE_UP else Status.DOWN
        instances[event.instance] = msgspec.structs.replace(known, status=status, since=at)


def _replay_group(event: Event, groups: dict[str, GroupState]) -> None:
    name, kind, at = event.group, event.kind, event.at
    assert name is not None
    known = groups.get(name)
    desired = event.detail.get("desired")
    if kind == GROUP_DESTROYED:
        groups.pop(name, None)
    elif kind == GROUP_CREATED:
        groups[name] = GroupState(
            name=name,
            desired=desired if isinstance(desired, int) else 0,
            status="active",
            since=at,
        )
    elif known is None:
        return
    elif kind == GROUP_SCALED and isinstance(desired, int):
        groups[name] = msgspec.structs.replace(known, desired=desired, since=at)
    elif kind in (GROUP_DISABLED, GROUP_ENABLED):
        status = "disabled" if kind == GROUP_DISABLED else "active"
        groups[name] = msgspec.structs.replace(known, status=status, since=at)


def _changes(
    what: str,
    first: Iterable[_S],
    second: Iterable[_S],
    key: Callable[[_S], str],
) -> list[Change]:
    before = {key(item): item for item in first}
    after = {key(item): item for item in second}
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None or new is None or _without_since(old) != _without_since(new):
            changes.append(Change(what=what, id=name, before=old, after=new))
    return changes


def _without_since(item: GroupState | InstanceState) -> dict[str, Any]:
    fields = msgspec.structs.asdict(item)
    fields.pop("since")
    return fields
