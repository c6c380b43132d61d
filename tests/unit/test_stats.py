"""The one percentile definition and the one histogram layout, and their users agreeing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd._client.metrics import DependencyMetrics
from herd._model.stats import cumulative_buckets, percentile
from herd_tools.load import Tally
from herd_tools.schedule import Schedule


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.90) == 90.0
    assert percentile(values, 0.99) == 99.0  # not 100: 0.99 * 100 must not round up
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.5) == 7.0
    assert percentile([], 0.99) == 0.0


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300),
    st.floats(0.001, 1.0),
)
def test_percentile_is_the_smallest_value_covering_the_fraction(
    values: list[float], fraction: float
) -> None:
    ordered = sorted(values)
    result = percentile(ordered, fraction)
    at_or_below = sum(1 for v in ordered if v <= result)
    below = sum(1 for v in ordered if v < result)
    assert at_or_below >= fraction * len(ordered) - 1e-6
    assert below < fraction * len(ordered) + 1e-6


def test_every_report_of_the_same_latencies_gives_the_same_percentiles() -> None:
    """The driver's metrics and `herd load` once disagreed on even counts (p50 of 1..10 ms was
    6 ms in one and 5 ms in the other)."""
    latencies = [ms / 1000 for ms in range(1, 11)]
    metrics = DependencyMetrics()
    tally = Tally()
    for latency in reversed(latencies):
        metrics.latency(latency)
        tally.succeeded(latency)
    report = tally.report(Schedule(rate=10, duration=1), "http://h/")
    assert metrics.percentiles() == {
        "p50_ms": report.p50_ms,
        "p90_ms": report.p90_ms,
        "p99_ms": report.p99_ms,
        "max_ms": report.max_ms,
    }
    assert (report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms) == (5.0, 9.0, 10.0, 10.0)


def test_no_latency_gives_zero_percentiles() -> None:
    assert set(DependencyMetrics().percentiles().values()) == {0.0}


def test_cumulative_buckets_add_up_and_end_at_inf() -> None:
    assert cumulative_buckets((0.1, 1.0), (2, 0, 3)) == [("0.1", 2.0), ("1.0", 2.0), ("+Inf", 5.0)]
    assert cumulative_buckets((), (4,)) == [("+Inf", 4.0)]


def test_cumulative_buckets_need_one_count_per_bucket_and_one_above() -> None:
    with pytest.raises(ValueError):
        cumulative_buckets((0.1, 1.0), (2, 0))


def test_the_client_histogram_puts_a_latency_in_the_first_bucket_that_holds_it() -> None:
    metrics = DependencyMetrics()
    for latency in (0.001, 0.0011, 10.0):
        metrics.latency(latency)
    buckets, total = metrics.histogram()
    counts = dict(buckets)
    assert (counts["0.001"], counts["0.0025"], counts["5.0"], counts["+Inf"]) == (1, 2, 2, 3)
    assert total == pytest.approx(10.0021)
