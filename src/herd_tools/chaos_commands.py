"""What `herd history` and `herd chaos ...` do (the CLI only parses arguments)."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from rich.table import Table

from herd._cloud.history.store import (
    CloudState,
    Diff,
    Event,
    GroupState,
    InstanceState,
    InvalidTime,
    parse_duration,
    parse_time,
)
from herd._cloud.interface import ChaosView, CloudApi
from herd._model.errors import ConfigurationError
from herd_tools.cloud_commands import ask, console, fails_cleanly


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).isoformat(sep=" ", timespec="milliseconds")


def _detail(detail: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in detail.items())


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
) -> None:
    """Print events, a state or a diff: as a table, or as JSON."""
    with fails_cleanly():
        first = parse_time(since) if since else None
        last = parse_time(until) if until else None
        when = parse_time(at) if at else None
        span: tuple[float, float] | None = None
        if diff:
            left, sep, right = diff.partition(",")
            if not sep:
                raise ConfigurationError("--diff takes two times: T1,T2")
            span = (parse_time(left), parse_time(right))

    answer: list[Event] | CloudState | Diff
    if when is not None:
        answer = ask(lambda api: api.history_at(when))
    elif span is not None:
        answer = ask(lambda api: api.history_diff(*span))
    else:
        answer = ask(
            lambda api: api.history_events(
                since=first, until=last, group=group, kind=kind, limit=limit
            )
        )
    if as_json:
        print(msgspec.json.encode(answer).decode())
    elif isinstance(answer, CloudState):
        _print_state(answer)
    elif isinstance(answer, Diff):
        _print_diff(answer)
    else:
        _print_events(answer, "history")


def _print_events(events: list[Event], title: str) -> None:
    table = Table("time", "kind", "group", "instance", "cause", "detail", title=title)
    for event in events:
        table.add_row(
            _when(event.at),
            event.kind,
            event.group or "-",
            event.instance or "-",
            event.cause or "-",
            _detail(event.detail),
        )
    console.print(table)


def _print_state(state: CloudState) -> None:
    groups = Table("group", "desired", "status", "since", title=f"groups as of {_when(state.at)}")
    for group in state.groups:
        groups.add_row(group.name, str(group.desired), group.status, _when(group.since))
    console.print(groups)
    instances = Table(
        "instance", "group", "zone", "status", "since", title=f"instances as of {_when(state.at)}"
    )
    for view in state.instances:
        instances.add_row(view.id, view.group or "-", view.zone, view.status, _when(view.since))
    console.print(instances)


def _state_text(item: GroupState | InstanceState | None) -> str:
    if item is None:
        return "-"
    if isinstance(item, GroupState):
        return f"desired {item.desired}, {item.status}"
    return f"{item.status} in {item.zone}"


def _print_diff(diff: Diff) -> None:
    table = Table(
        "what", "id", "before", "after", title=f"{_when(diff.since)} -> {_when(diff.until)}"
    )
    for change in diff.changes:
        table.add_row(change.what, change.id, _state_text(change.before), _state_text(change.after))
    console.print(table)
    _print_events(diff.events, "events between")


def duration(text: str, option: str) -> float:
    """Seconds in a `--for`-style duration; a clear error (exit 1) when it is not one."""
    try:
        return parse_duration(text)
    except InvalidTime as exc:
        console.print(f"herd: {option}: {exc}", style="red", markup=False, highlight=False)
        raise SystemExit(1) from None


def chaos_command(call: Callable[[CloudApi], Awaitable[ChaosView]], as_json: bool) -> None:
    """Run one chaos action (or read the status) and print what chaos does now."""
    view = ask(call)
    if as_json:
        print(msgspec.json.encode(view).decode())
        return
    state = "paused" if view.paused else "on"
    monkey = Table(
        "group", "mean", "min healthy", "leashed", "next in", "waiting", title=f"monkey ({state})"
    )
    for watched in view.monkey:
        monkey.add_row(
            watched.group,
            f"{watched.mean_interval_s:g}s",
            str(watched.min_healthy),
            "yes" if watched.leashed else "no",
            f"{watched.next_in_s:.1f}s",
            watched.waiting or "-",
        )
    console.print(monkey)
    faults = Table("instance", "method", "latency", "error rate", "percent", "left", title="faults")
    for injected in view.injections:
        fault = injected.fault
        faults.add_row(
            injected.instance,
            fault.method or "*",
            f"{fault.latency_ms:g}ms",
            f"{fault.error_rate:g}",
            f"{fault.percent:g}",
            f"{injected.left_s:.0f}s",
        )
    console.print(faults)
    outages = Table("zone", "left", "stopped", title="zone outages")
    for outage in view.outages:
        outages.add_row(outage.zone, f"{outage.left_s:.0f}s", " ".join(outage.stopped))
    console.print(outages)
