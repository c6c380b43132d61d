"""Which spans are recorded: whole traces, decided once where a trace starts.

herd's hooks decide the head share themselves before asking the SDK for a span (so an unsampled
call costs no span object at all); the sampler then only follows the parent, and records every
request at the front door, whose traces the control plane keeps or drops by a tail rule once it
knows how the request ended (`_cloud/traces`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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


class RecordBudget:
    """How many requests a second the front door records at every hop: a token bucket, as
    Jaeger's rate-limiting sampler. Recording a request costs every hop the SDK's spans (tens of
    microseconds each, more than herd's own call path), so below the rate every request is
    recorded and judged by the tail rule, and above it the cost stays bounded; the rest still
    carry a trace id, unsampled."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second < 0:
            raise ValueError("traces_per_s must be at least 0")
        self.per_second = per_second
        self._burst = max(1.0, per_second) if per_second > 0 else 0.0
        self._tokens = self._burst
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        """Whether to record the request arriving now."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
