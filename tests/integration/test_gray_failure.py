"""A short `herd experiment gray-failure`: one instance of every flix group stalls (SIGSTOP)
under load through the front door, and no request fails (the full run and its figures are in
benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cloud_helpers import cloud_env, run_herd, write_app

pytestmark = pytest.mark.timeout(120)


def test_stalled_instances_cost_no_request(tmp_path: Path) -> None:
    app = write_app(tmp_path, "flix")
    figures = tmp_path / "gray.json"
    done = run_herd(
        "experiment",
        "gray-failure",
        "--app",
        str(app),
        "--rate",
        "100",
        "--duration",
        "8",
        "--pause-at",
        "2",
        "--pause",
        "4",
        "--json",
        str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=90,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(figures.read_text())
    windows = {w["phase"]: w for w in result["windows"]}
    # One instance of each of flix's five groups was stopped, and nobody noticed.
    assert len(result["paused"]) == 5
    assert result["failed_by_kind"] == {}
    assert windows["all"]["sent"] == 800
    assert windows["stalled"]["sent"] == 400
    assert windows["stalled"]["failed"] == 0
    # Generous for a loaded 2-core machine; the talk's naive stack waits out whole timeouts.
    assert windows["stalled"]["p99_ms"] < 500
