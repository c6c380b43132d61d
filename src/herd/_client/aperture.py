"""The aperture: the bounded part of a large group that one client draws its picks from.

Finagle's aperture balancer: a client that talks to a group of thousands does not spread its
calls over all of them (a connection each, cold caches everywhere, load too thin for the
balancer to learn from); it uses a window of the group, wide enough for its load. Here each
zone's instances form a ring, each client's window starts at a random place on it (so clients
together cover the group) and moves one instance along every `ROTATE_S` seconds (so over time
every instance serves every client's share), and its width follows the client's load: wider
when each instance in it has more than `HIGH_LOAD` calls outstanding, narrower (at most once a
second) below `LOW_LOAD`. Ejected instances in a window are skipped, not replaced: a zone whose
window holds no healthy instance is left for the next zone (a hung zone is found by a handful of
ejections, not one instance at a time), and only when no window anywhere holds one does the
balancer look at the whole group.

The index of a candidate list by zone is built once per list (the resolver and the group chooser
hand out a new list on every change), so a pick is O(1) whatever the group's size.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from herd._model.instance import Instance

__all__ = ["Aperture", "Tiers", "Zones"]

#: The narrowest window, in instances per zone: Finagle's default minimum aperture.
MIN_WIDTH = 12
#: Calls outstanding per instance of the window above which it widens, and below which it narrows.
HIGH_LOAD = 2.0
LOW_LOAD = 0.5
#: The window moves one instance along its zone's ring this often.
ROTATE_S = 1.0
#: How many candidate lists keep their index (a call's group, the fallback, a few routes).
_INDEXES = 8


#: Rings (one per zone) in the balancer's order of preference: local, other, avoided zones.
Tiers = tuple[list[list[Instance]], list[list[Instance]], list[list[Instance]]]


class Zones:
    """One candidate list's instances by zone, in the list's order."""

    __slots__ = ("by_zone", "instances", "tiers")

    def __init__(self, instances: Sequence[Instance]) -> None:
        self.instances = instances
        self.by_zone: dict[str, list[Instance]] = {}
        for instance in instances:
            self.by_zone.setdefault(instance.zone, []).append(instance)
        self.tiers: Tiers | None = None
        """The tiers of a first attempt (no zone avoided), kept by the balancer that owns this."""


class Aperture:
    """One client's window over each zone of the groups it calls."""

    __slots__ = ("_indexes", "_narrowed", "_offset", "_rng", "width")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # Where this client's window starts on every ring, as a fraction of the ring.
        self._offset = rng.random()
        self.width = MIN_WIDTH
        self._narrowed = 0.0
        self._indexes: dict[int, Zones] = {}

    def zones(self, candidates: Sequence[Instance]) -> Zones:
        """The index of `candidates`, built on first sight of the list."""
        # The index holds the list, so its id cannot be reused while the entry exists.
        index = self._indexes.get(id(candidates))
        if index is None or index.instances is not candidates:
            if len(self._indexes) >= _INDEXES:
                del self._indexes[next(iter(self._indexes))]
            index = self._indexes[id(candidates)] = Zones(candidates)
        return index

    def follow_load(self, outstanding: int, now: float) -> None:
        """Widen or narrow the window for `outstanding` calls in flight from this client."""
        width = self.width
        if outstanding > HIGH_LOAD * width:
            self.width = width + 1
        elif outstanding < LOW_LOAD * width and width > MIN_WIDTH and now - self._narrowed >= 1.0:
            self.width = width - 1
            self._narrowed = now

    def draw(self, ring: list[Instance], now: float) -> Instance:
        """A uniform draw from this client's window over `ring`."""
        # `int(random() * n)` rather than `randrange(n)`: a third of the cost, and as uniform for
        # rings far smaller than 2**53.
        size = len(ring)
        if size <= self.width:
            return ring[int(self._rng.random() * size)]
        start = int(self._offset * size + now / ROTATE_S)
        return ring[(start + int(self._rng.random() * self.width)) % size]

    def window(self, ring: list[Instance], now: float) -> list[Instance]:
        """Every instance of this client's window over `ring`, for an exact look."""
        size = len(ring)
        if size <= self.width:
            return ring
        start = int(self._offset * size + now / ROTATE_S)
        return [ring[(start + k) % size] for k in range(self.width)]
