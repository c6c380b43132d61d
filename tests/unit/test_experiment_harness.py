"""What every experiment's end shares: its figures written where asked, and an exit code that is
0 only when every target was met; and the targets themselves, judged from figures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import msgspec
import pytest

from herd_tools.experiments.chaos import ChaosResult, Phase, Scenario
from herd_tools.experiments.harness import conclude
from herd_tools.experiments.retry_storm import Load, Outcome, Single
from herd_tools.experiments.retry_storm_report import missed
from herd_tools.output import Failure
from tests.helpers import herd_cli


class _Figures(msgspec.Struct):
    served: int


def test_met_targets_write_the_figures_and_return(tmp_path: Path) -> None:
    drawn: list[tuple[_Figures, Path]] = []
    figures = tmp_path / "out" / "figures.json"
    conclude(
        _Figures(7),
        [],
        json_path=figures,
        plot=lambda result, path: drawn.append((result, path)),
        plot_path=tmp_path / "plot.png",
    )
    assert json.loads(figures.read_text()) == {"served": 7}
    assert drawn == [(_Figures(7), tmp_path / "plot.png")]


def test_missed_targets_fail_naming_each_after_writing(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    with pytest.raises(Failure) as failed:
        conclude(_Figures(3), ["a: 98 %, target 99.9 %", "b: 2 lost"], json_path=figures)
    assert "2 target(s) missed" in str(failed.value)
    assert "a: 98 %, target 99.9 %" in str(failed.value) and "b: 2 lost" in str(failed.value)
    assert json.loads(figures.read_text()) == {"served": 3}


def _chaos(success_pct: float, goal_pct: float) -> ChaosResult:
    phase = Phase("during", 100, 100 - round(success_pct), success_pct, 50.0, 0.0)
    scenario = Scenario("merch-errors", "10 % fail", [phase], {}, {}, 0)
    return ChaosResult(50.0, 2.0, [scenario], goal_pct)


def test_a_chaos_phase_below_its_goal_is_a_miss() -> None:
    assert _chaos(100.0, 99.9).problems() == []
    assert _chaos(99.0, 99.9).problems() == ["merch-errors/during: 99 % succeeded, target 99.9 %"]
    assert _chaos(99.0, 95.0).problems() == []


_SINGLE = Single(
    edge_latency_s=6.1,
    answered=False,
    outcome="timeout",
    middle_sent=9,
    deep_received=9,
    deep_received_hanging=9,
    deep_received_healthy=0,
    middle_running_at_answer=1,
    middle_sent_after_answer=2,
    deep_still_held=0,
)
_LOAD = Load(
    requests=120,
    succeeded=120,
    success_pct=100.0,
    p50_s=0.1,
    p99_s=1.1,
    middle_sent=130,
    deep_received=130,
    deep_received_hanging=10,
    amplification=1.08,
    peak_middle_inflight=4,
)


def test_the_retry_storm_targets_are_the_talks() -> None:
    storm = [
        Outcome("naive", _SINGLE, dataclasses.replace(_LOAD, amplification=4.5)),
        Outcome("telescoped", dataclasses.replace(_SINGLE, edge_latency_s=2.1, middle_sent=2)),
        Outcome("herd", dataclasses.replace(_SINGLE, edge_latency_s=1.1, answered=True), _LOAD),
    ]
    assert missed(storm) == []
    storm[0] = Outcome("naive", dataclasses.replace(_SINGLE, middle_sent=3), _LOAD)
    storm[2] = Outcome("herd", storm[2].single, dataclasses.replace(_LOAD, success_pct=90.0))
    assert [problem.split(":")[0] for problem in missed(storm)] == [
        "naive single",
        "herd load",
        "naive load",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["experiment", "chaos", "--scenario", "earthquake"],
        ["experiment", "chaos", "--goal", "101"],
        ["experiment", "deploy", "--scenarios", "nope"],
        ["experiment", "autoscale", "--low", "0"],
        ["experiment", "gray-failure", "--pause-at", "15", "--pause", "10"],
        ["experiment", "durability", "--whole", "-1"],
        ["experiment", "durability", "--kill-every", "0"],
        ["experiment", "retry-storm", "--rate", "0"],
    ],
)
def test_a_bad_experiment_option_is_a_usage_mistake(args: list[str]) -> None:
    ran = herd_cli(*args)
    assert ran.code == 2, ran
    assert ran.stdout == ""
    assert ran.stderr.startswith("herd: ") and ran.stderr.count("\n") == 1, ran.stderr
