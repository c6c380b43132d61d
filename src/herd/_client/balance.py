"""Instance selection within a server group: zone affinity, power of two choices over peak-EWMA
latency times outstanding requests, within an aperture, with outlier ejection.

The cost of an instance is Linkerd's and Finagle's peak EWMA: a moving average of its answers'
latency that jumps to any slower answer at once and comes down over `DECAY_S`, times one plus
its requests outstanding; an instance that has not answered yet is taken to be typical (the
client's average answer), so a replacement does not draw a burst of calls while it is cold. A
failure that is the instance's fault counts as a slow answer (ten times its estimate, at most
`FAILURE_PENALTY_CAP_S`), so an instance answering fast errors looks
expensive, not fast (linkerd2-proxy#4537), well before consecutive-failure ejection takes it out.
A pick draws two instances at random from the client's aperture (`aperture.py`) and takes the
cheaper: O(1) whatever the group's size.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence

from herd._client.aperture import Aperture, Tiers, Zones
from herd._client.ejection import EjectionPolicy, Ejections
from herd._model.clock import MONOTONIC, Clock
from herd._model.instance import Instance

__all__ = ["DECAY_S", "ZONE_SPILL", "Balancer", "EjectionPolicy"]

#: How many more outstanding requests the best local instance may have than the best one in
#: another zone before a request leaves the zone.
ZONE_SPILL = 4
#: The peak EWMA's time constant: how fast a latency estimate comes down after a slow answer
#: (and decays when the instance gets no traffic, so a shunned instance is tried again).
DECAY_S = 10.0
#: A failure counts as an answer this many times slower than the instance's estimate...
FAILURE_PENALTY = 10.0
#: ... at most this slow, unless the failed attempt itself took longer.
FAILURE_PENALTY_CAP_S = 1.0
#: The least an estimate counts for, so that a new instance's outstanding requests still weigh.
_FLOOR_S = 1e-4
#: Random draws from a window before an exact look at it.
_DRAWS = 8
#: The weight of each answer in the client's typical latency, a new instance's prior.
_TYPICAL_WEIGHT = 0.05


class _Load:
    """What the balancer knows about one instance."""

    __slots__ = (
        "answered",
        "ejected_until",
        "ejections",
        "ewma",
        "failures",
        "group",
        "outstanding",
        "stamp",
    )

    def __init__(self, group: str) -> None:
        self.answered = False
        self.outstanding = 0
        self.failures = 0
        self.ejections = 0
        self.ejected_until = 0.0
        self.group = group
        self.ewma = 0.0
        self.stamp = 0.0

    def cost(self, now: float, prior: float) -> float:
        """Peak-EWMA latency, decayed since the last answer, times the requests in flight + 1;
        `prior` stands for the latency of an instance that has not answered yet."""
        estimate = self.ewma
        if self.stamp == 0.0:
            estimate = prior
        elif estimate > _FLOOR_S:
            estimate *= math.exp((self.stamp - now) / DECAY_S)
        return max(estimate, _FLOOR_S) * (self.outstanding + 1)

    def observe(self, seconds: float, now: float) -> None:
        """One answer's latency: a slower one is taken at once, a faster one averaged in."""
        if seconds >= self.ewma:
            self.ewma = seconds
        else:
            weight = math.exp((self.stamp - now) / DECAY_S)
            self.ewma = self.ewma * weight + seconds * (1.0 - weight)
        self.stamp = now


_DEFAULT_POLICY = EjectionPolicy()


