"""Spans and trace context without a network: parsing `traceparent`, the sampler, a breaker's
short circuit and a fallback as spans, trace ids in log lines, and the bound on kept spans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import herd
from herd._process import logging as process_logging
from herd._trace import setup as trace_setup
from herd._trace import spans
from herd._trace.context import format_traceparent, parse
from herd._trace.recent import RecentSpans, parse_ids
from herd._trace.sampling import HerdSampler, RecordBudget
from tests.helpers import free_port, recorded_spans

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exporter:
        yield exporter


def test_a_well_formed_traceparent_round_trips() -> None:
    context = parse({"traceparent": GOOD, "tracestate": "vendor=1"})
    assert context is not None
    assert context.trace_flags.sampled
    assert context.trace_state.get("vendor") == "1"
    assert format_traceparent(context) == GOOD


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        GOOD.upper(),
        GOOD.replace("00-", "ff-", 1),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        GOOD + "-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
    ],
)
def test_a_malformed_traceparent_is_no_context(value: str) -> None:
    assert parse({"traceparent": value}) is None


def test_an_unsampled_trace_travels_on_without_spans(exported: InMemorySpanExporter) -> None:
    unsampled = GOOD[:-2] + "00"
    with spans.serve("svc", "m", {"traceparent": unsampled}):
        assert spans.call("other", "m") is spans.NO_SPAN
        sent: dict[str, str] = {}
        spans.sending(sent, 1.0)
    assert sent["traceparent"] == unsampled
    assert exported.get_finished_spans() == ()


def test_no_trace_and_no_share_records_nothing(exported: InMemorySpanExporter) -> None:
    trace_setup.install(TracerProvider(sampler=HerdSampler()), share=0.0)
    assert spans.call("svc", "m") is spans.NO_SPAN
    assert spans.serve("svc", "m", {}) is spans.NO_SPAN


async def test_a_short_circuit_and_its_fallback_are_spans(exported: InMemorySpanExporter) -> None:
    class Dead(herd.Interface, name="dead"):
        async def ping(self) -> str: ...

    policy = herd.CallPolicy(
        attempts=1,
        breaker=herd.BreakerPolicy(volume_threshold=1, error_threshold_pct=1.0),
    )
    async with herd.driver(Dead, address=f"127.0.0.1:{free_port()}", policy=policy) as dead:
        # Under a handling, as a library's fallback runs.
        with spans.serve("page", "home", {}):
            with pytest.raises(herd.Unavailable):
                await dead.ping()
            assert await herd.fallback(dead.ping(), "fallback") == "fallback"
    failed, short, fell_back = [
        s for s in exported.get_finished_spans() if s.name in ("dead.ping", "dead.ping fallback")
    ]
    assert failed.attributes is not None and short.attributes is not None
    assert failed.attributes["herd.outcome"] == "ConnectFailed"
    assert short.attributes["herd.outcome"] == "CircuitOpen"
    assert fell_back.attributes is not None
    assert fell_back.attributes["herd.fallback_after"] == "CircuitOpen"


def test_a_log_line_inside_a_span_carries_its_ids(exported: InMemorySpanExporter) -> None:
    assert trace_setup.add_trace_ids(None, "info", {"event": "outside"}) == {"event": "outside"}
    with spans.call("svc", "m") as span:
        assert span is not None
        event = trace_setup.add_trace_ids(None, "info", {"event": "inside"})
        context = span.get_span_context()
    assert event["trace_id"] == f"{context.trace_id:032x}"
    assert event["span_id"] == f"{context.span_id:016x}"


def test_a_herd_process_logs_the_ids_of_the_span_it_logs_in(
    exported: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    # Through the logging every herd process configures (`herd.run`, the control plane).
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        process_logging.configure()
        with spans.call("svc", "m") as span:
            assert span is not None
            structlog.get_logger("test").info("inside")
        structlog.get_logger("test").info("outside")
    finally:
        structlog.configure(**saved)
    inside, outside = capsys.readouterr().out.splitlines()
    context = span.get_span_context()
    assert f"trace_id={context.trace_id:032x}" in inside
    assert f"span_id={context.span_id:016x}" in inside
    assert "trace_id" not in outside


def test_kept_spans_are_bounded_oldest_trace_first() -> None:
    kept = RecentSpans(max_spans=3)
    provider = TracerProvider()
    provider.add_span_processor(kept)
    tracer = provider.get_tracer("test")
    ids = []
    for name in ("one", "two", "three", "four"):
        with tracer.start_as_current_span(name) as span:
            ids.append(span.get_span_context().trace_id)
    assert kept.spans(ids[:1]) == []
    assert [s["name"] for s in kept.spans(ids)] == ["two", "three", "four"]
    assert parse_ids(f"{ids[1]:032x},nonsense,{'z' * 32}") == [ids[1]]
    assert trace.get_current_span().get_span_context().is_valid is False


def test_no_collector_no_new_traces_away_from_the_front_door() -> None:
    try:
        trace_setup.process_provider({"service.name": "svc"}, share=None, environ={})
        assert spans._tracing.share == 0.0
        collector = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
        trace_setup.process_provider({"service.name": "svc"}, share=None, environ=collector)
        assert spans._tracing.share == trace_setup.EXPORTED_SHARE
        # The standard exporter switch: `otlp` alone exports (to the SDK's default endpoint);
        # `none` does not, whatever the endpoint; nor does a protocol herd cannot speak.
        for environ, exported in (
            ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
            ({**collector, "OTEL_TRACES_EXPORTER": "none"}, False),
            ({**collector, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False),
        ):
            trace_setup.process_provider({"service.name": "svc"}, share=None, environ=environ)
            assert spans._tracing.share == (trace_setup.EXPORTED_SHARE if exported else 0.0)
        own = {"OTEL_TRACES_SAMPLER": "always_on"}
        trace_setup.process_provider({"service.name": "svc"}, share=None, environ=own)
        assert spans._tracing.share == 1.0
        off = {"OTEL_SDK_DISABLED": "true"}
        assert trace_setup.process_provider({"service.name": "svc"}, share=1.0, environ=off) is None
        assert spans._tracing.tracer is None
    finally:
        trace_setup.uninstall()


def test_the_record_budget_records_everything_below_its_rate_and_no_more_above() -> None:
    now = [0.0]
    budget = RecordBudget(20.0, clock=lambda: now[0])
    assert sum(budget.take() for _ in range(100)) == 20  # a burst of 100: the first 20
    recorded = 0
    for _ in range(1000):  # 10 s at 100 requests a second
        now[0] += 0.01
        recorded += budget.take()
    assert 199 <= recorded <= 201
    for _ in range(50):  # 10 s at 5 a second: below the rate, every one
        now[0] += 0.2
        assert budget.take()
    assert not any(RecordBudget(0.0, clock=lambda: now[0]).take() for _ in range(3))


def test_a_front_door_request_over_the_budget_carries_an_unsampled_trace_and_no_span(
    exported: InMemorySpanExporter,
) -> None:
    with spans.front_door("GET", "/", {"traceparent": GOOD}, record=False) as span:
        assert span is not None and not span.is_recording()
        assert spans.call("edge", "page") is spans.NO_SPAN
    header = spans.response_header(span)
    assert header.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and header.endswith("-00")
    with spans.front_door("GET", "/", {}, record=True) as recorded:
        assert recorded is not None and recorded.is_recording()
    assert [s.name for s in exported.get_finished_spans()] == ["GET /"]


def test_the_hooks_read_the_current_span_as_the_api_does() -> None:
    # The hooks read OpenTelemetry's context variable directly (the API's lookup is six Python
    # calls, on every call traced or not): it must be the one the SDK keeps, and agree with it.
    assert spans._now is not otel_context.get_current, "the fast path is not in use"
    tracer = TracerProvider().get_tracer("test")
    assert spans._now().get(spans._SPAN_KEY) is None
    with tracer.start_as_current_span("outer") as outer:
        assert spans._now().get(spans._SPAN_KEY) is outer is trace.get_current_span()
        with trace.use_span(trace.INVALID_SPAN):
            assert spans._now().get(spans._SPAN_KEY) is trace.get_current_span()
    assert spans._now() is otel_context.get_current()
