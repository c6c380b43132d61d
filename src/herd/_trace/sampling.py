"""Which spans are recorded: whole traces, decided once where a trace starts.

herd's hooks decide the head share themselves before asking the SDK for a span (so an unsampled
call costs no span object at all); the sampler then only follows the parent, and records every
request at the front door, whose traces the control plane keeps or drops by a tail rule once it
knows how the request ended (`_cloud/traces`).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

#: The attribute that marks a span started at the front door: always recorded.
FRONT_DOOR = "herd.front_door"


class HerdSampler(Sampler):
    """Record what herd's hooks chose to start, and every child of a sampled parent."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Record and sample unless the parent is a valid span that was not sampled."""
        parent = get_current_span(parent_context).get_span_context()
        if attributes and attributes.get(FRONT_DOOR):
            decision = Decision.RECORD_AND_SAMPLE
        elif parent.is_valid and not parent.trace_flags.sampled:
            decision = Decision.DROP
        else:
            decision = Decision.RECORD_AND_SAMPLE
        return SamplingResult(decision, attributes, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        """How this sampler shows in the SDK's logs."""
        return "HerdSampler"
