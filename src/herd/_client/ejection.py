"""Outlier ejection: when an instance is taken out of rotation, and how many of a group are out.

Ejection follows Envoy's consecutive-failure outlier detection, scaled down for groups of a few
local instances. The count of ejected instances per group is kept as ejections start and end
(a heap of end times, expired lazily), so the cap on ejections is O(log n) whatever the group's
size, not a scan of every instance.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Protocol

from herd._model.errors import ConfigurationError

__all__ = ["EjectionPolicy", "Ejections"]


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    """When an instance is taken out of rotation and for how long.

    An instance is ejected after `consecutive_failures` failures in a row. Its n-th ejection lasts
    `base_ejection_s * n`, at most `max_ejection_s`. An ejection that would leave more than
    `max_ejected_pct` percent of a group ejected does not happen, so a group-wide problem (which
    ejection cannot fix) never empties the group.
    """

    consecutive_failures: int = 5
    base_ejection_s: float = 5.0
    max_ejection_s: float = 60.0
    max_ejected_pct: float = 50.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise ConfigurationError(
                f"consecutive_failures must be >= 1, got {self.consecutive_failures}"
            )
        if self.base_ejection_s <= 0:
            raise ConfigurationError(f"base_ejection_s must be > 0, got {self.base_ejection_s}")
        if self.max_ejection_s < self.base_ejection_s:
            raise ConfigurationError(
                f"max_ejection_s ({self.max_ejection_s}) must be >= "
                f"base_ejection_s ({self.base_ejection_s})"
            )
        if not 0.0 <= self.max_ejected_pct <= 100.0:
            raise ConfigurationError(
                f"max_ejected_pct must be within [0, 100], got {self.max_ejected_pct}"
            )


class Ejectable(Protocol):
    """What ejection reads and writes of one instance's state."""

    group: str
    failures: int
    ejections: int
    ejected_until: float


class Ejections:
    """Ejects instances by a policy and counts the ejected ones of each group."""

    __slots__ = ("_ejected", "_ends", "_policy", "_seq")

    def __init__(self, policy: EjectionPolicy) -> None:
        self._policy = policy
        self._ejected: dict[str, int] = {}
        # (end, sequence, state): the sequence keeps states from ever being compared.
        self._ends: list[tuple[float, int, Ejectable]] = []
        self._seq = 0

    def failed(self, state: Ejectable, group_size: int, now: float) -> None:
        """Count a failure that was the instance's fault; eject it when the policy says so and
        its group (of `group_size` instances now) has room for one more ejection."""
        state.failures += 1
        if state.failures < self._policy.consecutive_failures or state.ejected_until > now:
            return
        self._expire(now)
        group = state.group
        already = self._ejected.get(group, 0)
        if (already + 1) * 100.0 > self._policy.max_ejected_pct * group_size:
            # Keep the failure count: the instance is ejected on its next failure once the group
            # has room, rather than after another full run of failures.
            return
        state.ejections += 1
        state.failures = 0
        policy = self._policy
        until = now + min(policy.base_ejection_s * state.ejections, policy.max_ejection_s)
        state.ejected_until = until
        self._ejected[group] = already + 1
        self._seq += 1
        heapq.heappush(self._ends, (until, self._seq, state))

    def forget(self, state: Ejectable, now: float) -> None:
        """An instance left: it no longer counts against its group."""
        if state.ejected_until > now:
            self._release(state)
        # Its entry in the heap is now stale (the end no longer matches) and is skipped.
        state.ejected_until = 0.0

    def _expire(self, now: float) -> None:
        ends = self._ends
        while ends and ends[0][0] <= now:
            until, _, state = heapq.heappop(ends)
            if state.ejected_until == until:
                self._release(state)

    def _release(self, state: Ejectable) -> None:
        left = self._ejected.get(state.group, 0) - 1
        if left > 0:
            self._ejected[state.group] = left
        else:
            self._ejected.pop(state.group, None)
