"""The history (Edda): a scripted sequence of changes, replayed by every query."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from herd._cloud.history.store import (
    History,
    HistoryQuery,
    InstanceState,
    InvalidTime,
    parse_duration,
    parse_time,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def script(history: History, clock: Clock) -> None:
    """t=1000 a cloud starts with one group of two; t=1010 both up; t=1020 chaos kills one and
    its replacement launches; t=1030 scaled to 3; t=1040 the group is disabled."""
    history.record("cloud.started", app="chain")
    history.record("group.created", group="deep-v001", desired=2)
    history.record("instance.launched", group="deep-v001", instance="deep-v001-a1", zone="a")
    history.record("instance.launched", group="deep-v001", instance="deep-v001-b2", zone="b")
    clock.now = 1010.0
    history.record("instance.up", group="deep-v001", instance="deep-v001-a1")
    history.record("instance.up", group="deep-v001", instance="deep-v001-b2")
    clock.now = 1020.0
    history.record("chaos.kill", cause="chaos", group="deep-v001", instance="deep-v001-a1")
    history.record("instance.terminated", cause="chaos", group="deep-v001", instance="deep-v001-a1")
    history.record("instance.launched", group="deep-v001", instance="deep-v001-a3", zone="a")
    clock.now = 1030.0
    history.record("group.scaled", cause="scale", group="deep-v001", desired=3)
    clock.now = 1040.0
    history.record("group.disabled", cause="deploy", group="deep-v001")


@pytest.fixture
def history(tmp_path: Path) -> History:
    clock = Clock()
    history = History(tmp_path / "history.sqlite", clock=clock)
    script(history, clock)
    return history


def test_events_are_returned_in_order_with_what_was_recorded(history: History) -> None:
    events = history.events()
    assert [e.seq for e in events] == list(range(1, 12))
    kill = events[6]
    assert (kill.kind, kill.cause, kill.group, kill.instance, kill.at) == (
        "chaos.kill",
        "chaos",
        "deep-v001",
        "deep-v001-a1",
        1020.0,
    )
    assert events[1].detail == {"desired": 2}


def test_since_until_group_and_kind_filter_exactly(history: History) -> None:
    assert [e.kind for e in history.events(HistoryQuery(since=1010, until=1030))] == [
        "instance.up",
        "instance.up",
        "chaos.kill",
        "instance.terminated",
        "instance.launched",
    ]
    assert [e.instance for e in history.events(HistoryQuery(kind="instance.launched"))] == [
        "deep-v001-a1",
        "deep-v001-b2",
        "deep-v001-a3",
    ]
    # A kind's prefix matches all of its kinds; a look-alike prefix does not.
    assert len(history.events(HistoryQuery(kind="instance"))) == 6
    assert history.events(HistoryQuery(kind="inst")) == []
    assert history.events(HistoryQuery(group="nope")) == []
    assert [e.kind for e in history.events(HistoryQuery(group="deep-v001", since=1030))] == [
        "group.scaled",
        "group.disabled",
    ]
    assert [e.kind for e in history.events(HistoryQuery(limit=2))] == [
        "group.scaled",
        "group.disabled",
    ]


def test_at_replays_the_state_of_the_cloud_as_of_a_time(history: History) -> None:
    assert history.at(999).groups == [] and history.at(999).instances == []
    early = history.at(1005)
    assert [(g.name, g.desired, g.status) for g in early.groups] == [("deep-v001", 2, "active")]
    assert {(i.id, i.status, i.zone) for i in early.instances} == {
        ("deep-v001-a1", "STARTING", "a"),
        ("deep-v001-b2", "STARTING", "b"),
    }
    after_kill = history.at(1025)
    assert {(i.id, i.status) for i in after_kill.instances} == {
        ("deep-v001-b2", "UP"),
        ("deep-v001-a3", "STARTING"),
    }
    last = history.at(1040)
    assert [(g.desired, g.status) for g in last.groups] == [(3, "disabled")]


def test_diff_names_what_appeared_went_and_changed_and_the_events_between(
    history: History,
) -> None:
    diff = history.diff(1010, 1030)
    changes = {(c.what, c.id): c for c in diff.changes}
    assert set(changes) == {
        ("group", "deep-v001"),
        ("instance", "deep-v001-a1"),
        ("instance", "deep-v001-a3"),
    }
    gone = changes[("instance", "deep-v001-a1")]
    assert isinstance(gone.before, InstanceState) and gone.before.status == "UP"
    assert gone.after is None
    assert changes[("instance", "deep-v001-a3")].before is None
    assert [e.kind for e in diff.events] == [
        "chaos.kill",
        "instance.terminated",
        "instance.launched",
        "group.scaled",
    ]
    with pytest.raises(InvalidTime):
        history.diff(1030, 1010)


def test_the_history_survives_reopening_and_a_new_cloud_starts_from_no_instance(
    tmp_path: Path,
) -> None:
    clock = Clock()
    first = History(tmp_path / "h.sqlite", clock=clock)
    script(first, clock)
    first.close()
    clock.now = 2000.0
    second = History(tmp_path / "h.sqlite", clock=clock)
    second.record("cloud.started", app="chain")
    assert len(second.events()) == 12
    assert second.events()[-1].seq == 12
    state = second.at(2000)
    assert state.instances == [] and [g.name for g in state.groups] == ["deep-v001"]
    assert len(second.at(1040).instances) == 2


def test_times_and_durations_parse_or_fail_clearly() -> None:
    assert parse_duration("300ms") == pytest.approx(0.3)
    assert parse_duration("5m") == 300.0
    assert parse_duration("2") == 2.0
    assert parse_time("90s", now=1000.0) == 910.0
    assert parse_time("1700000000") == 1_700_000_000.0
    iso = "2026-11-30T08:15:00+00:00"
    assert parse_time(iso) == datetime.datetime.fromisoformat(iso).timestamp()
    for bad in ("yesterday", "5 minutes", "-3s", "nan"):
        with pytest.raises(InvalidTime):
            parse_time(bad) if bad != "nan" else parse_duration(bad)


def test_a_quiet_kind_is_kept_but_logged_only_at_debug(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite", quiet=["flow.served"])
    with capture_logs() as logs:
        history.record("flow.served", instance="deep-v001-a1", requests=3)
        history.record("instance.up", instance="deep-v001-a1")
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("flow.served", "debug"),
        ("instance.up", "info"),
    ]
    assert [e.kind for e in history.events()] == ["flow.served", "instance.up"]
