"""A short `herd experiment chaos`: two of its scenarios at a low rate, to check that it runs,
measures every phase and leaves its figures where asked (the full run is in docs/chaos.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cloud_helpers import cloud_env, run_herd, write_app

pytestmark = pytest.mark.timeout(150)


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
    assert done.returncode in (0, 1), output
    result = json.loads(figures.read_text())
    assert [s["name"] for s in result["scenarios"]] == ["zone-outage", "merch-errors"]
    for scenario in result["scenarios"]:
        assert [p["phase"] for p in scenario["phases"]] == ["before", "during", "after"]
        for phase in scenario["phases"]:
            assert phase["total"] == 100
            # Retries on other instances and zones hide most of both faults from users. The
            # bar is low for a shared 2-core machine, yet well above the 67 % that a third of
            # the edges lost without failover would leave.
            assert phase["success_pct"] >= 90.0, (scenario["name"], phase, output)
    outage = result["scenarios"][0]
    # flix's 12 instances spread a, b, c: zone b held 4 of them (one per group of 3).
    assert outage["terminated"] >= 3
    assert "zone b out" in outage["fault"]
    assert result["scenarios"][1]["terminated"] == 0
