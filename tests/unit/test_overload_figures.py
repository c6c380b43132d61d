"""The overload experiment's figures from samples: recovery after the spike, and the targets
judged on adaptive_priority's spike only."""

from __future__ import annotations

import math

from herd_tools.experiments.overload import (
    ConfigFigures,
    OverloadResult,
    PhaseFigures,
    recovery_s,
)
from herd_tools.experiments.overload_load import Sample


def _second(start: float, ok: bool, latency: float) -> list[Sample]:
    return [Sample(start + i / 20, latency, ok, i % 2 == 0) for i in range(20)]


def test_recovery_is_the_first_second_back_to_the_bases_success_and_p99() -> None:
    base = [s for t in range(4) for s in _second(t, True, 0.01)]
    spike = [s for t in range(4, 6) for s in _second(t, False, 2.0)]
    # One more bad second after the spike, then as good as the base.
    after = _second(6, False, 2.0) + [s for t in range(7, 10) for s in _second(t, True, 0.01)]
    assert recovery_s(base + spike + after, phase_s=4, spike_s=2) == 1.0
    never = base + spike + [s for t in range(6, 10) for s in _second(t, True, 0.5)]
    assert recovery_s(never, phase_s=4, spike_s=2) is None


def _config(name: str, critical: float, goodput: float, recovery: float | None) -> ConfigFigures:
    phases = [
        PhaseFigures(phase, goodput, critical, 10.0, 50.0) for phase in ("base", "spike", "after")
    ]
    return ConfigFigures(name, 100.0, recovery, phases)


def test_targets_are_judged_on_adaptive_priority_only() -> None:
    result = OverloadResult(
        [_config("none", 5.0, 10.0, None), _config("adaptive_priority", 99.6, 95.0, 1.5)], 10, 30
    )
    assert result.problems() == []
    missed = OverloadResult([_config("adaptive_priority", 90.0, 50.0, None)], 10, 30).problems()
    assert [line.split()[0] for line in missed] == ["critical", "goodput", "recovery"]
    short = OverloadResult(
        [_config("adaptive_priority", 99.6, 95.0, None)], 10, 30, recovery_target_s=math.inf
    )
    assert short.problems() == []