class Balancer:
    """Picks an instance for each attempt and tracks per-instance load and health.

    One balancer serves one client's calls to one service (all its groups). Per attempt: `pick()`,
    then `started(id)` when the attempt is sent and `finished(id, ok, ...)` when it ends, in all
    cases (also on cancellation, with ok=False only if the failure was the instance's fault).
    """

    __slots__ = (
        "_aperture",
        "_clock",
        "_ejections",
        "_health",
        "_inflight",
        "_local_zone",
        "_rng",
        "_typical",
    )

    def __init__(
        self,
        local_zone: str | None,
        policy: EjectionPolicy = _DEFAULT_POLICY,
        clock: Clock = MONOTONIC,
        rng: random.Random | None = None,
    ) -> None:
        self._local_zone = local_zone
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._health: dict[str, _Load] = {}
        self._ejections = Ejections(policy)
        self._aperture = Aperture(self._rng)
        self._inflight = 0
        # The typical answer's latency over every instance: what a new instance is taken to
        # cost until it answers (a replacement does not draw a burst of calls at once, cold).
        self._typical = 0.0

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
        from this client's aperture over the zone and the cheaper wins (ties broken at random).
        """
        if len(candidates) == 1 and not tried:
            # One instance, first attempt: whether ejected or not (panic mode), it is the answer.
            return self._chosen(candidates[0])
        if not candidates:
            return None
        now = self._clock.now()
        aperture = self._aperture
        aperture.follow_load(self._inflight, now)
        zones = aperture.zones(candidates)
        if avoid_zones:
            tiers = self._tiers(zones, avoid_zones)
        elif zones.tiers is not None:
            tiers = zones.tiers
        else:
            tiers = zones.tiers = self._tiers(zones, ())
        local = self._choose(tiers[0], tried, now)
        remote = self._choose(tiers[1], tried, now)
        if local is not None and remote is not None:
            # Zone affinity yields to load: a local instance piling up requests (slow, hung,
            # overloaded) loses to a quiet one elsewhere before ejection has caught up with it.
            if self.outstanding(local.id) > self.outstanding(remote.id) + ZONE_SPILL:
                return self._chosen(remote)
            return self._chosen(local)
        chosen = local or remote or self._choose(tiers[2], tried, now)
        if chosen is None:
            chosen = self._choose_exactly(tiers, tried, now)
        return None if chosen is None else self._chosen(chosen)

    def started(self, instance_id: str) -> None:
        """Count an attempt sent to `instance_id` as outstanding."""
        state = self._health.get(instance_id)
        if state is None:
            state = self._health[instance_id] = _Load("")
        state.outstanding += 1
        self._inflight += 1

    def finished(
        self,
        instance_id: str,
        ok: bool,
        group_size: int,
        latency: float | None = None,
        *,
        shed: bool = False,
    ) -> None:
        """End an attempt begun with `started()`, and update the instance's health.

        `ok` is whether the instance answered properly; a failure that is the instance's fault
        (refused connection, timeout, server error) counts towards ejection and as a slow answer
        in its cost. `shed` marks an overload refusal: not the instance's failure, so it never
        ejects, but it costs like a slow answer (a fast refusal must not look healthy: linkerd2-
        proxy#4537), so picks go elsewhere while the instance sheds. `latency` is how long the
        attempt took (None: it was cancelled with no verdict, which says nothing of the
        instance's speed). `group_size` is how many instances the instance's server group has
        now: at most `max_ejected_pct` percent of them may be ejected at once. The group itself
        is the one of the Instance that `pick()` last returned for this id. An id the balancer
        has never seen, or has `forget()`-ten since (a late answer from a removed instance), is
        ignored.
        """
        state = self._health.get(instance_id)
        if state is None:
            return
        if state.outstanding > 0:
            state.outstanding -= 1
            self._inflight -= 1
        if ok and not shed:
            state.failures = 0
            if latency is not None:
                state.answered = True
                state.observe(latency, self._clock.now())
                self._typical += (latency - self._typical) * _TYPICAL_WEIGHT
            return
        now = self._clock.now()
        known = max(state.ewma, self._typical, _FLOOR_S)
        penalty = min(FAILURE_PENALTY * known, FAILURE_PENALTY_CAP_S)
        state.observe(max(penalty, latency or 0.0), now)
        if not shed:
            self._ejections.failed(state, group_size, now)

    def outstanding(self, instance_id: str) -> int:
        """How many attempts to `instance_id` are in flight."""
        state = self._health.get(instance_id)
        return state.outstanding if state is not None else 0

    def cost(self, instance_id: str) -> float:
        """What a pick weighs `instance_id` at now: its latency estimate times its load."""
        state = self._health.get(instance_id)
        return (state or _Load("")).cost(self._clock.now(), self._typical)

    def answered(self, instance_id: str) -> bool:
        """Whether `instance_id` has ever answered an attempt of this client properly."""
        state = self._health.get(instance_id)
        return state is not None and state.answered

    def is_ejected(self, instance_id: str) -> bool:
        """Whether `instance_id` is currently ejected as an outlier."""
        state = self._health.get(instance_id)
        return state is not None and state.ejected_until > self._clock.now()

    def forget(self, instance_id: str) -> None:
        """Drop everything known about an instance that left the registry."""
        state = self._health.pop(instance_id, None)
        if state is not None:
            self._inflight -= state.outstanding
            self._ejections.forget(state, self._clock.now())

    def _chosen(self, instance: Instance) -> Instance:
        # Remember the group here, where the Instance is at hand, so that `finished()` can cap
        # ejections per group from just an id.
        state = self._health.get(instance.id)
        if state is None:
            self._health[instance.id] = _Load(instance.group)
        else:
            state.group = instance.group
        return instance

    def _tiers(self, zones: Zones, avoid_zones: Collection[str]) -> Tiers:
        """Tier 0: the local zone, unless avoided. 1: the other allowed zones. 2: avoided ones."""
        tiers: Tiers = ([], [], [])
        for zone, ring in zones.by_zone.items():
            if zone in avoid_zones:
                tiers[2].append(ring)
            elif zone == self._local_zone:
                tiers[0].append(ring)
            else:
                tiers[1].append(ring)
        return tiers

    def _choose(
        self, rings: list[list[Instance]], tried: Collection[str], now: float
    ) -> Instance | None:
        """The cheaper of two healthy untried instances drawn from the aperture over `rings`
        (one per zone); an exact look at the windows when the draws find fewer than two."""
        if not rings:
            return None
        aperture = self._aperture
        health = self._health
        if len(rings) == 1 and 1 < len(rings[0]) <= aperture.width:
            # A zone within the window (every small group): two distinct draws at once.
            ring = rings[0]
            size = len(ring)
            random = self._rng.random
            first = int(random() * size)
            second = int(random() * (size - 1))
            a, b = ring[first], ring[second + 1 if second >= first else second]
            if self._usable(a, tried, now) and self._usable(b, tried, now):
                return self._cheaper(a, b, now)
        found: list[Instance] = []
        for _ in range(_DRAWS):
            ring = rings[0] if len(rings) == 1 else rings[int(self._rng.random() * len(rings))]
            instance = aperture.draw(ring, now)
            if instance.id in tried or (found and instance is found[0]):
                continue
            state = health.get(instance.id)
            if state is not None and state.ejected_until > now:
                continue
            found.append(instance)
            if len(found) == 2:
                return self._cheaper(found[0], found[1], now)
        found = [
            instance
            for ring in rings
            for instance in aperture.window(ring, now)
            if instance.id not in tried and not self._ejected(instance, now)
        ]
        return self._two_of(found, now)

    def _choose_exactly(
        self, tiers: tuple[list[list[Instance]], ...], tried: Collection[str], now: float
    ) -> Instance | None:
        """No window holds a healthy untried instance: look at every instance, healthy first in
        tier order, then ejected ones (panic mode). Rare, so a scan is fine here."""
        for ejected in (False, True):
            for rings in tiers:
                found = [
                    instance
                    for ring in rings
                    for instance in ring
                    if instance.id not in tried and self._ejected(instance, now) is ejected
                ]
                if found:
                    return self._two_of(found, now)
        return None

    def _usable(self, instance: Instance, tried: Collection[str], now: float) -> bool:
        if instance.id in tried:
            return False
        state = self._health.get(instance.id)
        return state is None or state.ejected_until <= now

    def _ejected(self, instance: Instance, now: float) -> bool:
        state = self._health.get(instance.id)
        return state is not None and state.ejected_until > now

    def _two_of(self, found: list[Instance], now: float) -> Instance | None:
        count = len(found)
        if count <= 1:
            return found[0] if found else None
        rng = self._rng
        first = rng.randrange(count)
        # Draw the second from the other count - 1 positions, so the two are always distinct.
        second = rng.randrange(count - 1)
        if second >= first:
            second += 1
        return self._cheaper(found[first], found[second], now)

    def _cheaper(self, a: Instance, b: Instance, now: float) -> Instance:
        health = self._health
        state_a, state_b = health.get(a.id), health.get(b.id)
        typical = self._typical
        cost_a = state_a.cost(now, typical) if state_a is not None else max(typical, _FLOOR_S)
        cost_b = state_b.cost(now, typical) if state_b is not None else max(typical, _FLOOR_S)
        # `a` is itself a uniform draw, so taking it on a tie breaks ties at random.
        return b if cost_b < cost_a else a
