"""A short `herd experiment deploy`: under load, a good canary of flix's edge passes its analysis
and is promoted, with the test cell's pinned visitors on it at every hop; then a bad one is
judged against its baseline, fails, and rolls back by itself. No request fails but those the bad
canary was sent (the full run, with an edge that fails 10 % of its pages, is in docs/deploy.md).

The bad edge here fails 30 % of its pages: this short run's data points hold a handful of
requests each, and at 10 % most of them would hold no failure at all, which leaves the judge too
few failing points to tell the canary from its baseline at 0.98 confidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cloud_helpers import cloud_env, run_herd, write_app

pytestmark = pytest.mark.timeout(120)


def test_a_good_canary_is_promoted_and_a_bad_one_rolls_back_by_itself(tmp_path: Path) -> None:
    figures = tmp_path / "deploy.json"
    done = run_herd(
        "experiment",
        "deploy",
        "--app",
        str(write_app(tmp_path, "flix")),
        "--fail-rate",
        "0.3",
        "--scenarios",
        "canary_pass,canary_fail",
        "--rate",
        "40",
        "--visitors",
        "1000",
        # One analysed step at half the traffic: enough points quickly, and a pinned visitor
        # whose bucket is in the other half shows whether its pin, not its bucket, decided.
        "--steps",
        "50,100",
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
    # Exit 0: every deploy ended as it should, and no request failed but the bad canary's.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steady, good, bad = json.loads(figures.read_text())["scenarios"]
    assert steady["name"] == "steady" and steady["total"] > 0 and steady["failed"] == 0
    assert (good["decision"], good["canary_score"]) == ("promoted", 100.0), good
    assert good["failed"] == 0, good
    # Generous for a loaded 2-core machine, where a starved instance's refusals send a few
    # pinned calls' retries elsewhere; without pins, half of them would miss (the 50 % step).
    assert good["cohort_consistency_pct"] >= 80.0, good
    assert bad["decision"] == "rolled_back"
    assert bad["canary_score"] < 75
    assert bad["rollback_s"] < 2.0
    assert bad["failed"] <= bad["failed_bound"]
