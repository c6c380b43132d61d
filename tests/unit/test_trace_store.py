"""The control plane's tail rule and its bounded store of kept traces."""

from __future__ import annotations

from herd._cloud.traces.store import SpanView, TraceStore
from herd_tools.trace_commands import tree_order


def _id(n: int) -> str:
    return f"{n:032x}"


def test_failed_slow_and_asked_requests_are_kept_and_a_share_of_the_rest() -> None:
    draws = iter([0.5, 0.01])
    store = TraceStore(share=0.02, min_slow_s=0.05, rng=lambda: next(draws))
    assert store.finished(_id(1), "GET /", 503, 0.0, 0.001, 0.0) == "failed"
    assert store.finished(_id(2), "GET /", 200, 0.0, 0.2, 0.0) == "slow"
    assert store.finished(_id(3), "GET /", 200, 0.0, 0.001, 0.0, asked=True) == "asked"
    assert store.finished(_id(4), "GET /", 200, 0.0, 0.001, 0.0) is None
    assert store.finished(_id(5), "GET /", 200, 0.0, 0.001, 0.0) == "sampled"
    # Listed once their spans were collected.
    assert store.recent() == []
    assert len(store.due(10.0)) == 4
    assert [t.trace_id for t in store.recent()] == [_id(5), _id(3), _id(2), _id(1)]


def test_slow_follows_the_recent_p99_of_the_front_door() -> None:
    store = TraceStore(share=0.0, min_slow_s=0.01, rng=lambda: 1.0)
    for n in range(1000):
        store.finished(_id(n), "GET /", 200, 0.0, 0.1 + (n % 100) / 1000.0, 0.0)
    # The p99 of 0.100..0.199 s: a 150 ms request is no longer slow, a 200 ms one is.
    assert 0.19 <= store.slow_s <= 0.2
    assert store.finished(_id(2000), "GET /", 200, 0.0, 0.15, 0.0) is None
    assert store.finished(_id(2001), "GET /", 200, 0.0, 0.25, 0.0) == "slow"


def test_spans_are_collected_once_after_settling_and_the_store_is_bounded() -> None:
    store = TraceStore(capacity=2, settle_s=1.0)
    for n in range(3):
        store.finished(_id(n), "GET /", 500, 0.0, 0.001, now=10.0)
    assert store.get(_id(0)) is None
    assert store.due(10.5) == []
    assert store.due(11.0) == [_id(1), _id(2)]
    assert store.due(12.0) == []
    span = {
        "trace_id": _id(1),
        "span_id": "1" * 16,
        "parent": None,
        "service": "edge",
        "instance": "edge-1",
        "name": "GET /",
        "kind": "server",
        "start": 1.0,
        "duration_ms": 2.0,
        "failed": True,
        "attributes": {"herd.zone": "a"},
    }
    store.add_spans([span, {**span, "trace_id": _id(9)}])
    found = store.get(_id(1))
    assert found is not None and [s.service for s in found.spans] == ["edge"]


def test_the_waterfall_lists_each_span_under_its_parent() -> None:
    def span(span_id: str, parent: str | None, start: float) -> SpanView:
        return SpanView(_id(1), span_id, parent, "s", "i", span_id, "server", start, 1.0, False, {})

    spans = [span("root", None, 0.0), span("b", "root", 0.1), span("a1", "a", 0.3)]
    spans += [span("a", "root", 0.05), span("orphan", "gone", 0.2)]
    order = [(depth, s.span_id) for depth, s in tree_order(spans)]
    assert order == [(0, "root"), (1, "a"), (2, "a1"), (1, "b"), (0, "orphan")]
