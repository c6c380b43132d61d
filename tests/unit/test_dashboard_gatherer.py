"""The dashboard's gatherer (one poll per instance per second, whoever watches; counters made
rates over a window) and `herd top`'s rendering of a snapshot."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from rich.console import Console

from herd._cloud.dashboard import gatherer as gathering
from herd._cloud.dashboard.gatherer import Gatherer, _served, _Window
from herd._cloud.interface import GroupView, InstanceView
from herd._server.admission import Admission, Mode
from herd._server.metrics import ServerMetrics
from herd_tools.top import render, sparkline


def exposition() -> str:
    """What an edge instance's `/metrics` says after 100 web requests (10 failed, 99 under 0.1 s,
    50 under 0.01 s) and 10 RPCs (5 refused as the caller's fault)."""
    metrics = ServerMetrics("edge")
    for n in range(100):
        seconds = 0.005 if n < 50 else 0.05 if n < 99 else 0.5
        metrics.record("GET /api/home", "internal" if n < 10 else "ok", seconds)
    for n in range(10):
        metrics.record("relay", "bad_request" if n < 5 else "ok", None if n < 5 else 0.001)
    return metrics.exposition().decode()


def test_served_counts_failures_of_the_instance_not_of_the_caller() -> None:
    totals = _served(exposition())
    assert totals["requests"] == 110
    assert totals["failed"] == 10  # a bad request is the caller's fault
    assert totals["web"] == 100
    assert totals["web_failed"] == 10
    # Latency is read from sketches (the front door's, the drivers'), not histogram edges.
    assert not [name for name in totals if name.startswith("le=")]


def test_served_reads_the_limit_and_what_was_shed() -> None:
    admission = Admission(Mode.FIXED, ceiling=7, service="edge")
    admission.shed = {10: 3, 90: 1}
    text = ServerMetrics("edge", collectors=[admission]).exposition().decode()
    totals = _served(text)
    assert totals["limit"] == 7
    assert totals["shed"] == 4


def test_window_turns_counters_into_differences_and_survives_restarts() -> None:
    ticks = deque([(0.0, {"i|n": 10.0}), (1.0, {"i|n": 15.0}), (2.0, {"i|n": 3.0, "j|n": 4.0})])
    window = _Window(ticks)
    assert window.delta("i", "n", 1.0) == 3.0  # went down: restarted, counts from zero
    assert window.delta("j", "n", 10.0) == 4.0  # new: all of it is recent
    assert window.delta("k", "n", 1.0) == 0.0
    assert _Window(deque([(0.0, {"i|n": 10.0}), (1.0, {"i|n": 15.0})])).delta("i", "n", 1) == 5


def view(name: str, address: str) -> InstanceView:
    return InstanceView(name, "edge-v001", "edge", "v001", "a", "UP", address, 1, 3.0)


async def test_one_poll_per_instance_per_interval_however_many_watch(monkeypatch: Any) -> None:
    monkeypatch.setattr(gathering, "INTERVAL_S", 0.2)
    hits: Counter[str] = Counter()

    async def answer(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path == "/metrics":
            return web.Response(text=exposition())
        return web.json_response({})

    application = web.Application()
    application.router.add_get("/{path:.*}", answer)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    instance = view("edge-v001-a1", f"127.0.0.1:{port}")

    async def ps() -> list[InstanceView]:
        return [instance]

    async def groups() -> list[GroupView]:
        return [GroupView("edge-v001", "edge", "v001", 1, 1, 1, "READY")]

    spec = SimpleNamespace(name="test", zones=["a", "b"], region="")
    source: Any = SimpleNamespace(
        app=SimpleNamespace(spec=spec), front_door=None, ps=ps, groups=groups
    )
    gatherer = Gatherer(source)

    async def watcher() -> list[dict[str, Any]]:
        seen = []
        async for snapshot in gatherer.watch():
            seen.append(json.loads(snapshot))
            if len(seen) == 4:
                return seen
        raise AssertionError("the stream ended early")

    try:
        began = time.monotonic()
        watched = await asyncio.wait_for(asyncio.gather(*(watcher() for _ in range(10))), 10)
        took = time.monotonic() - began
        latest = json.loads(await gatherer.latest())
    finally:
        await gatherer.close()
        await runner.cleanup()
    # Ten watchers, four snapshots each: four polls of the instance (a fifth may be under way).
    assert 4 <= hits["/metrics"] <= 5, hits
    assert hits["/herd/dependencies"] == hits["/metrics"]
    assert took >= 3 * 0.2 - 0.05
    assert all(len({s["at"] for s in seen}) == 4 for seen in watched)
    assert latest["groups"][0]["instances"][0]["id"] == "edge-v001-a1"
    assert latest["services"][0]["zones"] == {
        "a": {"up": 1, "total": 1},
        "b": {"up": 0, "total": 0},
    }


def test_top_renders_every_group_instance_and_dependency() -> None:
    snapshot = {
        "app": "chain",
        "zones": ["a", "b"],
        "front_door": {
            "url": "http://127.0.0.1:8080/",
            "service": "edge",
            "rps": 50.0,
            "success_pct": 99.5,
            "p99_ms": 25.0,
            "history": [[0.0, 49.0, 100.0, 20.0], [1.0, 50.0, 99.5, 25.0]],
        },
        "services": [
            {"name": "edge", "rps": 50.0, "error_pct": 0.5, "zones": {"a": {"up": 1, "total": 1}}}
        ],
        "edges": [
            {
                "from": "edge",
                "to": "deep",
                "rps": 12.0,
                "error_pct": 80.0,
                "p50_ms": 1.0,
                "p99_ms": 9.0,
                "breaker": "open",
                "open": 1,
                "reporting": 2,
                "requests": 40,
                "failures": 32,
                "budget_balance": 3.5,
                "bulkhead_in_use": 0,
                "bulkhead_max": 512,
            }
        ],
        "groups": [
            {
                "name": "edge-v001",
                "version": "v001",
                "desired": 1,
                "running": 1,
                "up": 1,
                "status": "READY",
                "instances": [{"id": "edge-v001-a1", "zone": "a", "status": "UP", "rps": 50.0}],
            }
        ],
        "panels": [
            {
                "id": "chaos",
                "title": "chaos",
                "columns": ["when", "what"],
                "rows": [["now", "kill"]],
            }
        ],
    }
    console = Console(width=200, record=True, color_system=None)
    console.print(render(snapshot))
    text = console.export_text()
    for expected in (
        "edge-v001",
        "edge-v001-a1",
        "edge → deep",
        "open (1/2)",
        "40/32",
        "99.50",
        "kill",
    ):
        assert expected in text, expected
    assert sparkline([0, 1, 2]) == "▁▄█"
