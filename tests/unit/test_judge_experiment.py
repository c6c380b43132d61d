"""A short `herd experiment judge`: 40 simulated deploys per case on virtual time; it exits 0,
and the figures it states as its targets (issue 25's, with its own number of runs) are met."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from herd_tools.cli import app
from herd_tools.experiments.judge import CASES


def test_a_short_run_meets_its_targets(tmp_path: Path) -> None:
    figures = tmp_path / "judge.json"
    done = CliRunner().invoke(app, ["experiment", "judge", "--runs", "40", "--json", str(figures)])
    assert done.exit_code == 0, done.output
    result = json.loads(figures.read_text())
    cases = {case["name"]: case for case in result["cases"]}
    assert list(cases) == [case.name for case in CASES]
    for case in result["cases"]:
        assert set(case) >= {
            "name",
            "kind",
            "runs",
            "failed_pct",
            "first_step_pct",
            "median_decision_s",
        }
        assert case["runs"] == 40
    stated = {(t["case"], t["key"]): t for t in result["targets"]}
    assert len(stated) == 6
    for (name, key), target in stated.items():
        figure = cases[name][key]
        assert figure >= target["value"] if target["at_least"] else figure <= target["value"]
    assert stated[("good", "failed_pct")]["value"] == 1.0
    assert stated[("errors+10", "median_decision_s")]["value"] == 30.0
    # A bad canary is told from a good one: the judge's failures are not a coin's.
    assert cases["errors+10"]["failed_pct"] == 100.0 and cases["good"]["failed_pct"] <= 2.5


def test_missed_targets_exit_1(tmp_path: Path) -> None:
    # At one request a second a 5 % canary serves too few requests to have data: no data is no
    # evidence that it is fine, so even a good canary fails.
    done = CliRunner().invoke(
        app, ["experiment", "judge", "--runs", "5", "--rate", "1", "--cases", "good"]
    )
    assert done.exit_code == 1
    assert "good: failed_pct should be at most 1" in str(done.exception)
