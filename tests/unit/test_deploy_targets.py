"""The deploy experiment's targets (`expected`): the bad canary rolled back at its first step with
at most 1 % of its scenario's requests failed, nothing else failed, rollbacks under 2 s, every
counted hop 100 % consistent."""

from __future__ import annotations

import msgspec

from herd._cloud.app import DeploySpec
from herd_tools.experiments.deploy import DeployResult, Scenario, expected


def _scenario(name: str, decision: str, **changes: object) -> Scenario:
    scenario = Scenario(
        name=name,
        service="edge",
        version="v002",
        strategy="canary",
        start_s=0.0,
        duration_s=20.0,
        total=1000,
        failed=0,
        failed_by_kind={},
        decision=decision,
        canary_score=100.0,
        rollback_s=None,
        cohort_consistency_pct=100.0,
    )
    return msgspec.structs.replace(scenario, **changes)


def _result(*bad: Scenario) -> DeployResult:
    good = _scenario("canary_pass", "promoted", decided_at_step=50)
    return DeployResult(50.0, 10_000, DeploySpec(), [good, *bad], [])


def test_a_run_that_meets_every_target() -> None:
    fail = _scenario("canary_fail", "rolled_back", failed=10, decided_at_step=5, rollback_s=0.02)
    assert expected(_result(fail)) == []


def test_each_target_missed_is_named() -> None:
    late = _scenario("canary_fail", "rolled_back", failed=11, decided_at_step=25, rollback_s=2.5)
    assert expected(_result(late)) == [
        "canary_fail: 11 failed (allowed 10)",
        "canary_fail: decided at 25 %, not 5 %",
        "canary_fail: rolled back in 2.5 s",
    ]
    split = _scenario("canary_pass", "promoted", failed=1, cohort_consistency_pct=99.5)
    assert expected(_result(split))[-2:] == [
        "canary_pass: 1 failed (allowed 0)",
        "canary_pass: cohort consistency 99.5 %",
    ]
    # A hop never split (one group) is not counted: nothing to be consistent with.
    unsplit = _scenario("rollback", "rolled_back", cohort_consistency_pct=None)
    assert expected(_result(unsplit)) == []
