"""Tracing in a process: the SDK's tracer provider with herd's sampler, the process's resource
(service, instance, zone, group, version), the spans kept for the control plane, and the
standard `OTEL_*` exporter when one is configured; and trace ids in log lines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from herd._trace import spans
from herd._trace.recent import PROCESS_SPANS
from herd._trace.sampling import HerdSampler

log = structlog.get_logger("herd.trace")

#: Any of these set means the user has an OpenTelemetry collector to export to.
_EXPORTER_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
#: The share of new traces started away from the front door when a collector takes them.
EXPORTED_SHARE = 0.01


def install(provider: TracerProvider, *, share: float) -> None:
    """Record herd's spans through `provider`, a new trace for `share` of the requests that
    come without one."""
    spans.use(provider.get_tracer("herd"), share)


def uninstall() -> None:
    """Record nothing any more."""
    spans.use(None, 0.0)


def process_provider(
    attributes: Mapping[str, str],
    *,
    share: float | None,
    environ: Mapping[str, str] | None = None,
    extra: SpanProcessor | None = None,
) -> TracerProvider | None:
    """The tracer provider of a herd process, installed for herd's hooks and as the global one
    (so that the application's own spans nest under herd's).

    `attributes` name the process (`service.name`, `service.instance.id`, ...). A sampler set
    with `OTEL_TRACES_SAMPLER` replaces herd's (and herd then starts a trace on every request
    without one, leaving the choice to it); `OTEL_TRACES_EXPORTER=otlp` or an
    `OTEL_EXPORTER_OTLP_*ENDPOINT` exports every recorded span there too (needs `herd[otlp]`).

    `share` (None: the default) is the share of requests without a trace that start one here.
    By default that is `EXPORTED_SHARE` with a collector and none without: the local control
    plane collects only the traces that pass its front door, which records all of them.

    With `OTEL_SDK_DISABLED=true` (OpenTelemetry's own switch) nothing is set up and nothing is
    recorded: None.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        uninstall()
        return None
    own_sampler = bool(env.get("OTEL_TRACES_SAMPLER"))
    exported = _exported(env)
    if share is None:
        share = EXPORTED_SHARE if exported else 0.0
    provider = TracerProvider(
        resource=Resource.create(dict(attributes)),
        sampler=None if own_sampler else HerdSampler(),
    )
    provider.add_span_processor(extra or PROCESS_SPANS)
    if exported:
        exporter = _otlp_exporter()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Once per process (the SDK refuses a second): a control plane started again in the
        # same process (tests, experiments) keeps recording through herd's own hooks.
        trace.set_tracer_provider(provider)
    install(provider, share=1.0 if own_sampler else share)
    return provider


def _exported(env: Mapping[str, str]) -> bool:
    """Whether recorded spans go to an OTLP collector: `OTEL_TRACES_EXPORTER` names `otlp`, or,
    when it is unset, an OTLP endpoint is set (`none` exports nothing). Unlike the SDK's own
    default (`otlp` to localhost), nothing is exported unless asked: an instance of `herd up`
    with no collector would otherwise retry a refused connection forever."""
    named = {n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")} - {""}
    if named - {"otlp", "none"}:
        log.warning("OTEL_TRACES_EXPORTER: herd exports over OTLP only", ignored=sorted(named))
    wanted = "otlp" in named if named else any(env.get(name) for name in _EXPORTER_VARIABLES)
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if wanted and protocol != "http/protobuf":
        log.warning("herd exports OTLP over http/protobuf only: not exporting", protocol=protocol)
        return False
    return wanted


def _otlp_exporter() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning("an OTLP endpoint is set but herd[otlp] is not installed: not exporting")
        return None
    return OTLPSpanExporter()


def add_trace_ids(
    logger: object, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: a line logged inside a span carries its trace and span ids."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", f"{context.trace_id:032x}")
        event.setdefault("span_id", f"{context.span_id:016x}")
    return event
