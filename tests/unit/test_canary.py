"""The canary judge: Mann-Whitney U against published values, outlier cleaning, scores and
verdicts, and the per-interval points read from a server's /metrics."""

from __future__ import annotations

import math

import pytest

from herd._cloud.deploy import canary
from herd._cloud.deploy.analysis import Reading, points, read
from herd._server.metrics import ServerMetrics


def test_u_counts_the_pairs_where_the_first_sample_is_larger() -> None:
    # Wikipedia, "Mann-Whitney U test", illustration: the tortoise and the hare. Finishing
    # order T H H H H H T T T T T H (first is fastest); U_T = 11 and U_H = 25. As times
    # (lower is faster), U of the tortoise's times counts pairs in which it was slower: 25.
    order = "THHHHHTTTTTH"
    tortoise = [float(i) for i, runner in enumerate(order) if runner == "T"]
    hare = [float(i) for i, runner in enumerate(order) if runner == "H"]
    u_tortoise, _ = canary.mann_whitney(tortoise, hare)
    u_hare, _ = canary.mann_whitney(hare, tortoise)
    assert (u_tortoise, u_hare) == (25.0, 11.0)


def test_p_value_matches_scipy_asymptotic() -> None:
    # scipy.stats.mannwhitneyu documentation, example (males vs females, Conover):
    # mannwhitneyu(males, females, method="asymptotic") -> statistic=17.0,
    # pvalue=0.11134688653314041.
    males = [19.0, 22.0, 16.0, 29.0, 24.0]
    females = [20.0, 11.0, 17.0, 12.0]
    u, p = canary.mann_whitney(males, females)
    assert u == 17.0
    assert p == pytest.approx(0.11134688653314041, abs=1e-12)


def test_ties_shrink_the_variance() -> None:
    # Hand-computed: x = [1, 2, 2], y = [2, 3, 3]. Ranks 1, 3, 3 | 3, 5.5, 5.5: R_x = 7,
    # U = 7 - 6 = 1. Ties: a run of 3 and a run of 2: sum(t^3 - t) = 24 + 6 = 30.
    # var = 9/12 * (7 - 30/30) = 4.5; z = (|1 - 4.5| - 0.5) / sqrt(4.5); p = erfc(z / sqrt 2).
    u, p = canary.mann_whitney([1.0, 2.0, 2.0], [2.0, 3.0, 3.0])
    z = 3.0 / math.sqrt(4.5)
    assert u == 1.0
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), abs=1e-12)


def test_all_tied_is_no_difference() -> None:
    assert canary.mann_whitney([0.0] * 10, [0.0] * 12) == (60.0, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        canary.mann_whitney([], [1.0])


def test_outliers_beyond_tukeys_fences_are_dropped() -> None:
    values = [10.0, 11.0, 12.0, 11.0, 10.0, 12.0, 11.0, 95.0]
    assert 95.0 not in canary.without_outliers(values)
    assert len(canary.without_outliers(values)) == 7
    assert canary.without_outliers([1.0, 100.0]) == [1.0, 100.0]  # too few to tell


def _series(error: float, mean: float, p95: float, n: int = 20) -> dict[str, list[float]]:
    # A little spread, the same shape on both sides: what a steady instance reports.
    wobble = [(i % 5 - 2) / 100 for i in range(n)]
    return {
        "error_rate": [max(0.0, error + w / 10) for w in wobble],
        "latency_mean_ms": [mean * (1 + w) for w in wobble],
        "latency_p95_ms": [p95 * (1 + w) for w in wobble],
    }


def test_a_canary_like_its_baseline_passes() -> None:
    verdict = canary.judge(_series(0.0, 8.0, 20.0), _series(0.0, 8.0, 20.0))
    assert verdict.decision == canary.PASS
    assert verdict.score == 100.0


def test_a_canary_failing_ten_percent_fails() -> None:
    verdict = canary.judge(_series(0.1, 8.0, 20.0), _series(0.0, 8.0, 20.0))
    assert verdict.decision == canary.FAIL  # 2 of 3 metrics pass: 67 < 75
    assert verdict.score == pytest.approx(200 / 3)
    failed = [m.name for m in verdict.metrics if not m.passed]
    assert failed == ["error_rate"]
    assert "error_rate" in verdict.summary()


def test_rare_errors_are_evidence_not_outliers() -> None:
    # A canary at a small share fails a few requests a second: most intervals see none.
    sparse = [0.2 if i % 4 == 0 else 0.0 for i in range(24)]
    assert canary.without_outliers(sparse) == [0.0] * 18  # what cleaning would leave
    series = {**_series(0.0, 8.0, 20.0, n=24), "error_rate": sparse}
    baseline = {**_series(0.0, 8.0, 20.0, n=24), "error_rate": [0.0] * 24}
    verdict = canary.judge(series, baseline)
    assert [m.name for m in verdict.metrics if not m.passed] == ["error_rate"]


def test_a_slower_canary_fails_only_beyond_the_tolerated_effect() -> None:
    slower = canary.judge(_series(0.0, 16.0, 40.0), _series(0.0, 8.0, 20.0))
    assert slower.score == pytest.approx(100 / 3)
    # 5 % slower differs significantly, but is within the tolerated increase.
    slightly = canary.judge(_series(0.0, 8.4, 21.0), _series(0.0, 8.0, 20.0))
    assert slightly.decision == canary.PASS
    # Better than the baseline is never a failure.
    faster = canary.judge(_series(0.0, 4.0, 10.0), _series(0.0, 8.0, 20.0))
    assert faster.decision == canary.PASS


def test_too_few_points_fail_and_thresholds_are_configurable() -> None:
    few = canary.judge(_series(0.0, 8.0, 20.0, n=4), _series(0.0, 8.0, 20.0), min_points=10)
    assert few.decision == canary.FAIL
    assert all("too few" in m.reason for m in few.metrics)
    bad = _series(0.1, 8.0, 20.0)
    good = _series(0.0, 8.0, 20.0)
    assert canary.judge(bad, good, marginal_score=60).decision == canary.MARGINAL
    assert canary.judge(bad, good, pass_score=60, marginal_score=50).decision == canary.PASS


def test_points_of_an_interval_come_from_a_servers_metrics() -> None:
    metrics = ServerMetrics("edge")
    before = read(metrics.exposition().decode())
    for _ in range(18):
        metrics.record("GET /api/home", "ok", 0.004)
    metrics.record("GET /api/home", "internal", 0.001)
    metrics.record("GET /api/home", "bad_request", 0.001)  # the caller's fault: no failure
    after = read(metrics.exposition().decode())
    found = points(before, after)
    assert found["error_rate"] == pytest.approx(1 / 20)
    assert found["latency_mean_ms"] == pytest.approx((18 * 4 + 2) / 20)
    assert 2.5 < found["latency_p95_ms"] <= 5.0  # within the 2.5-5 ms bucket
    assert points(after, after) == {}  # an idle interval gives no point
    assert points(Reading(), Reading()) == {}
