"""Instance selection within a server group: zone affinity, power of two choices, outlier ejection.

Ejection follows Envoy's consecutive-failure outlier detection, scaled down for groups of a few
local instances.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from herd._model.clock import MONOTONIC, Clock
from herd._model.errors import ConfigurationError
from herd._model.instance import Instance

__all__ = ["ZONE_SPILL", "Balancer", "EjectionPolicy"]

#: How many more outstanding requests the best local instance may have than the best one in
#: another zone before a request leaves the zone.
ZONE_SPILL = 4


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


class _Health:
    """What the balancer knows about one instance."""

    __slots__ = ("ejected_until", "ejections", "failures", "group", "outstanding")

    def __init__(self) -> None:
        self.outstanding = 0
        self.failures = 0
        self.ejections = 0
        self.ejected_until = 0.0
        self.group = ""


_DEFAULT_POLICY = EjectionPolicy()


class Balancer:
    """Picks an instance for each attempt and tracks per-instance load and health.

    One balancer serves one client's calls to one service (all its groups). Per attempt: `pick()`,
    then `started(id)` when the attempt is sent and `finished(id, ok, ...)` when it ends, in all
    cases (also on cancellation, with ok=False only if the failure was the instance's fault).
    """

    __slots__ = ("_clock", "_health", "_local_zone", "_policy", "_rng")

    def __init__(
        self,
        local_zone: str | None,
        policy: EjectionPolicy = _DEFAULT_POLICY,
        clock: Clock = MONOTONIC,
        rng: random.Random | None = None,
    ) -> None:
        self._local_zone = local_zone
        self._policy = policy
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._health: dict[str, _Health] = {}

    def pick(
        self,
        candidates: Sequence[Instance],
        tried: Collection[str] = (),
        avoid_zones: Collection[str] = (),
    ) -> Instance | None:
        """Choose an instance among `candidates` (the routable instances of one group).

        Never an instance whose id is in `tried`; None only if every candidate was tried. Ejected
        instances are skipped unless every untried candidate is ejected, in which case they are
        used anyway (Envoy's panic mode: a guess beats a certain failure). Among what is left, a
        zone not in `avoid_zones` is preferred (the driver passes the zones already tried, so a
        retry lands in another zone), then `local_zone` unless its instances have `ZONE_SPILL`
        more requests outstanding than another zone's; finally two instances are drawn at random
        and the one with fewer outstanding requests wins (ties broken at random).
        """
        health = self._health
        if len(candidates) == 1 and not tried:
            # One instance, first attempt: whether ejected or not (panic mode), it is the answer.
            only = candidates[0]
            state = health.get(only.id)
            if state is None:
                state = health[only.id] = _Health()
            state.group = only.group
            return only
        now = self._clock.now()
        # One pass sorts the untried candidates into tiers; only the best non-empty tier is used.
        # Tier 0: healthy, allowed zone, local. 1: healthy, allowed zone. 2: healthy, avoided zone.
        # Each list also serves as the panic fallback for ejected instances in the same order.
        healthy: list[list[Instance]] = [[], [], []]
        ejected: list[list[Instance]] = [[], [], []]
        for instance in candidates:
            if instance.id in tried:
                continue
            state = health.get(instance.id)
            tiers = ejected if state is not None and state.ejected_until > now else healthy
            if instance.zone in avoid_zones:
                tiers[2].append(instance)
            elif instance.zone == self._local_zone:
                tiers[0].append(instance)
            else:
                tiers[1].append(instance)
        if healthy[0] and healthy[1]:
            local = self._least_loaded_of_two(healthy[0])
            remote = self._least_loaded_of_two(healthy[1])
            # Zone affinity yields to load: a local instance piling up requests (slow, hung,
            # overloaded) loses to a quiet one elsewhere before ejection has caught up with it.
            if self.outstanding(local.id) > self.outstanding(remote.id) + ZONE_SPILL:
                healthy[0] = [remote]
        for tier in (*healthy, *ejected):
            if tier:
                chosen = self._least_loaded_of_two(tier)
                # Remember the group here, where the Instance is at hand, so that `finished()` can
                # cap ejections per group from just an id.
                state = health.get(chosen.id)
                if state is None:
                    state = health[chosen.id] = _Health()
                state.group = chosen.group
                return chosen
        return None

    def started(self, instance_id: str) -> None:
        """Count an attempt sent to `instance_id` as outstanding."""
        state = self._health.get(instance_id)
        if state is None:
            state = self._health[instance_id] = _Health()
        state.outstanding += 1

    def finished(self, instance_id: str, ok: bool, group_size: int) -> None:
        """End an attempt begun with `started()`, and update the instance's health.

        `ok` is whether the instance answered properly; a failure that is the instance's fault
        (refused connection, timeout, server error; never an overload refusal) counts towards
        ejection.
        `group_size` is how many instances the instance's server group has now: at most
        `max_ejected_pct` percent of them may be ejected at once. The group itself is the one of
        the Instance that `pick()` last returned for this id. An id the balancer has never seen, or
        has `forget()`-ten since (a late answer from a removed instance), is ignored.
        """
        state = self._health.get(instance_id)
        if state is None:
            return
        if state.outstanding > 0:
            state.outstanding -= 1
        if ok:
            state.failures = 0
            return
        state.failures += 1
        now = self._clock.now()
        if state.failures < self._policy.consecutive_failures or state.ejected_until > now:
            return
        if not self._may_eject(state.group, group_size, now):
            # Keep the failure count: the instance is ejected on its next failure once the group
            # has room, rather than after another full run of failures.
            return
        state.ejections += 1
        state.failures = 0
        state.ejected_until = now + min(
            self._policy.base_ejection_s * state.ejections, self._policy.max_ejection_s
        )

    def outstanding(self, instance_id: str) -> int:
        """How many attempts to `instance_id` are in flight."""
        state = self._health.get(instance_id)
        return state.outstanding if state is not None else 0

    def is_ejected(self, instance_id: str) -> bool:
        """Whether `instance_id` is currently ejected as an outlier."""
        state = self._health.get(instance_id)
        return state is not None and state.ejected_until > self._clock.now()

    def forget(self, instance_id: str) -> None:
        """Drop everything known about an instance that left the registry."""
        self._health.pop(instance_id, None)

    def _may_eject(self, group: str, group_size: int, now: float) -> bool:
        """Whether one more ejection keeps `group` within `max_ejected_pct` of `group_size`."""
        # Runs only when an instance reaches the failure threshold, so a scan is fine here.
        already = sum(
            1
            for state in self._health.values()
            if state.group == group and state.ejected_until > now
        )
        return (already + 1) * 100.0 <= self._policy.max_ejected_pct * group_size

    def _least_loaded_of_two(self, tier: list[Instance]) -> Instance:
        count = len(tier)
        if count == 1:
            return tier[0]
        rng = self._rng
        first = rng.randrange(count)
        # Draw the second from the other count - 1 positions, so the two are always distinct.
        second = rng.randrange(count - 1)
        if second >= first:
            second += 1
        a, b = tier[first], tier[second]
        # `a` is itself a uniform draw, so taking it on a tie breaks ties at random.
        return b if self.outstanding(b.id) < self.outstanding(a.id) else a
