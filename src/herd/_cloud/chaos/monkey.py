"""Chaos Monkey's decisions, pure logic on an injectable clock and random source: each opted-in
group loses a random UP instance at exponentially distributed times, `mean_interval_s` apart on
average, never leaving fewer than `min_healthy` UP, never two at once."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence

from herd._cloud.app import ChaosSpec
from herd._cloud.interface import InstanceView, MonkeyView
from herd._model.instance import Status


@dataclasses.dataclass
class _Watched:
    spec: ChaosSpec
    next_at: float
    victim: str | None = None
    waiting: str = ""


@dataclasses.dataclass(frozen=True)
class Strike:
    """The monkey's choice: kill `instance` of `group` (or, `leashed`, only say so)."""

    group: str
    instance: str
    leashed: bool


class Monkey:
    """Chaos Monkey's decisions. `clock` is monotonic seconds; `rng` draws intervals and
    victims."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._watched: dict[str, _Watched] = {}
        self.paused = False

    @property
    def watching(self) -> bool:
        """Whether any group is watched."""
        return bool(self._watched)

    def watch(self, group: str, spec: ChaosSpec) -> None:
        """Watch `group` with `spec` (replacing its settings), first strike one interval away."""
        self._watched[group] = _Watched(spec, self._clock() + self._interval(spec))

    def unwatch(self, group: str | None = None) -> None:
        """Stop watching `group` (every group when None)."""
        if group is None:
            self._watched.clear()
        else:
            self._watched.pop(group, None)

    def views(self) -> list[MonkeyView]:
        """The watched groups, for `herd chaos status`."""
        now = self._clock()
        return [
            MonkeyView(
                group=name,
                mean_interval_s=watched.spec.mean_interval_s,
                min_healthy=watched.spec.min_healthy,
                leashed=watched.spec.leashed,
                next_in_s=round(max(0.0, watched.next_at - now), 3),
                waiting="paused" if self.paused else watched.waiting,
            )
            for name, watched in sorted(self._watched.items())
        ]

    def due(
        self, members: Mapping[str, Sequence[InstanceView]], desired: Mapping[str, int]
    ) -> list[Strike]:
        """The strikes due now, given each group's instances and desired count."""
        if self.paused:
            return []
        now = self._clock()
        strikes = []
        for name, watched in self._watched.items():
            if now < watched.next_at:
                continue
            group = members.get(name, ())
            ids = {view.id for view in group}
            up = sorted((view for view in group if view.status == Status.UP), key=lambda v: v.id)
            if watched.victim in ids or len(up) < desired.get(name, 0) or len(up) < len(group):
                # Never two at once: the last victim is replaced and UP first.
                watched.waiting = "the group is not back at its count, all UP"
                continue
            watched.victim = None
            watched.next_at = now + self._interval(watched.spec)
            if len(up) - 1 < watched.spec.min_healthy:
                watched.waiting = f"fewer than {watched.spec.min_healthy + 1} UP: skipped"
                continue
            watched.waiting = ""
            victim = self._rng.choice(up)
            if not watched.spec.leashed:
                watched.victim = victim.id
            strikes.append(Strike(name, victim.id, watched.spec.leashed))
        return strikes

    def _interval(self, spec: ChaosSpec) -> float:
        return self._rng.expovariate(1.0 / spec.mean_interval_s)
