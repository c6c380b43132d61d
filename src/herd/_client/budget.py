"""Retry budget: retries as a fraction of recent requests, with a small reserve (Finagle's design).

Each request deposits `ratio` tokens and each retry withdraws one. Deposits and withdrawals both
expire after the window, and a fixed reserve of `min_retries_per_s * window_s` tokens is always
added to the balance. Hence, over any run of `elapsed` seconds,

    retries <= ratio * requests + min_retries_per_s * (elapsed + window_s * (1 + 2 / BUCKETS))

(each window of `BUCKETS` buckets spends the reserve at most once; the extra `2 / BUCKETS` covers
the partial buckets at either end), while a steady `min_retries_per_s` of retries with no traffic
at all is always allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from herd._model.clock import MONOTONIC, Clock
from herd._model.errors import ConfigurationError

__all__ = ["BUCKETS", "BudgetPolicy", "BudgetSnapshot", "RetryBudget"]

BUCKETS = 10
"""How many buckets a budget's window is split into; deposits expire one bucket at a time."""

# Tokens are counted in integer millionths so that repeated deposits of e.g. 0.2 add up exactly;
# float sums would drift and flip decisions at exact boundaries.
_SCALE = 1_000_000


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """How many retries a client may make to one dependency; defaults after Finagle and Linkerd.

    `ratio`: tokens earned per request (0.2 means retries may add 20 % on top of requests).
    `window_s`: how long an earned token (and a spent one) counts.
    `min_retries_per_s`: retries allowed per second regardless of traffic, so a quiet client can
    still retry.
    """

    ratio: float = 0.2
    window_s: float = 10.0
    min_retries_per_s: float = 10.0

    def __post_init__(self) -> None:
        if self.ratio < 0:
            raise ConfigurationError(f"ratio must be >= 0, got {self.ratio}")
        if self.window_s <= 0:
            raise ConfigurationError(f"window_s must be > 0, got {self.window_s}")
        if self.min_retries_per_s < 0:
            raise ConfigurationError(
                f"min_retries_per_s must be >= 0, got {self.min_retries_per_s}"
            )


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """A point-in-time view of a budget, for metrics and the dashboard.

    `requests`, `retries` and `denied` are totals since the budget was created (counters, in the
    Prometheus sense); `balance` is how many retries could be made right now.
    """

    requests: int
    retries: int
    denied: int
    balance: float


_DEFAULT_POLICY = BudgetPolicy()


class RetryBudget:
    """A retry budget for one (client, dependency) pair.

    Call `record_request()` once per logical call (not per attempt: retries must not earn tokens,
    or a retry storm would fund itself), and `try_spend()` before each retry; a False means the
    retry must not be sent.
    """

    __slots__ = (
        "_clock",
        "_denied",
        "_deposit",
        "_head",
        "_net",
        "_requests",
        "_reserve",
        "_retries",
        "_total",
        "_width",
    )

    def __init__(self, policy: BudgetPolicy = _DEFAULT_POLICY, clock: Clock = MONOTONIC) -> None:
        self._clock = clock
        self._width = policy.window_s / BUCKETS
        self._deposit = round(policy.ratio * _SCALE)
        self._reserve = round(policy.min_retries_per_s * policy.window_s * _SCALE)
        # Net tokens (deposits minus withdrawals) per bucket, indexed by absolute bucket number
        # modulo BUCKETS; `_total` is their sum, kept current so a decision is O(1).
        self._net = [0] * BUCKETS
        self._total = 0
        self._head = int(clock.now() / self._width)
        self._requests = 0
        self._retries = 0
        self._denied = 0

    def record_request(self) -> None:
        """Count one request and deposit `ratio` tokens, which expire after `window_s`."""
        slot = self._advance(self._clock.now())
        self._net[slot] += self._deposit
        self._total += self._deposit
        self._requests += 1

    def try_spend(self) -> bool:
        """Withdraw one token for a retry; False (and nothing withdrawn) if the budget is empty."""
        slot = self._advance(self._clock.now())
        if self._total + self._reserve < _SCALE:
            self._denied += 1
            return False
        # The withdrawal is booked in the current bucket so that it too expires after the window;
        # that is what refills the reserve at `min_retries_per_s`.
        self._net[slot] -= _SCALE
        self._total -= _SCALE
        self._retries += 1
        return True

    def snapshot(self) -> BudgetSnapshot:
        """Return the lifetime counts and the current balance."""
        self._advance(self._clock.now())
        return BudgetSnapshot(
            requests=self._requests,
            retries=self._retries,
            denied=self._denied,
            balance=max(0, self._total + self._reserve) / _SCALE,
        )

    def _advance(self, now: float) -> int:
        """Expire buckets older than the window as of `now`; return the ring slot for `now`."""
        index = int(now / self._width)
        if index > self._head:
            if index - self._head >= BUCKETS:
                for slot in range(BUCKETS):
                    self._net[slot] = 0
                self._total = 0
            else:
                for absolute in range(self._head + 1, index + 1):
                    slot = absolute % BUCKETS
                    self._total -= self._net[slot]
                    self._net[slot] = 0
            self._head = index
        # A time before the head (impossible with a monotonic clock) lands in the newest bucket.
        return self._head % BUCKETS
