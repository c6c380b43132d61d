"""The knobs of the call path, with defaults chosen for services on one network."""

from __future__ import annotations

import dataclasses

from herd._client.attempts import HedgePolicy
from herd._client.balance import EjectionPolicy
from herd._client.breaker import BreakerPolicy
from herd._client.budget import BudgetPolicy
from herd._model.errors import ConfigurationError
from herd._model.limit import LimitPolicy


@dataclasses.dataclass(frozen=True)
class CallPolicy:
    """How a driver calls a dependency.

    Attributes:
        timeout: deadline for a call made with no deadline in force (at the edge).
        attempt_timeout: cap on one attempt; the call's deadline bounds it too. None: no cap.
        attempts: total attempts including the first; a method's `herd.method(attempts=)` wins.
        connect_timeout: separate and short, so a dead host costs little of the deadline.
        min_useful: below this much time left, an attempt is not worth sending.
        reply_reserve: the part of the deadline an attempt leaves for answering its own caller:
            an attempt times out (and blames the instance) just before the caller's deadline
            would cancel it, so a hung dependency is blamed here, one hop below the caller.
        backoff_base, backoff_cap: full-jitter back-off before a retry, in seconds.
        max_concurrent: the bulkhead: calls in flight to this dependency from this client.
        limit: an adaptive limit on those calls under `max_concurrent` (Gradient2 on their
            latency, docs/overload.md), so this client stops sending before the dependency
            has to refuse; None: the fixed bulkhead alone.
        breaker: the circuit breaker; None turns it off (for a caller that must keep trying,
            such as a registry client).
        budget, ejection: retry budget and outlier ejection.
        hedge: when an idempotent call sends a hedged attempt to another instance; None: never.
    """

    timeout: float = 1.0
    attempt_timeout: float | None = None
    attempts: int = 2
    connect_timeout: float = 0.25
    min_useful: float = 0.005
    reply_reserve: float = 0.005
    backoff_base: float = 0.002
    backoff_cap: float = 0.025
    max_concurrent: int = 256
    limit: LimitPolicy | None = None
    breaker: BreakerPolicy | None = dataclasses.field(default_factory=BreakerPolicy)
    budget: BudgetPolicy = dataclasses.field(default_factory=BudgetPolicy)
    ejection: EjectionPolicy = dataclasses.field(default_factory=EjectionPolicy)
    hedge: HedgePolicy | None = dataclasses.field(default_factory=HedgePolicy)

    def __post_init__(self) -> None:
        if (
            self.timeout <= 0
            or self.connect_timeout <= 0
            or self.min_useful < 0
            or self.reply_reserve < 0
        ):
            raise ConfigurationError("timeouts must be positive")
        if self.attempts < 1:
            raise ConfigurationError("attempts counts the first try too: it must be >= 1")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ConfigurationError("attempt_timeout must be positive")
        if self.max_concurrent < 1:
            raise ConfigurationError("max_concurrent must be >= 1")
