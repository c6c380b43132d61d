"""Request flow in the history (Edda's "which instances served what"): which instances, of which
group and version, handled the requests of the kept traces, recorded every `every_s` as one
`flow.served` event per instance.

Only kept traces are seen (failed, slow and a share of the rest), so the counts are of those;
the point is which instances and versions served a service, and when.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from herd._cloud.history.recorder import Recorder
from herd._cloud.history.store import History, HistoryQuery
from herd._cloud.traces.store import SpanView

FLOW_SERVED = "flow.served"


class Flow:
    """Counts the server spans of kept traces per instance, and records them now and then."""

    def __init__(self, recorder: Recorder, *, every_s: float = 10.0) -> None:
        self._recorder = recorder
        self._every_s = every_s
        self._counts: Counter[tuple[str, str, str, str, str]] = Counter()
        self._next = 0.0

    def saw(self, spans: Iterable[SpanView]) -> None:
        """Count the handlings among newly collected spans."""
        for span in spans:
            if span.kind == "server" and span.instance and span.group:
                self._counts[
                    (span.service, span.instance, span.group, span.version, span.zone)
                ] += 1

    def flush(self, now: float) -> None:
        """Record what was counted, if `every_s` passed since the last time."""
        if now < self._next:
            return
        self._next = now + self._every_s
        for (service, instance, group, version, zone), count in sorted(self._counts.items()):
            self._recorder.record(
                FLOW_SERVED,
                cause="traces",
                group=group,
                instance=instance,
                service=service,
                version=version,
                zone=zone,
                requests=count,
            )
        self._counts.clear()


class ServedView(msgspec.Struct, frozen=True):
    """One instance that served a service's requests (of kept traces) within a time range:
    when first and last, how many."""

    service: str
    instance: str
    group: str
    version: str
    zone: str
    requests: int
    first: float
    last: float


class AddressView(msgspec.Struct, frozen=True):
    """One instance that had an address: when it came up there."""

    address: str
    instance: str
    group: str
    at: float


def served(
    history: History, service: str, since: float | None, until: float | None
) -> list[ServedView]:
    """Which instances and versions served `service` between `since` and `until`."""
    found: dict[str, ServedView] = {}
    for event in history.events(HistoryQuery(since=since, until=until, kind=FLOW_SERVED)):
        detail = event.detail
        if detail.get("service") != service or event.instance is None:
            continue
        count = int(detail.get("requests", 0))
        seen = found.get(event.instance)
        found[event.instance] = ServedView(
            service,
            event.instance,
            event.group or "",
            str(detail.get("version", "")),
            str(detail.get("zone", "")),
            count + (seen.requests if seen else 0),
            seen.first if seen else event.at,
            event.at,
        )
    return sorted(found.values(), key=lambda view: (view.version, view.first))


def at_address(history: History, address: str) -> list[AddressView]:
    """Every instance that ever had `address` (`host:port`), oldest first."""
    return [
        AddressView(address, event.instance or "", event.group or "", event.at)
        for event in history.events(HistoryQuery(kind="instance.up"))
        if event.detail.get("address") == address
    ]
