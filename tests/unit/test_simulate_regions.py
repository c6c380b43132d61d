"""`herd simulate --scenario kong` on virtual time: a region evacuated and killed at scale."""

from __future__ import annotations

from herd_tools.simulate.regions import INTER_REGION_S, simulate_kong
from herd_tools.simulate.scenarios import Settings


def test_the_evacuated_regions_visitors_move_pay_the_way_and_nobody_fails() -> None:
    record = simulate_kong(Settings(scenario="kong", instances=60, seconds=9.0, rate=30.0))
    steady, evacuate, out = record["phases"]
    assert [p["phase"] for p in record["phases"]] == ["steady", "evacuate", "out"]
    for phase in record["phases"]:
        assert phase["users"] > 0 and phase["success_pct"] == 100.0, phase
    assert set(steady["served_by"]) == {"us", "eu"}
    assert 0 < evacuate["served_by"]["us"] < steady["served_by"]["us"]
    assert set(out["served_by"]) == {"eu"}
    # us's visitors, about half of them, now cross to eu and back: 70 ms at least.
    round_trip_ms = 2000 * INTER_REGION_S
    assert steady["p50_ms"] < round_trip_ms <= out["p99_ms"]
    assert 0 < record["evacuated_s"] < 3.0
