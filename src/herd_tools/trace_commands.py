"""What `herd trace` does: one kept trace as a waterfall (or JSON), or the list of recent ones."""

from __future__ import annotations

import datetime

import msgspec

from herd._cloud.traces.store import SpanView, TraceView
from herd_tools.cloud_commands import ask
from herd_tools.output import Column, print_table, usage

_BAR = 24
_HEX = frozenset("0123456789abcdef")


def trace_command(trace_id: str | None, *, as_json: bool, limit: int = 50) -> None:
    """Print one trace's spans (a waterfall, or `{"spans": [...]}`), or the recent traces."""
    if trace_id is None:
        recent = ask(lambda api: api.traces(limit))
        if as_json:
            print(msgspec.json.encode({"traces": recent}).decode())
            return
        rows = [
            [
                t.trace_id,
                datetime.datetime.fromtimestamp(t.start).strftime("%H:%M:%S.%f")[:-3],
                f"{t.duration_ms:.1f}",
                str(t.status),
                t.reason,
                t.request,
            ]
            for t in recent
        ]
        columns = [Column("trace"), Column("time", drop=2), Column("ms", right=True)]
        columns += [Column("status"), Column("kept"), Column("request", drop=1)]
        print_table("recent traces", columns, rows)
        return
    wanted = trace_id.strip().lower()
    if len(wanted) != 32 or not _HEX.issuperset(wanted):
        raise usage(
            f"{trace_id[:40]!r} is not a trace id", "32 hex digits, e.g. from traceresponse"
        )
    found = ask(lambda api: api.trace(wanted))
    if as_json:
        print(msgspec.json.encode({"summary": found.summary, "spans": found.spans}).decode())
        return
    _print_waterfall(found)


def tree_order(spans: list[SpanView]) -> list[tuple[int, SpanView]]:
    """The spans depth first, each under its parent, siblings by start: (depth, span)."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[SpanView]] = {}
    for span in sorted(spans, key=lambda span: span.start):
        parent = span.parent if span.parent in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[int, SpanView]] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            ordered.append((depth, span))
            visit(span.span_id, depth + 1)

    visit(None, 0)
    return ordered


def _print_waterfall(found: TraceView) -> None:
    spans = found.spans
    summary = found.summary
    title = f"{summary.request} {summary.status} in {summary.duration_ms:.1f} ms ({summary.reason})"
    if not spans:
        print_table(title, [Column("span")], [])
        return
    begin = min(span.start for span in spans)
    total = max(span.start + span.duration_ms / 1000.0 for span in spans) - begin or 1e-9
    rows = []
    for depth, span in tree_order(spans):
        offset = int((span.start - begin) / total * _BAR)
        width = max(1, int(span.duration_ms / 1000.0 / total * _BAR))
        bar = " " * offset + ("!" if span.failed else "=") * min(width, _BAR - offset)
        where = str(span.attributes.get("herd.instance", ""))
        rows.append(
            [
                "  " * depth + span.name,
                span.service,
                f"{span.duration_ms:.1f}",
                bar.ljust(_BAR),
                str(span.attributes.get("herd.outcome", "")),
                where,
            ]
        )
    columns = [Column("span"), Column("service"), Column("ms", right=True), Column("waterfall")]
    columns += [Column("outcome", drop=1), Column("instance", drop=2)]
    print_table(title, columns, rows)
