"""Breakers into the history: each change an instance reports is recorded once."""

from __future__ import annotations

from herd._cloud.breakers import BreakerWatch
from herd._cloud.interface import InstanceView


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
    watch = BreakerWatch(recorder)
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
