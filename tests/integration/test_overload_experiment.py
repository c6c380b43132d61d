"""A short `herd experiment overload`: adaptive limits with priorities against three times
flix's capacity, its figures in the documented shape (the full run, four configurations with a
30 s spike, is in docs/overload.md).

A few seconds on a shared machine cannot honestly hold the full run's targets (capacity is
measured in a second, a two-second spike is mostly its first wave, and two seconds after it are
too few to judge recovery); what it can assert is the run itself, the shape of the figures, that
most of the critical work and a fair share of the capacity were served in the spike, and that
best-effort work was shed before critical work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cloud_helpers import cloud_env, run_herd, write_app

pytestmark = pytest.mark.timeout(150)

SERVICES = ("identity", "movie", "merch", "history", "edge")


def test_a_short_spike_sheds_best_effort_before_critical(tmp_path: Path) -> None:
    # One instance per service: the cloud starts in a few seconds and every hop is shared.
    app = write_app(tmp_path, "flix", instances=dict.fromkeys(SERVICES, 1))
    figures = tmp_path / "overload.json"
    done = run_herd(
        "experiment", "overload", "--app", str(app), "--config", "adaptive_priority",
        "--phase-seconds", "2", "--spike-seconds", "2", "--capacity-seconds", "1",
        "--critical-target", "30", "--goodput-target", "0.3", "--recovery-target", "inf",
        "--json", str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=120,
    )  # fmt: skip
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    result = json.loads(figures.read_text())
    (config,) = result["configs"]
    assert config["name"] == "adaptive_priority"
    assert config["capacity_rps"] > 0
    assert [p["phase"] for p in config["phases"]] == ["base", "spike", "after"]
    assert set(config["phases"][0]) == {
        "phase", "goodput_rps", "critical_success_pct", "best_effort_success_pct", "p99_ms",
        "critical_p99_ms",
    }  # fmt: skip
    base, spike, _after = config["phases"]
    assert base["critical_success_pct"] >= 99.0, output
    assert spike["critical_success_pct"] >= spike["best_effort_success_pct"], output
