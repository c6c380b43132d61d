"""`herd top --once` in a pipe: the dashboard's figures as plain aligned tables, every name whole,
no box drawn, whatever the terminal's width."""

from __future__ import annotations

from typing import Any

import pytest

from herd_tools.top import print_plain

LONG = "recommendation-rows-for-the-home-page"


def snapshot() -> dict[str, Any]:
    instance = {"id": f"{LONG}-v001-a1", "zone": "a", "status": "UP", "rps": 3.2}
    return {
        "app": "flix",
        "zones": ["a", "b"],
        "front_door": {
            "url": "http://127.0.0.1:8080/",
            "service": "edge",
            "rps": 12.5,
            "success_pct": 99.5,
            "p99_ms": 21.04,
            "history": [[0, 12.5, 99.5, 21.0]],
        },
        "services": [
            {"name": LONG, "rps": 3.2, "error_pct": 0.0, "zones": {"a": {"up": 1, "total": 1}}}
        ],
        "edges": [
            {
                "from": "edge",
                "to": LONG,
                "breaker": "closed",
                "open": 0,
                "reporting": 2,
                "rps": 3.2,
                "error_pct": 0.0,
                "p50_ms": 1.5,
                "p99_ms": 4.25,
                "requests": 32,
                "failures": 0,
                "budget_balance": None,
                "bulkhead_in_use": 1,
                "bulkhead_max": 768,
            }
        ],
        "groups": [
            {
                "name": f"{LONG}-v001",
                "version": "v001",
                "desired": 1,
                "running": 1,
                "up": 1,
                "status": "READY",
                "instances": [instance],
            }
        ],
        "panels": [{"title": "deploys", "columns": ["service", "step"], "rows": [[LONG, "5 %"]]}],
    }


def test_once_in_a_pipe_prints_every_figure_whole_and_no_box(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    print_plain(snapshot())
    shown = capsys.readouterr().out
    for whole in (
        f"{LONG}-v001-a1 a UP 3/s",
        f"edge → {LONG}",
        "closed (0/2)",
        "1/1 up",
        "21.0",
        "1/768",
        "5 %",
    ):
        assert whole in shown, shown
    assert not set("┃│━─┏┓┗┛╇┡") & set(shown), shown
    assert "…" not in shown
    titles = ["front door http://127.0.0.1:8080/ → edge", "services", "server groups", "deploys"]
    assert all(title in shown.splitlines() for title in titles), shown
