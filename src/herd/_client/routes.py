"""Route: pick the server group for one call from the service's route and the routing context.

Runs once per call, before balancing: the index of instances by group and version is rebuilt
only when the resolver hands out a new list or a new route, so a call pays a context lookup and a
walk over two or three splits.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from herd._model.instance import Instance
from herd._model.route import BUCKET, BUCKETS, PIN, Route

__all__ = ["GroupChooser"]


class GroupChooser:
    """Narrows a service's UP instances to the group one call goes to.

    `choose` answers the group's instances and the instances a retry may move on to when the
    group has no untried one left: every group the route gives traffic to.
    """

    __slots__ = ("_by_version", "_default", "_instances", "_ranges", "_rng", "_route")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._instances: Sequence[Instance] | None = None
        self._route: Route | None = None
        self._ranges: list[tuple[int, list[Instance]]] = []
        self._by_version: dict[str, list[Instance]] = {}
        self._default: Sequence[Instance] = ()

    def choose(
        self, instances: Sequence[Instance], route: Route, context: Mapping[str, str]
    ) -> tuple[Sequence[Instance], Sequence[Instance]]:
        """The instances of the group for a call with routing `context`, and the fallback.

        A `pin` names a version: its group when the service has it UP. Otherwise the `bucket`
        (0-99; a random one when the context has none) picks the split that covers it. A split
        whose group has no UP instance, like a route none of whose groups is UP, yields the
        route's other groups, then every UP instance: a route never makes a service unreachable.
        """
        if instances is not self._instances or route is not self._route:
            self._index(instances, route)
        pin = context.get(PIN)
        if pin is not None:
            pinned = self._by_version.get(pin)
            if pinned:
                return pinned, self._default
        raw = context.get(BUCKET)
        if raw is not None and raw.isdigit() and int(raw) < BUCKETS:
            bucket = int(raw)
        else:
            bucket = self._rng.randrange(BUCKETS)
        for end, members in self._ranges:
            if bucket < end:
                return (members or self._default), self._default
        return self._default, self._default

    def _index(self, instances: Sequence[Instance], route: Route) -> None:
        by_group: dict[str, list[Instance]] = {}
        by_version: dict[str, list[Instance]] = {}
        for instance in instances:
            by_group.setdefault(instance.group, []).append(instance)
            # A pin reaches the version's own group (`movie-v002`), not a baseline of it.
            if instance.group == f"{instance.service}-{instance.version}":
                by_version.setdefault(instance.version, []).append(instance)
        ranges: list[tuple[int, list[Instance]]] = []
        end = 0
        default: list[Instance] = []
        for split in route.splits:
            if split.share <= 0:
                continue
            end += split.share
            members = by_group.get(split.group, [])
            ranges.append((end, members))
            default.extend(members)
        self._ranges = ranges
        self._by_version = by_version
        self._default = default or instances
        self._instances = instances
        self._route = route
