"""Chaos Monkey's decisions, on manual time: when, whom, and when not."""

from __future__ import annotations

import itertools
import random
import statistics

from herd._cloud.app import ChaosSpec
from herd._cloud.chaos.monkey import Monkey, Strike
from herd._cloud.interface import InstanceView


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def instance(name: str, status: str = "UP") -> InstanceView:
    return InstanceView(name, "g", "svc", "v001", "a", status, "127.0.0.1:1", 1, 1.0)


def group(*names: str, status: str = "UP") -> dict[str, list[InstanceView]]:
    return {"g": [instance(name, status) for name in names]}


def first_strike(monkey: Monkey, clock: Clock, members: dict[str, list[InstanceView]]) -> Strike:
    for _ in range(100_000):
        clock.now += 0.25
        strikes = monkey.due(members, {"g": len(members["g"])})
        if strikes:
            (strike,) = strikes
            return strike
    raise AssertionError("the monkey never struck")


def test_strikes_are_exponentially_spaced_around_the_mean() -> None:
    clock = Clock()
    monkey = Monkey(clock=clock, rng=random.Random(7))
    monkey.watch("g", ChaosSpec(mean_interval_s=30, min_healthy=1))
    times, names = [], ["i0", "i1", "i2"]
    for n in range(400):
        strike = first_strike(monkey, clock, group(*names))
        times.append(clock.now)
        # The victim is replaced by a fresh instance at once.
        names = [name for name in names if name != strike.instance] + [f"n{n}"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = statistics.fmean(gaps)
    assert 27 < mean < 33, mean
    # An exponential's standard deviation is its mean (a fixed period's would be 0).
    assert 0.85 < statistics.stdev(gaps) / mean < 1.15


def test_never_two_at_once_and_never_below_min_healthy() -> None:
    clock = Clock()
    monkey = Monkey(clock=clock, rng=random.Random(1))
    monkey.watch("g", ChaosSpec(mean_interval_s=1, min_healthy=2))
    strike = first_strike(monkey, clock, group("a", "b", "c"))
    assert strike.group == "g" and not strike.leashed
    left = [name for name in ("a", "b", "c") if name != strike.instance]
    # The victim still shows (DOWN) and its replacement is not UP yet: no second strike.
    waiting = {"g": [instance(strike.instance, "DOWN"), *(instance(n) for n in left)]}
    clock.now += 1000
    assert monkey.due(waiting, {"g": 3}) == []
    assert monkey.views()[0].waiting.startswith("the group is not back")
    starting = {"g": [instance("new", "STARTING"), *(instance(n) for n in left)]}
    assert monkey.due(starting, {"g": 3}) == []
    # Back at three, all UP: it may strike again.
    assert first_strike(monkey, clock, group("new", *left)).instance in {"new", *left}
    # A group of two UP with min_healthy 2 (watched afresh): it skips rather than strike.
    monkey.watch("g", ChaosSpec(mean_interval_s=1, min_healthy=2))
    clock.now += 1000
    assert monkey.due(group("x", "y"), {"g": 2}) == []
    assert "skipped" in monkey.views()[0].waiting


def test_leashed_names_a_victim_without_waiting_for_it_and_pause_stops_everything() -> None:
    clock = Clock()
    monkey = Monkey(clock=clock, rng=random.Random(3))
    monkey.watch("g", ChaosSpec(mean_interval_s=1, min_healthy=1, leashed=True))
    members = group("a", "b")
    first = first_strike(monkey, clock, members)
    assert first.leashed
    # Nobody died, so the next leashed strike comes without waiting for a replacement.
    assert first_strike(monkey, clock, members).leashed
    monkey.paused = True
    clock.now += 1000
    assert monkey.due(members, {"g": 2}) == []
    assert monkey.views()[0].waiting == "paused"
    monkey.paused = False
    monkey.unwatch("g")
    assert monkey.due(members, {"g": 2}) == [] and not monkey.watching
