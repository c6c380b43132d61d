"""The canary judge: does the canary behave like a baseline of the old version? (Kayenta)

Each metric is a series of data points, one per instance per sampling interval, for the canary
group and for a baseline group of the old version started fresh at the same size and given the
same share of traffic (so age, cache warmth and load do not pass for a difference). Each side's
latency outliers are removed (outside 1.5 interquartile ranges; errors are never outliers), then
a two-sided Mann-Whitney U test asks whether the two series differ at the configured
confidence. A metric fails when they do and the canary is the worse one by more than the
metric's tolerated effect size (Kayenta's `allowedIncrease`, plus an absolute floor so that tiny
absolute differences never fail). The score is the share of metrics that pass.

Mann-Whitney U is written here (normal approximation, tie and continuity corrections, as
`scipy.stats.mannwhitneyu(method="asymptotic")`): thirty lines, where scipy would be a large
dependency for one function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from herd._model.stats import percentile

#: The verdicts of one analysis.
PASS = "pass"
MARGINAL = "marginal"
FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric the judge compares; higher values are worse.

    It fails only when the canary's mean exceeds `allowed_increase` times the baseline's plus
    `floor` (in the metric's unit), besides the test finding a difference. With `clean`, each
    side's outliers are dropped first.
    """

    name: str
    allowed_increase: float = 1.2
    floor: float = 0.0
    clean: bool = True


#: Error rate (share of requests that failed) and latency (ms): what every herd server reports.
METRICS = (
    # Never cleaned: when errors are rare most intervals have none, and the quartiles would call
    # every interval with an error an outlier, dropping exactly what the canary is judged on.
    Metric("error_rate", allowed_increase=1.0, floor=0.01, clean=False),
    Metric("latency_mean_ms", floor=2.0),
    Metric("latency_p95_ms", floor=5.0),
)


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Mann-Whitney U of `x` against `y` and its two-sided p-value.

    The normal approximation with tie correction and continuity correction; `U` counts the
    pairs in which `x` is the larger (ties count a half), so `U > len(x) * len(y) / 2` means
    `x` tends to be larger. The p-value is 1 when every value is tied (nothing to tell apart).
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    pooled = sorted([(value, 0) for value in x] + [(value, 1) for value in y])
    total = n1 + n2
    rank_sum_x = 0.0
    ties = 0.0
    start = 0
    while start < total:
        end = start
        while end + 1 < total and pooled[end + 1][0] == pooled[start][0]:
            end += 1
        rank = (start + end) / 2 + 1  # ranks from 1; a tied run shares its mean rank
        count = end - start + 1
        ties += count**3 - count
        rank_sum_x += rank * sum(1 for i in range(start, end + 1) if pooled[i][1] == 0)
        start = end + 1
    u = rank_sum_x - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0:
        return u, 1.0
    z = max(0.0, abs(u - mean) - 0.5) / math.sqrt(variance)
    return u, math.erfc(z / math.sqrt(2))


def without_outliers(values: Sequence[float]) -> list[float]:
    """`values` without those beyond 1.5 interquartile ranges of the quartiles (Tukey's fences)."""
    ordered = sorted(values)
    if len(ordered) < 4:
        return ordered
    low, high = percentile(ordered, 0.25), percentile(ordered, 0.75)
    spread = 1.5 * (high - low)
    return [v for v in ordered if low - spread <= v <= high + spread]


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    """One metric's comparison."""

    name: str
    canary_mean: float
    baseline_mean: float
    canary_points: int
    baseline_points: int
    p_value: float
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """An analysis: the score (0-100), PASS, MARGINAL or FAIL, and each metric's verdict."""

    score: float
    decision: str
    metrics: list[MetricVerdict] = field(default_factory=list)

    def summary(self) -> str:
        """One line: the score and the metrics that failed."""
        failed = [f"{m.name} ({m.reason})" for m in self.metrics if not m.passed]
        return f"score {self.score:.0f}: {self.decision}" + (
            f"; failed {', '.join(failed)}" if failed else ""
        )


def enough(series: Mapping[str, Sequence[float]], min_points: int) -> bool:
    """Whether every metric has `min_points` data points."""
    return all(len(series.get(metric.name, ())) >= min_points for metric in METRICS)


def judge(
    canary: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]],
    *,
    confidence: float = 0.98,
    min_points: int = 10,
    pass_score: float = 95.0,
    marginal_score: float = 75.0,
) -> Verdict:
    """Compare the canary's series with the baseline's, metric by metric.

    A metric with fewer than `min_points` points on either side fails: no data is no evidence
    that the canary is fine.
    """
    verdicts = [
        _compare(
            metric,
            canary.get(metric.name, ()),
            baseline.get(metric.name, ()),
            confidence,
            min_points,
        )
        for metric in METRICS
    ]
    score = 100.0 * sum(v.passed for v in verdicts) / len(verdicts)
    if score >= pass_score:
        decision = PASS
    elif score >= marginal_score:
        decision = MARGINAL
    else:
        decision = FAIL
    return Verdict(score, decision, verdicts)


def _compare(
    metric: Metric,
    canary: Sequence[float],
    baseline: Sequence[float],
    confidence: float,
    min_points: int,
) -> MetricVerdict:
    name = metric.name
    if len(canary) < min_points or len(baseline) < min_points:
        return MetricVerdict(
            name,
            _mean(canary),
            _mean(baseline),
            len(canary),
            len(baseline),
            1.0,
            False,
            f"too few points: {len(canary)} and {len(baseline)}, need {min_points}",
        )
    x, y = (
        (without_outliers(canary), without_outliers(baseline))
        if metric.clean
        else (list(canary), list(baseline))
    )
    canary_mean, baseline_mean = _mean(x), _mean(y)
    _, p = mann_whitney(x, y)
    differs = p < 1.0 - confidence
    worse = canary_mean > baseline_mean * metric.allowed_increase + metric.floor
    passed = not (differs and worse)
    reason = f"p={p:.3g}, canary {canary_mean:.4g} vs baseline {baseline_mean:.4g}"
    return MetricVerdict(name, canary_mean, baseline_mean, len(x), len(y), p, passed, reason)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
