"""Latency statistics shared by the metrics, the load generator, the experiments and the tests.

One percentile definition and one histogram layout, so that every p99 the project prints means
the same thing and every `/metrics` histogram has the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


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


class Sketch:
    """Latencies in DDSketch's logarithmic buckets (Masson, Rim and Lee, VLDB 2019): bucket `i`
    holds the values in (g^(i-1), g^i], g = (1 + ALPHA) / (1 - ALPHA), and a quantile is
    answered by its bucket's `value`, within a relative error of ALPHA of the true nearest-rank
    quantile whatever the distribution (a fixed histogram's edge is off by up to its bucket's
    width: it says 25.0 ms for anything from 10 to 25 ms).

    Counts are kept per bucket index, so sketches merge by adding counts (every instance's, or
    the front door's over many ticks) and a window is the difference of two cumulative copies:
    the dashboard's 10 s window is made the way its other counters' are. At ALPHA = 1 %, 1 us to
    100 s takes at most 922 buckets; a service's latencies use a few dozen.
    """

    __slots__ = ("counts",)

    #: The relative accuracy of every quantile a sketch answers.
    ALPHA = 0.01
    GAMMA = (1 + ALPHA) / (1 - ALPHA)
    LOG_GAMMA = math.log(GAMMA)
    #: Values at or below this (seconds) share the lowest bucket.
    FLOOR = 1e-6

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, seconds: float) -> None:
        """Count one latency."""
        # `index` inline: every request and every call counts one.
        index = math.ceil(math.log(max(seconds, self.FLOOR)) / self.LOG_GAMMA)
        self.counts[index] = self.counts.get(index, 0) + 1

    @classmethod
    def index(cls, seconds: float) -> int:
        """The bucket that counts `seconds`."""
        return math.ceil(math.log(max(seconds, cls.FLOOR)) / cls.LOG_GAMMA)

    @classmethod
    def value(cls, index: int) -> float:
        """The value that stands for bucket `index`: within ALPHA of any value in it."""
        return 2 * cls.GAMMA**index / (cls.GAMMA + 1)


def sketch_quantile(counts: Mapping[int, float], fraction: float) -> float:
    """The nearest-rank quantile (seconds) of `Sketch` counts (merged or windowed, so counts
    may be floats); 0.0 when they are empty."""
    index = quantile_index(counts, fraction)
    return 0.0 if index is None else Sketch.value(index)


def quantile_index(counts: Mapping[int, float], fraction: float) -> int | None:
    """The bucket of `Sketch` counts that holds their nearest-rank quantile: at most
    `1 - fraction` of the counts are in the buckets above it. None when they are empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1.0, math.ceil(fraction * total - 1e-9))
    seen = 0.0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return index
    return max(counts)
