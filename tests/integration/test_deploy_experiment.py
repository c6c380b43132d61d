"""A short `herd experiment deploy`: under load, a good canary of flix's edge passes its analysis
and is promoted, with every bucketed and pinned visitor on the group its bucket or pin says at
every hop the route splits; then a bad one is judged against the old version, fails at its first
step and rolls back by itself, with at most 1 % of the scenario's requests failed (the full run,
with an edge that fails 10 % of its pages, is in docs/deploy.md).

The bad edge here fails half of its pages: the judge stops it after a few failures whatever the
rate, and this short run's scenarios are short (a few hundred requests, of which 1 % is a few),
so each is held 6 s after its decision, as the full run holds its own 3 s.
"""

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
        "0.5",
        "--scenarios",
        "canary_pass,canary_fail",
        "--rate",
        "50",
        "--visitors",
        "1000",
        "--steps",
        "5,25,100",
        "--analysis",
        "6",
        "--interval",
        "0.5",
        "--min-points",
        "6",
        "--hold",
        "6",
        "--json",
        str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=110,
    )
    # Exit 0: every target of the experiment was met (checked again below, one by one).
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steady, good, bad = json.loads(figures.read_text())["scenarios"]
    assert steady["name"] == "steady" and steady["total"] > 0 and steady["failed"] == 0
    assert (good["decision"], good["canary_score"], good["failed"]) == ("promoted", 100.0, 0), good
    # Both phases the route split (edge mid-canary): every visitor where its bucket or pin says.
    assert good["cohort_consistency_pct"] == 100.0, good
    edge = [hop for hop in good["cohorts"] if hop["service"] == "edge"]
    assert {hop["phase"] for hop in edge} == {"edge-v002 5 %", "edge-v002 25 %"}, edge
    assert sum(hop["bucketed"] for hop in edge) > 100 and sum(hop["pinned"] for hop in edge) > 0
    assert (bad["decision"], bad["decided_at_step"]) == ("rolled_back", 5), bad
    assert bad["rollback_s"] < 2.0
    assert bad["failed"] <= 0.01 * bad["total"], bad
