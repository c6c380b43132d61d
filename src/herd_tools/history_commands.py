"""What `herd history` does: events, a state or a diff, as tables or JSON on stdout."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from herd._cloud.history.store import (
    CloudState,
    Diff,
    Event,
    GroupState,
    HistoryQuery,
    InstanceState,
    InvalidTime,
    parse_time,
)
from herd_tools.cloud_commands import ask
from herd_tools.output import Column, print_table, usage


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).isoformat(sep=" ", timespec="milliseconds")


def _detail(detail: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in detail.items())


def _time(text: str | None, option: str) -> float | None:
    """The time `text` names, or None when not given; a malformed one is a usage mistake."""
    if not text:
        return None
    try:
        return parse_time(text)
    except InvalidTime as exc:
        raise usage(f"{option}: {exc}") from None


def history_command(
    *,
    since: str | None,
    until: str | None,
    at: str | None,
    diff: str | None,
    group: str | None,
    kind: str | None,
    limit: int,
    as_json: bool,
    served_by: str | None = None,
    address: str | None = None,
) -> None:
    """Print events, a state, a diff, or the request flow: as a table, or as JSON."""
    first = _time(since, "--since")
    last = _time(until, "--until")
    if served_by is not None or address is not None:
        _flow(served_by, address, first, last, as_json)
        return
    when = _time(at, "--at")
    span: tuple[float, float] | None = None
    if diff:
        left, sep, right = diff.partition(",")
        if not sep:
            raise usage("--diff takes two times: T1,T2", "e.g. --diff 10m,1m")
        span = (_time(left, "--diff") or 0.0, _time(right, "--diff") or 0.0)

    answer: list[Event] | CloudState | Diff
    if when is not None:
        answer = ask(lambda api: api.history_at(when))
    elif span is not None:
        answer = ask(lambda api: api.history_diff(*span))
    else:
        query = HistoryQuery(since=first, until=last, group=group, kind=kind, limit=limit)
        answer = ask(lambda api: api.history_events(query))
    if as_json:
        print(msgspec.json.encode(answer).decode())
    elif isinstance(answer, CloudState):
        _print_state(answer)
    elif isinstance(answer, Diff):
        _print_diff(answer)
    else:
        _print_events(answer, "history")


def _print_events(events: list[Event], title: str) -> None:
    columns = [
        Column("time"),
        Column("kind"),
        Column("group", drop=2),
        Column("instance"),
        Column("cause", drop=3),
        Column("detail", drop=4),
    ]
    rows = [
        [
            _when(event.at),
            event.kind,
            event.group or "-",
            event.instance or "-",
            event.cause or "-",
            _detail(event.detail),
        ]
        for event in events
    ]
    print_table(title, columns, rows)


def _print_state(state: CloudState) -> None:
    print_table(
        f"groups as of {_when(state.at)}",
        [Column("group"), Column("desired", right=True), Column("status"), Column("since")],
        [[g.name, str(g.desired), g.status, _when(g.since)] for g in state.groups],
    )
    print_table(
        f"instances as of {_when(state.at)}",
        [
            Column("instance"),
            Column("group", drop=2),
            Column("zone", drop=1),
            Column("status"),
            Column("since"),
        ],
        [[v.id, v.group or "-", v.zone, v.status, _when(v.since)] for v in state.instances],
    )


def _state_text(item: GroupState | InstanceState | None) -> str:
    if item is None:
        return "-"
    if isinstance(item, GroupState):
        return f"desired {item.desired}, {item.status}"
    return f"{item.status} in {item.zone}"


def _print_diff(diff: Diff) -> None:
    print_table(
        f"{_when(diff.since)} -> {_when(diff.until)}",
        [Column("what"), Column("id"), Column("before"), Column("after")],
        [
            [change.what, change.id, _state_text(change.before), _state_text(change.after)]
            for change in diff.changes
        ],
    )
    _print_events(diff.events, "events between")


def _flow(
    service: str | None,
    address: str | None,
    since: float | None,
    until: float | None,
    as_json: bool,
) -> None:
    """Who served a service's requests, or who ever had an address."""
    if service is not None:
        served = ask(lambda api: api.history_served(service, since, until))
        if as_json:
            print(msgspec.json.encode(served).decode())
            return
        print_table(
            f"instances that served {service}",
            [
                Column("instance"),
                Column("version"),
                Column("zone", drop=2),
                Column("requests", right=True, drop=1),
                Column("first", drop=3),
                Column("last", drop=3),
            ],
            [
                [v.instance, v.version, v.zone, str(v.requests), _when(v.first), _when(v.last)]
                for v in served
            ],
        )
    if address is not None:
        had = ask(lambda api: api.history_address(address))
        if as_json:
            print(msgspec.json.encode(had).decode())
            return
        print_table(
            f"instances that had {address}",
            [Column("instance"), Column("group", drop=1), Column("up at")],
            [[v.instance, v.group, _when(v.at)] for v in had],
        )
