"""A short `herd experiment deploy`: a bad canary (a flix edge that fails 10 % of its pages)
under load is judged against its baseline, fails, and rolls back by itself, and no request
fails but those the bad canary failed (the full run is in docs/deploy.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cloud_helpers import cloud_env, run_herd

pytestmark = pytest.mark.timeout(120)


def test_a_bad_canary_rolls_back_by_itself(tmp_path: Path) -> None:
    figures = tmp_path / "deploy.json"
    done = run_herd(
        "experiment",
        "deploy",
        "--scenarios",
        "canary_fail",
        "--rate",
        "80",
        "--visitors",
        "1000",
        # One analysed step at a quarter of the traffic: enough points quickly.
        "--steps",
        "25,100",
        "--analysis",
        "4",
        "--interval",
        "0.5",
        "--min-points",
        "6",
        "--hold",
        "1",
        "--json",
        str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (scenario,) = json.loads(figures.read_text())["scenarios"]
    assert scenario["decision"] == "rolled_back"
    assert scenario["canary_score"] < 75
    assert scenario["rollback_s"] < 2.0
    assert scenario["failed"] <= scenario["failed_bound"]
