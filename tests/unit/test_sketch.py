"""The latency sketch behind the dashboard's and `herd top`'s p99 and the canary judge's
thresholds: within 1 % of the exact nearest-rank quantile of the same requests, mergeable, and
windowed by difference."""

from __future__ import annotations

import collections
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from herd._client.metrics import DependencyMetrics
from herd._cloud.dashboard.gatherer import Gatherer, _Seen, _Window
from herd._cloud.deploy.analysis import read
from herd._cloud.interface import InstanceView
from herd._model.stats import Sketch, percentile, quantile_index, sketch_quantile
from herd._server.metrics import ServerMetrics

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


def test_the_canary_judges_thresholds_are_the_exact_quantiles_of_what_a_server_served() -> None:
    # What the judge reads of an instance (`/herd/served`, through JSON): its "slower than the
    # baseline's median / 95th percentile" is the sketch bucket of that quantile, within 1 %
    # of the exact one; a histogram's edge said 25 ms for a median of 12.
    rng = random.Random(11)
    metrics = ServerMetrics("movie")
    recorded = []
    for n in range(6_000):
        seconds = rng.lognormvariate(-4.4, 0.5)
        recorded.append(seconds)
        metrics.record("presentation" if n % 3 else "GET /movies", "ok", seconds)
    served = read(json.loads(json.dumps(metrics.served())))
    ordered = sorted(recorded)
    for fraction in (0.5, 0.95, 0.99):
        exact = percentile(ordered, fraction)
        index = quantile_index(served.sketch, fraction)
        assert index is not None
        assert abs(Sketch.value(index) - exact) <= Sketch.ALPHA * exact * 1.000001, fraction
        # The requests it counts as slower are those above the quantile, but for the few
        # within its bucket (2 % wide).
        slower = sum(seconds > exact for seconds in recorded)
        near = sum(abs(seconds - exact) <= 2 * Sketch.ALPHA * exact for seconds in recorded)
        assert abs(served.above(index) - slower) <= near
    assert 0.010 < percentile(ordered, 0.5) < 0.025 and served.timed == len(recorded)
    # Prometheus's histogram is kept for users' dashboards: every request in it.
    exposition = metrics.exposition().decode()
    count = sum(
        float(line.rpartition(" ")[2])
        for line in exposition.splitlines()
        if line.startswith("herd_server_latency_seconds_count")
    )
    assert count == len(recorded)
