"""Which region serves a visitor: their home region, kept or moved by the regions' weights.

No I/O: the global front door asks `order` for every request, `herd chaos kong` changes the
weights, and the health checks say which regions answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from herd._model.route import BUCKETS, bucket_of


def bucket(visitor: str, salt: str = "") -> int:
    """A stable bucket, 0 to 99, of `visitor` (with `salt`: an independent one)."""
    return bucket_of(f"{salt}{visitor}")


class Steering:
    """The regions, their weights as the app file gives them (`base`) and as they are now.

    A visitor's home is fixed by the app file: the region a header names, else the one their
    bucket falls in by the base weights. A region whose weight is now `w` of its base `b` keeps
    the home visitors whose second bucket is below `100 * w / b`; the others, and all of them
    while the region is unhealthy, go to another region chosen by their bucket over the other
    regions' current weights. So a step of an evacuation moves a stable set of visitors, and a
    visitor moved once stays moved while the weight keeps falling.
    """

    def __init__(self, regions: Sequence[str], weights: Mapping[str, int]) -> None:
        if not regions:
            raise ValueError("steering needs at least one region")
        even = 100 // len(regions)
        self.regions = list(regions)
        self.base = {region: weights.get(region, even) for region in regions}
        self.weights = dict(self.base)
        self.healthy = dict.fromkeys(regions, True)

    def home(self, visitor: str, named: str = "") -> str:
        """The visitor's home region: `named` when it is one, else by bucket over the base."""
        if named in self.base:
            return named
        return _by_weight(bucket(visitor), self.base) or self.regions[0]

    def set_weight(self, region: str, weight: int) -> None:
        """Steer by a new weight (0 to 100) of `region`."""
        if region not in self.weights or not 0 <= weight <= 100:
            raise ValueError(f"no region {region!r}, or a weight outside 0 to 100")
        self.weights[region] = weight

    def order(self, visitor: str, named: str = "") -> list[str]:
        """Where the visitor's request goes, best first: the region chosen, then the others
        that answer (by weight), then those that do not (a last resort)."""
        home = self.home(visitor, named)
        base, now = self.base[home], self.weights[home]
        keeps = self.healthy[home] and base > 0 and bucket(visitor, "stay") * base < 100 * now
        if keeps:
            first = home
        else:
            others = {
                r: w for r, w in self.weights.items() if r != home and self.healthy[r] and w > 0
            }
            first = _by_weight(bucket(visitor, "away"), others) or home
        rest = sorted(
            (r for r in self.regions if r != first),
            key=lambda r: (not self.healthy[r], -self.weights[r], r),
        )
        return [first, *rest]


def _by_weight(at: int, weights: Mapping[str, int]) -> str | None:
    """The region whose slice of 0..99, the slices in proportion to `weights`, holds `at`."""
    total = sum(weights.values())
    if total <= 0:
        return None
    point = at * total / BUCKETS
    for region, weight in weights.items():
        if point < weight:
            return region
        point -= weight
    return list(weights)[-1]
