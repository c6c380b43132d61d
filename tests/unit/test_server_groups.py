"""Server groups as the control plane keeps them: slots fitted to a desired count, spread over
the zones, the latest retired first, every change recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from herd._cloud.app import GroupSpec
from herd._cloud.supervise.groups import ServerGroups
from herd._cloud.supervise.slot import Slot

MOVIE = GroupSpec(service="movie", module="m", instances=2)
ZONES = ["a", "b", "c"]


class _Supervisor:
    """Records what it is asked to do; retires at once."""

    def __init__(self) -> None:
        self.supervised: list[Slot] = []
        self.retired: list[Slot] = []

    def supervise(self, slot: Slot) -> None:
        self.supervised.append(slot)

    def retire(self, slot: Slot, done: Callable[[Slot], None]) -> None:
        self.retired.append(slot)
        done(slot)


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))


def _groups(tmp_path: Path) -> tuple[ServerGroups, _Supervisor, _Recorder, list[tuple[str, str]]]:
    supervisor, recorder, launched = _Supervisor(), _Recorder(), []

    def launch(group: GroupSpec, zone: str, log: Path) -> Any:
        launched.append((group.name, zone))
        return None

    groups = ServerGroups(
        [MOVIE],
        ZONES,
        desired={MOVIE.name: 2},
        supervisor=supervisor,
        recorder=recorder,
        launch=launch,
        log_dir=tmp_path,
    )
    return groups, supervisor, recorder, launched


def test_scaling_spreads_over_the_zones_and_retires_the_latest_first(tmp_path: Path) -> None:
    groups, supervisor, recorder, launched = _groups(tmp_path)
    groups.fit(MOVIE.name)
    groups.scale(MOVIE.name, 5, cause="scale")
    assert [slot.zone for slot in supervisor.supervised] == ["a", "b", "c", "a", "b"]
    assert [slot.index for slot in supervisor.supervised] == [0, 1, 2, 3, 4]
    assert recorder.events == [
        ("group.scaled", {"cause": "scale", "group": "movie-v001", "desired": 5})
    ]
    # Each slot launches its own group's instance in its own zone, logging to its own file.
    supervisor.supervised[3].launch()
    assert launched == [("movie-v001", "a")]
    assert supervisor.supervised[3].log == tmp_path / "movie-v001.slot3.log"

    groups.scale(MOVIE.name, 2, cause="autoscale")
    assert [slot.index for slot in supervisor.retired] == [2, 3, 4]
    assert [slot.zone for slot in groups.slots[MOVIE.name]] == ["a", "b"]
    # A freed index is taken again, in the zone with the fewest.
    groups.scale(MOVIE.name, 3, cause="scale")
    assert (supervisor.supervised[-1].index, supervisor.supervised[-1].zone) == (2, "c")


def test_a_group_added_and_removed_is_recorded_and_forgotten(tmp_path: Path) -> None:
    groups, supervisor, recorder, _ = _groups(tmp_path)
    canary = GroupSpec(service="movie", module="m", version="v002")
    groups.add(canary, 1, cause="deploy")
    assert [slot.group for slot in supervisor.supervised] == [canary]
    groups.remove(canary.name, cause="deploy")
    assert supervisor.retired == supervisor.supervised
    assert canary.name not in groups.specs and canary.name not in groups.slots
    assert [kind for kind, _ in recorder.events] == ["group.created", "group.destroyed"]
    assert groups.addresses(canary.name) == []
