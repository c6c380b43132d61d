"""Request flow in the history: which instances and versions served a service, from the kept
traces' spans, and every instance that had an address."""

from __future__ import annotations

from pathlib import Path

from herd._cloud.history.store import History
from herd._cloud.traces.flow import Flow, at_address, served
from herd._cloud.traces.store import SpanView


def handled(service: str, instance: str, version: str, kind: str = "server") -> SpanView:
    return SpanView(
        "t" * 32, instance, None, service, instance, "movie presentation", kind, 0.0, 1.0,
        False, {}, group=f"{service}-{version}", version=version, zone="a",
    )  # fmt: skip


def test_which_instances_and_versions_served_a_service_between_two_times(tmp_path: Path) -> None:
    now = [1000.0]
    history = History(tmp_path / "history.sqlite", clock=lambda: now[0])
    flow = Flow(history, every_s=10.0)
    flow.saw([handled("movie", "movie-1", "v001"), handled("movie", "movie-1", "v001")])
    flow.saw([handled("merch", "merch-1", "v001"), handled("movie", "m-x", "v001", "client")])
    flow.flush(now[0])
    now[0] = 1005.0
    flow.saw([handled("movie", "movie-9", "v002")])
    flow.flush(now[0])  # not yet: every 10 s
    now[0] = 1010.0
    flow.flush(now[0])
    found = served(history, "movie", None, None)
    assert [(v.instance, v.version, v.requests) for v in found] == [
        ("movie-1", "v001", 2),
        ("movie-9", "v002", 1),
    ]
    assert [v.instance for v in served(history, "movie", 1001.0, 2000.0)] == ["movie-9"]
    assert served(history, "identity", None, None) == []
    history.close()


def test_every_instance_that_ever_had_an_address(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite")
    history.record("instance.up", group="movie-v001", instance="movie-1", address="127.0.0.1:9")
    history.record("instance.up", group="movie-v001", instance="movie-2", address="127.0.0.1:8")
    history.record("instance.up", group="movie-v002", instance="movie-3", address="127.0.0.1:9")
    assert [v.instance for v in at_address(history, "127.0.0.1:9")] == ["movie-1", "movie-3"]
    history.close()
