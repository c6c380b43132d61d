"""The autoscaler's decisions: how many instances a group should have, and why.

Pure logic on an injectable clock; the controller feeds it each instance's own figure (requests
in flight, or percent of one core) every second and applies what it decides. The rules follow
Kubernetes' HPA and Knative's concurrency autoscaler:

- **Want** = ceil(group load / target), within min..max, where group load is the sum of the
  instances' figures averaged over the last `SHORT_WINDOW_S` (two or three rounds, so that one
  burst of in-flight requests caught by a sample is not a trend).
- **Scale out at once** when want exceeds the count: no waiting, no step limit.
- **Panic** when the latest figure per instance is twice the target or more: act on that latest
  figure alone (the average still holds the calm before it), and scale in nothing until the
  stabilisation window has passed without panic, as Knative does.
- **Scale in slowly**: only when every want of the last `scale_in_after_s` was below the count,
  one instance at a time, at most one every `scale_in_every_s`. The controller drains it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from herd._cloud.app import AutoscaleSpec, GroupSpec
from herd._model.clock import MONOTONIC, Clock

SHORT_WINDOW_S = 2.0
"""How far back the figures are averaged for scaling out."""
PANIC_FACTOR = 2.0
"""Load per instance at this multiple of the target means panic."""

Action = Literal["out", "in", "hold"]


@dataclass(frozen=True)
class Decision:
    """One evaluation: the count the group should have and why (`reason` is for people; the
    other fields are for a history to query)."""

    action: Action
    current: int
    desired: int
    reason: str
    panic: bool
    per_instance: float
    """The figure per reporting instance this decision saw (NaN without figures)."""
    reporting: int
    """How many instances sent a figure."""


def initial_count(group: GroupSpec) -> int:
    """The count a group starts with: its `instances`, within its autoscale bounds."""
    if group.autoscale is None:
        return group.instances
    return min(group.autoscale.max, max(group.autoscale.min, group.instances))


class Autoscaler:
    """Decides one group's size from its instances' figures; one per autoscaled group."""

    def __init__(self, spec: AutoscaleSpec, *, clock: Clock = MONOTONIC) -> None:
        self.spec = spec
        self._clock = clock
        self._started = clock.now()
        self._totals: deque[tuple[float, float]] = deque()
        """(time, group load) of the last `SHORT_WINDOW_S`."""
        self._wants: deque[tuple[float, int]] = deque()
        """(time, want) of the last `scale_in_after_s`."""
        self._panic_until = -math.inf
        self._last_in = -math.inf

    @property
    def unit(self) -> str:
        """How figures read in reasons."""
        return "in flight" if self.spec.metric == "inflight" else "% CPU"

    @property
    def policy(self) -> str:
        """The settings in a few words, for `herd ps`."""
        spec = self.spec
        return f"{spec.min}..{spec.max} at {spec.target:g} {self.unit}"

    def decide(self, current: int, figures: list[float]) -> Decision:
        """The group's count should be `desired`: `current` is its count now, `figures` one
        value per instance that reported (instances starting or dead send none)."""
        spec, now = self.spec, self._clock.now()
        if current < spec.min or current > spec.max:
            bound = spec.min if current < spec.min else spec.max
            word = "min" if bound == spec.min else "max"
            return self._decision(
                "out" if bound > current else "in",
                current,
                bound,
                f"{current} is outside {spec.min}..{spec.max}: to the {word}, {bound}",
                figures,
            )
        if not figures:
            return self._decision("hold", current, current, "no figures from any instance yet", [])
        total = sum(figures)
        per_instance = total / len(figures)
        self._totals.append((now, total))
        while self._totals[0][0] < now - SHORT_WINDOW_S:
            self._totals.popleft()
        if per_instance >= PANIC_FACTOR * spec.target:
            self._panic_until = now + spec.scale_in_after_s
        panic = now < self._panic_until
        # In panic the latest figure counts: the average still holds the calm before it.
        load = total if panic else sum(t for _, t in self._totals) / len(self._totals)
        want = min(spec.max, max(spec.min, math.ceil(load / spec.target - 1e-9)))
        self._wants.append((now, want))
        while self._wants[0][0] < now - spec.scale_in_after_s:
            self._wants.popleft()
        seen = f"{per_instance:.3g} {self.unit} per instance, target {spec.target:g}"
        mode = "panic: " if panic else ""
        if want > current:
            return self._decision("out", current, want, f"{mode}{seen}: {want} wanted", figures)
        if panic:
            left = self._panic_until - now
            reason = f"panic: {seen}; no scale-in for {left:.0f} s"
            return self._decision("hold", current, current, reason, figures)
        if want == current:
            return self._decision("hold", current, current, f"{seen}: steady", figures)
        # Every want of a whole window must be below the count: the latest one that was not
        # (or the start, which saw nothing before it) holds the scale-in off.
        blocking = [t for t, w in self._wants if w >= current]
        if blocking or now - self._started < spec.scale_in_after_s:
            since = blocking[-1] if blocking else self._started
            left = spec.scale_in_after_s - (now - since)
            reason = f"{seen}: {want} would do; scale-in waits {max(left, 0.0):.0f} s more"
            return self._decision("hold", current, current, reason, figures)
        if now - self._last_in < spec.scale_in_every_s:
            left = spec.scale_in_every_s - (now - self._last_in)
            reason = f"{seen}: next scale-in in {left:.0f} s"
            return self._decision("hold", current, current, reason, figures)
        self._last_in = now
        reason = (
            f"{seen}: fewer wanted for {spec.scale_in_after_s:g} s, one instance less"
            f" ({want} would do)"
        )
        return self._decision("in", current, current - 1, reason, figures)

    def _decision(
        self, action: Action, current: int, desired: int, reason: str, figures: list[float]
    ) -> Decision:
        per_instance = sum(figures) / len(figures) if figures else math.nan
        panic = self._clock.now() < self._panic_until
        return Decision(action, current, desired, reason, panic, per_instance, len(figures))
