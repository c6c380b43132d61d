"""A short `herd experiment chaos`: two of its scenarios at a low rate, each phase held to the
documented goal, and the figures left where asked (the full run is in docs/chaos.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cloud_helpers import cloud_env, run_herd, write_app

pytestmark = pytest.mark.timeout(150)

#: The documented goal: >= 99.9 % of each phase's requests succeed (here 100 of 100).
GOAL_PCT = 99.9


def test_a_zone_outage_and_merch_errors_before_during_and_after(tmp_path: Path) -> None:
    app = write_app(tmp_path, "flix")
    figures = tmp_path / "chaos.json"
    done = run_herd(
        "experiment", "chaos", "--app", str(app), "--rate", "50", "--phase-seconds", "2",
        "--scenario", "zone-outage", "--scenario", "merch-errors", "--json", str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=120,
    )  # fmt: skip
    output = done.stdout[-3000:] + done.stderr[-3000:]
    # Exit 0: every phase met the goal (checked below from the figures too).
    assert done.returncode == 0, output
    result = json.loads(figures.read_text())
    assert result["goal_pct"] == GOAL_PCT
    assert [s["name"] for s in result["scenarios"]] == ["zone-outage", "merch-errors"]
    for scenario in result["scenarios"]:
        assert [p["phase"] for p in scenario["phases"]] == ["before", "during", "after"]
        for phase in scenario["phases"]:
            assert phase["total"] == 100
            # Retries on other instances and zones hide both faults from users.
            assert phase["success_pct"] >= GOAL_PCT, (scenario["name"], phase, output)
    outage = result["scenarios"][0]
    # flix's 12 instances spread a, b, c: zone b held 4 of them (one per group of 3).
    assert outage["terminated"] >= 3
    assert "zone b out" in outage["fault"]
    assert result["scenarios"][1]["terminated"] == 0
