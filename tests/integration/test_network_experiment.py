"""A short `herd experiment network`: zone b partitioned from zone a under load, each phase
held to the documented goal, and nothing of the network left behind (the full run is in
docs/network.md). Needs Linux and root, as `--network isolated` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd._cloud.network import isolated
from tests.integration.cloud_helpers import cloud_env, run_herd, write_app
from tests.integration.network_helpers import NEEDS_NAMESPACES, namespaces_kept

pytestmark = [pytest.mark.timeout(150), NEEDS_NAMESPACES]

GOAL_PCT = 99.9


def test_a_partition_between_two_zones_before_during_and_after(tmp_path: Path) -> None:
    with namespaces_kept() as before:
        _run(tmp_path)
        assert sorted(isolated.namespaces()) == before


def _run(tmp_path: Path) -> None:
    app = write_app(tmp_path, "flix")
    figures = tmp_path / "network.json"
    done = run_herd(
        "experiment", "network", "--app", str(app), "--rate", "40", "--phase-seconds", "2",
        "--scenario", "partition-zones", "--json", str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=120,
    )  # fmt: skip
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    result = json.loads(figures.read_text())
    (scenario,) = result["scenarios"]
    assert scenario["fault"] == "b -> a: partition"
    assert [p["phase"] for p in scenario["phases"]] == ["before", "during", "after"]
    for phase in scenario["phases"]:
        assert phase["total"] == 80
        assert phase["success_pct"] >= GOAL_PCT, (phase, output)
    assert 0 <= scenario["route_around_s"] <= 2 and 0 <= scenario["recover_s"] <= 2
