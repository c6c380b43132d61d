"""The latency sketch behind the dashboard's and `herd top`'s p99: within 1 % of the exact
nearest-rank quantile of the same requests, mergeable, and windowed by difference."""

from __future__ import annotations

import collections
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from herd._client.metrics import DependencyMetrics
from herd._cloud.dashboard.gatherer import Gatherer, _Seen, _Window
from herd._cloud.interface import InstanceView
from herd._model.stats import Sketch, percentile, sketch_quantile

FRACTIONS = (0.5, 0.9, 0.99, 0.999)


def sketch_of(values: list[float]) -> Sketch:
    sketch = Sketch()
    for value in values:
        sketch.add(value)
    return sketch


def assert_close(values: list[float], counts: dict[int, float]) -> None:
    ordered = sorted(values)
    for fraction in FRACTIONS:
        exact = percentile(ordered, fraction)
        estimate = sketch_quantile(counts, fraction)
        assert abs(estimate - exact) <= Sketch.ALPHA * exact * 1.000001, (fraction, exact)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=100.0), min_size=1, max_size=500))
def test_every_quantile_is_within_alpha_of_the_exact_one(values: list[float]) -> None:
    assert_close(values, dict(sketch_of(values).counts))


def test_a_heavy_tail_the_old_buckets_hid() -> None:
    # Fixed buckets said 25.0 ms for a p99 anywhere between 10 and 25 ms.
    rng = random.Random(7)
    values = [rng.lognormvariate(-5.5, 0.6) for _ in range(20_000)]
    assert_close(values, dict(sketch_of(values).counts))
    assert 0.010 < percentile(sorted(values), 0.99) < 0.025


def test_sketches_merge_by_adding_counts_and_window_by_subtracting() -> None:
    rng = random.Random(3)
    early = [rng.expovariate(200) for _ in range(5_000)]
    late = [rng.expovariate(20) for _ in range(5_000)]
    one, two = sketch_of(early), sketch_of(late)
    merged = {i: one.counts.get(i, 0) + two.counts.get(i, 0) for i in {*one.counts, *two.counts}}
    assert_close(early + late, merged)
    # A window: the cumulative sketch now, less the copy taken before the late requests.
    cumulative = sketch_of(early)
    before = dict(cumulative.counts)
    for value in late:
        cumulative.add(value)
    window = {i: n - before.get(i, 0) for i, n in cumulative.counts.items()}
    assert_close(late, window)


def test_empty_and_tiny() -> None:
    assert sketch_quantile({}, 0.99) == 0.0
    sketch = sketch_of([0.0, 1e-9])
    assert 0 < sketch_quantile(dict(sketch.counts), 0.5) <= Sketch.FLOOR * (1 + Sketch.ALPHA)


def test_the_dashboard_merges_every_instances_calls_along_an_edge() -> None:
    fast, slow = DependencyMetrics(), DependencyMetrics()
    latencies = {"fast": [0.001 * (1 + n % 7) for n in range(1500)], "slow": [0.1] * 500}
    for value in latencies["fast"]:
        fast.latency(value)
    for value in latencies["slow"]:
        slow.latency(value)
    views = [
        InstanceView(name, "edge-v001", "edge", "v001", "a", "UP", "127.0.0.1:1", 1, 3.0)
        for name in ("fast", "slow")
    ]
    seen = {
        "fast": _Seen({"movie": fast.snapshot()}, {}),
        "slow": _Seen({"movie": slow.snapshot()}, {}),
    }
    window = _Window(collections.deque([(0.0, {}), (1.0, Gatherer._count(views, seen))]))
    (edge,) = Gatherer._edges(views, seen, window, {"edge", "movie"})
    every = sorted(latencies["fast"] + latencies["slow"])
    for name, fraction in (("p50_ms", 0.5), ("p99_ms", 0.99)):
        exact = percentile(every, fraction) * 1000
        assert abs(edge[name] - exact) <= Sketch.ALPHA * exact + 0.001, (name, exact)
    # The worst instance's p50 (100 ms) is not the edge's: three calls in four took under 8 ms.
    assert edge["p50_ms"] < 8.0
