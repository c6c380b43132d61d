"""What instances report, into the history: each change recorded once."""

from __future__ import annotations

from herd._cloud.interface import InstanceView
from herd._cloud.watch import InstanceWatch


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, dict[str, object]]] = []

    async def ps(self) -> list[InstanceView]:
        return []

    def record(
        self,
        kind: str,
        *,
        cause: str = "",
        group: str | None = None,
        instance: str | None = None,
        **detail: object,
    ) -> None:
        self.events.append((kind, instance, detail))


EDGE = InstanceView("edge-v001-a1", "edge-v001", "edge", "v001", "a", "UP", "x:1", 1, 1.0)


def report(state: str) -> dict[str, object]:
    return {"movie": {"success": 10, "breaker": {"state": state}}, "merch": {"success": 3}}


def test_breaker_changes_are_recorded_once_each() -> None:
    recorder = Recorder()
    watch = InstanceWatch(recorder)
    watch.observe(EDGE, report("closed"))
    assert recorder.events == []
    for state in ("open", "open", "half_open", "closed", "closed"):
        watch.observe(EDGE, report(state))
    assert [(kind, detail["was"]) for kind, _, detail in recorder.events] == [
        ("breaker.opened", "closed"),
        ("breaker.half-open", "open"),
        ("breaker.closed", "half_open"),
    ]
    assert {(instance, detail["dependency"]) for _, instance, detail in recorder.events} == {
        ("edge-v001-a1", "movie")
    }


def view(name: str, status: str, pid: int = 1) -> InstanceView:
    return InstanceView(name, "g", "svc", "v001", "a", status, "x:1" if pid else "", pid, 1.0)


def test_running_instances_that_leave_up_are_down_until_up_again() -> None:
    recorder = Recorder()
    watch = InstanceWatch(recorder)
    watch.statuses([view("i1", "STARTING"), view("i2", "UP")])
    watch.statuses([view("i1", "UP"), view("i2", "UP")])  # a launch: the controller records it
    assert recorder.events == []
    watch.statuses([view("i1", "UP"), view("i2", "STARTING")])  # i2 hung: evicted
    watch.statuses([view("i1", "DOWN", pid=0), view("i2", "STARTING")])  # i1's process ended
    watch.statuses([view("i2", "UP")])
    assert [(kind, instance) for kind, instance, _ in recorder.events] == [
        ("instance.down", "i2"),
        ("instance.up", "i2"),
    ]
