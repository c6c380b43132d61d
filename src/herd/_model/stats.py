"""Latency statistics shared by the metrics, the load generator, the experiments and the tests.

One percentile definition and one histogram layout, so that every p99 the project prints means
the same thing and every `/metrics` histogram has the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `ordered` (sorted ascending); 0.0 when it is empty.

    The smallest value such that at least `fraction` of the values are at or below it:
    `fraction` 0.99 of 100 values is the 99th smallest, 1.0 is the largest, and anything at or
    below `1 / len(ordered)` is the smallest.
    """
    if not ordered:
        return 0.0
    # The tolerance keeps float noise from pushing an exact rank up by one (0.99 * 100 is
    # 99.00000000000001).
    rank = math.ceil(fraction * len(ordered) - 1e-9)
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def cumulative_buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus histogram buckets from per-bucket counts.

    `counts[i]` is how many observations fell in bucket `i`: at or below `bounds[i]` and above
    the bound before it, with one more count at the end for those above every bound (the index
    `bisect.bisect_left(bounds, value)` gives). The result pairs each bound's label, then
    ``+Inf``, with the running total, as `HistogramMetricFamily.add_metric` takes them. Raises
    `ValueError` unless there is exactly one count more than there are bounds.
    """
    labels = [*(str(bound) for bound in bounds), "+Inf"]
    buckets: list[tuple[str, float]] = []
    total = 0
    for label, count in zip(labels, counts, strict=True):
        total += count
        buckets.append((label, float(total)))
    return buckets
