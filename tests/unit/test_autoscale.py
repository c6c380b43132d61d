"""The autoscaler's decisions on a manual clock, and the app file's autoscale settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd._cloud.app import AutoscaleSpec, load
from herd._cloud.autoscale.policy import SHORT_WINDOW_S, Autoscaler, Decision
from herd._model.clock import ManualClock
from herd._model.errors import ConfigurationError
from herd_tools.experiments.autoscale import AutoscaleResult, GroupFigures, Phase, Ramp, Run

SPEC = AutoscaleSpec(min=2, max=8, target_inflight=4, scale_in_after_s=60, scale_in_every_s=10)


def run(
    scaler: Autoscaler, clock: ManualClock, count: int, per_instance: float, seconds: int
) -> tuple[int, list[Decision]]:
    """Feed `seconds` one-second ticks of `per_instance` from every instance, applying each
    decision as the controller does; the count at the end and every decision."""
    decisions = []
    for _ in range(seconds):
        clock.advance(1.0)
        decision = scaler.decide(count, [per_instance] * count)
        decisions.append(decision)
        count = decision.desired
    return count, decisions


def test_scales_out_at_once_when_above_target() -> None:
    clock = ManualClock()
    scaler = Autoscaler(SPEC, clock=clock)
    count, _ = run(scaler, clock, 2, 3.0, 10)
    assert count == 2
    clock.advance(1.0)
    # 2 x 7 = 14 in flight against 4 each: on the first tick above target, the short average
    # (6, 6 and 14 in flight: 8.7) already wants a third instance.
    decision = scaler.decide(2, [7.0, 7.0])
    assert decision.action == "out"
    assert not decision.panic
    assert decision.desired == 3
    assert "target 4" in decision.reason


def test_panic_acts_on_the_latest_figure_and_blocks_scale_in() -> None:
    clock = ManualClock()
    scaler = Autoscaler(SPEC, clock=clock)
    run(scaler, clock, 2, 1.0, 10)
    clock.advance(1.0)
    decision = scaler.decide(2, [10.0, 10.0])  # 2.5 x the target
    assert decision.panic
    assert decision.action == "out"
    assert decision.desired == 5  # ceil(20 / 4), not the calmer average
    assert decision.reason.startswith("panic")
    # The load vanishes: no scale-in while panicking (60 s from the last panicking figure).
    count, decisions = run(scaler, clock, 5, 0.0, 59)
    assert count == 5
    assert all(d.action == "hold" for d in decisions)
    assert any("panic" in d.reason for d in decisions)


def test_never_beyond_max() -> None:
    clock = ManualClock()
    scaler = Autoscaler(SPEC, clock=clock)
    count, _ = run(scaler, clock, 2, 100.0, 5)
    assert count == SPEC.max


def test_scales_in_one_at_a_time_after_the_window() -> None:
    clock = ManualClock()
    scaler = Autoscaler(SPEC, clock=clock)
    count, decisions = run(scaler, clock, 6, 0.5, 59)
    # 3 in flight over 6 instances wants the minimum, but a whole window must agree first.
    assert count == 6
    assert "waits" in decisions[-1].reason
    count, decisions = run(scaler, clock, count, 0.5, 2)
    assert count == 5
    changes = [d for d in decisions if d.action == "in"]
    assert len(changes) == 1 and changes[0].desired == 5
    # Then one every scale_in_every_s (10 s), down to the minimum and no further.
    count, decisions = run(scaler, clock, count, 0.5, 60)
    assert count == SPEC.min
    steps = [d for d in decisions if d.action == "in"]
    assert [d.desired for d in steps] == [4, 3, 2]


def test_a_busy_moment_restarts_the_scale_in_wait() -> None:
    clock = ManualClock()
    scaler = Autoscaler(SPEC, clock=clock)
    count, _ = run(scaler, clock, 4, 0.5, 50)
    # A few seconds at the target want all 4 again: that holds them for another whole window.
    count, decisions = run(scaler, clock, count, 4.0, 3)
    assert count == 4 and decisions[-1].reason.endswith("steady")
    count, _ = run(scaler, clock, count, 0.5, 55)
    assert count == 4
    count, _ = run(scaler, clock, count, 0.5, 10)
    assert count == 3


def test_no_figures_holds() -> None:
    clock = ManualClock()
    scaler = Autoscaler(SPEC, clock=clock)
    decision = scaler.decide(3, [])
    assert decision.action == "hold" and decision.desired == 3
    assert decision.reporting == 0


def test_a_count_outside_the_bounds_is_brought_back() -> None:
    scaler = Autoscaler(SPEC, clock=ManualClock())
    assert scaler.decide(1, [0.0]).desired == 2
    assert scaler.decide(12, [0.0] * 12).desired == 8


def test_the_short_average_smooths_one_spike() -> None:
    clock = ManualClock()
    scaler = Autoscaler(SPEC, clock=clock)
    run(scaler, clock, 4, 2.0, int(SHORT_WINDOW_S) + 2)
    clock.advance(1.0)
    # 4 x 7.9 is just under twice the target: no panic, and the average stays under the target.
    decision = scaler.decide(4, [7.9] * 4)
    assert not decision.panic
    assert decision.action == "hold"


def test_cpu_target() -> None:
    spec = AutoscaleSpec(min=1, max=4, target_cpu=20)
    clock = ManualClock()
    scaler = Autoscaler(spec, clock=clock)
    clock.advance(1.0)
    decision = scaler.decide(1, [30.0])
    assert decision.desired == 2
    assert "% CPU" in decision.reason


def test_defaults() -> None:
    spec = AutoscaleSpec()
    assert (spec.min, spec.max, spec.metric, spec.target) == (2, 8, "cpu", 50.0)
    assert spec.problem() is None


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("{ min = 0 }", "group movie-v001: autoscale.min must be >= 1"),
        ("{ min = 4, max = 3 }", "autoscale.max (3) must be >= autoscale.min (4)"),
        ("{ target_inflight = 4, target_cpu = 50 }", "target_inflight or target_cpu, not both"),
        ("{ target_inflight = 0 }", "target must be > 0"),
        ("{ target_cpu = 150 }", "percent of one core: at most 100"),
        ("{ scale_in_after_s = -1 }", "must be > 0"),
        ("{ mn = 2 }", "unknown field `mn` - at `$.groups[0].autoscale`"),
    ],
)
def test_impossible_settings_are_refused(tmp_path: Path, setting: str, message: str) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        f'name = "x"\n[[groups]]\nservice = "movie"\nmodule = "m"\nautoscale = {setting}\n'
    )
    with pytest.raises(ConfigurationError) as caught:
        load(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_the_app_file_reads_autoscale(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        'name = "x"\n[[groups]]\nservice = "movie"\nmodule = "m"\n'
        "autoscale = { min = 2, max = 8, target_inflight = 4 }\n"
    )
    group = load(path).spec.groups[0]
    assert group.autoscale == AutoscaleSpec(min=2, max=8, target_inflight=4)
    assert group.autoscale.metric == "inflight"


def test_the_experiment_ramp() -> None:
    ramp = Ramp(20, 400, 180)
    assert [(name, round(start), round(end)) for name, start, end in ramp.phases()] == [
        ("low", 0, 20),
        ("up", 20, 60),
        ("peak", 60, 100),
        ("down", 100, 140),
        ("after", 140, 180),
    ]
    assert [ramp.rate(t) for t in (0, 19.9, 40, 80, 120, 179.9)] == pytest.approx(
        [20, 20, 210, 400, 210, 20]
    )
    with pytest.raises(ValueError, match="low <= peak"):
        Ramp(400, 20, 180)


def _run(autoscale: bool, cost: float, p99: float, scale_in: float | None) -> Run:
    grown = GroupFigures("edge-v001", 1, 3, 10.0, scale_in)
    phase = Phase("peak", 0, 10, 1000, 0, 100.0, p99)
    return Run(
        autoscale=autoscale,
        success_pct=100.0,
        p99_ms=p99,
        instance_seconds=cost,
        phases=[phase],
        groups=[grown],
        timeline=[],
        decisions=[],
    )


def test_the_experiment_judges_cost_latency_and_scale_in() -> None:
    def missed(scaled: Run) -> list[str]:
        fixed = _run(False, 1000.0, 100.0, None)
        return AutoscaleResult(
            low=20, peak=400, duration_s=90, policy={}, runs=[scaled, fixed]
        ).missed()

    assert missed(_run(True, 600.0, 150.0, 30.0)) == []
    (cost,) = missed(_run(True, 601.0, 150.0, 30.0))
    assert "601 instance-seconds" in cost
    (latency,) = missed(_run(True, 600.0, 151.0, 30.0))
    assert "p99 151 ms" in latency
    (back,) = missed(_run(True, 600.0, 150.0, None))
    assert "not back" in back
