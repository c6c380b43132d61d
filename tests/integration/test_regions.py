"""A short `herd experiment kong`: flix in two regions of one zone each, under pages and
writes through the global front door; us evacuated, killed whole and brought back (the full
run is in docs/regions.md)."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path

import pytest
import tomli_w

from herd._cloud.app import REGION_PORT_STEP
from tests.helpers import ROOT, free_port
from tests.integration.cloud_helpers import cloud_env, port_taken, run_herd

pytestmark = pytest.mark.timeout(120)

GOAL_PCT = 99.9


def _free_block(regions: int) -> int:
    """A free port whose every region's shift is free too."""
    while True:
        port = free_port()
        shifted = [port + REGION_PORT_STEP * (i + 1) for i in range(regions)]
        if not any(port_taken(p) for p in shifted):
            return port


def write_regions_app(directory: Path) -> Path:
    """flix's app-regions.toml, one zone and one instance per group in each region, on free
    ports, its run directory in `directory`."""
    document = tomllib.loads((ROOT / "examples/flix/app-regions.toml").read_text())
    regions = len(document["regions"])
    document.update(
        root=str(ROOT),
        run_dir=str(directory / "run"),
        zones=["a"],
        registry_port=_free_block(regions),
        control_port=_free_block(regions),
    )
    for group in document["groups"]:
        group["instances"] = 1
    document["front_door"]["port"] = _free_block(regions)
    document["global_front_door"]["port"] = free_port()
    path = directory / "app.toml"
    path.write_text(tomli_w.dumps(document))
    return path


def test_a_region_evacuated_killed_and_brought_back_under_load(tmp_path: Path) -> None:
    app = write_regions_app(tmp_path)
    figures = tmp_path / "kong.json"
    done = run_herd(
        "experiment", "kong", "--app", str(app), "--rate", "20", "--write-rate", "4",
        "--phase-seconds", "1.5", "--step-seconds", "0.3", "--json", str(figures),
        env=cloud_env(tmp_path / "home"),
        timeout=100,
    )  # fmt: skip
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    result = json.loads(figures.read_text())
    phases = {phase["phase"]: phase for phase in result["phases"]}
    assert list(phases) == ["steady", "evacuate", "out", "return", "after"]
    for phase in phases.values():
        assert phase["total"] > 0 and phase["success_pct"] >= GOAL_PCT, (phase, output)
        assert phase["lost"] == 0, (phase, output)
    # Both regions serve their home visitors; while us is gone, eu serves everyone.
    assert set(phases["steady"]["served_by"]) == {"us", "eu"}
    assert set(phases["out"]["served_by"]) == {"eu"}
    assert set(phases["after"]["served_by"]) == {"us", "eu"}
    assert sum(p["acknowledged"] for p in phases.values()) > 0
    assert 0 < result["evacuated_s"] <= result["evacuation_took_s"]
    # The global history has the evacuation and the return, step by step.
    with sqlite3.connect(tmp_path / "run" / "history.sqlite") as db:
        kinds = [kind for (kind,) in db.execute("SELECT kind FROM events ORDER BY seq")]
    assert kinds.count("kong.shifted") == 8 and "kong.killed" in kinds
    assert kinds.count("region.started") == 3  # us and eu, then us again
