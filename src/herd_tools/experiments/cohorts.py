"""Cohort consistency per hop, from what the servers counted: did each request reach the group
its bucket (or its pin) says, at every service whose route splits traffic over two groups or more?

Every herd server counts the requests it took by their routing context's bucket and pin
(`herd_server_routed_requests_total`). Over an interval in which a service's route and its UP
groups stayed the same, each request one of its instances took is *expected* at:

- for a pinned request, the pinned version's own group (`history-v002`) when the service has it
  UP, otherwise the group whose split covers the request's bucket;
- for any other request, the group whose split covers its bucket.

A hop counts only while its route gives a share to two UP groups or more: with one group every
request is where it must be by construction. Requests without a bucket (no visitor id) are left
out: there is nothing they should be consistent with.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping

import msgspec

from herd._model.route import Route

#: Counts by (bucket, pin): what one instance took.
Taken = dict[tuple[str, str], float]
_TOTAL = "herd_server_requests_total{"
_ROUTED = "herd_server_routed_requests_total{"
_LABELS = re.compile(r'bucket="(?P<bucket>[^"]*)",pin="(?P<pin>[^"]*)"')


class HopCohort(msgspec.Struct, frozen=True, kw_only=True):
    """One service in one phase of its route (`phase`: its first split, e.g. `edge-v003 5 %`):
    requests of bucketed and of pinned visitors, and how many reached the expected group."""

    service: str
    phase: str
    bucketed: int
    bucketed_matched: int
    pinned: int
    pinned_matched: int
    bucketed_pct: float | None
    """The bucketed visitors' share that reached their group (None: none counted)."""
    pinned_pct: float | None


def read(exposition: str) -> tuple[float, Taken]:
    """A server's requests in all, and its routed-request counters, from its Prometheus
    exposition: a scan of the two counters' lines, as a second's reading of every instance must
    not cost the process that also runs the front door more than it needs."""
    total = 0.0
    found: Taken = {}
    for line in exposition.splitlines():
        if line.startswith(_TOTAL):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(_ROUTED) and (match := _LABELS.search(line)) is not None:
            key = (match["bucket"], match["pin"])
            found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return total, found


def phase(route: Route) -> str:
    """A route's phase: its first split (the newest group and its share)."""
    first = route.splits[0]
    return f"{first.group} {first.share} %"


def expected(route: Route, up: set[str], bucket: int, pin: str) -> str | None:
    """The group a request with `bucket` and `pin` must reach (None: no UP group covers it)."""
    if pin and f"{route.service}-{pin}" in up:
        return f"{route.service}-{pin}"
    end = 0
    for split in route.splits:
        if split.share <= 0:
            continue
        end += split.share
        if bucket < end:
            return split.group if split.group in up else None
    return None


def counted(route: Route | None, up: set[str]) -> bool:
    """Whether a hop with `route` and `up` groups counts: two UP groups with a share or more."""
    return route is not None and sum(s.share > 0 and s.group in up for s in route.splits) >= 2


class Cohorts:
    """Requests per service and phase, and how many reached the expected group."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], list[float]] = collections.defaultdict(
            lambda: [0.0, 0.0, 0.0, 0.0]
        )

    def add(
        self, route: Route, up: set[str], group: str, fresh: Mapping[tuple[str, str], float]
    ) -> None:
        """What one instance of `group` took under `route` (`up`: the UP groups meanwhile)."""
        row = self._counts[(route.service, phase(route))]
        for (raw, pin), n in fresh.items():
            if not raw or n <= 0:
                continue
            want = expected(route, up, int(raw), pin)
            if want is None:
                continue
            base = 2 if pin else 0
            row[base] += n
            row[base + 1] += n if want == group else 0.0

    def hops(self, since: Iterable[HopCohort] = ()) -> list[HopCohort]:
        """Every service and phase so far, less what `since` (an earlier `hops()`) held."""
        before = {(h.service, h.phase): h for h in since}
        found = []
        for (service, name), (b, bm, p, pm) in self._counts.items():
            old = before.get((service, name))
            if old is not None:
                b, bm = b - old.bucketed, bm - old.bucketed_matched
                p, pm = p - old.pinned, pm - old.pinned_matched
            if b or p:
                found.append(
                    HopCohort(
                        service=service,
                        phase=name,
                        bucketed=round(b),
                        bucketed_matched=round(bm),
                        pinned=round(p),
                        pinned_matched=round(pm),
                        bucketed_pct=_pct(bm, b),
                        pinned_pct=_pct(pm, p),
                    )
                )
        return found


def consistency_pct(hops: Iterable[HopCohort]) -> float | None:
    """The share of all counted requests, bucketed and pinned, that reached their group."""
    total = matched = 0
    for hop in hops:
        total += hop.bucketed + hop.pinned
        matched += hop.bucketed_matched + hop.pinned_matched
    return _pct(matched, total)


def _pct(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 2) if whole else None
