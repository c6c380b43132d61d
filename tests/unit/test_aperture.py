"""Peak-EWMA costs and the aperture: fast failures lose their share, picks stay O(1) at 10,000
instances, a client's window is bounded, rotates, and clients together cover the group."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import overload

from herd._client.balance import Balancer, EjectionPolicy
from herd._model.clock import ManualClock
from herd._model.instance import Instance, Status

NEVER_EJECT = EjectionPolicy(consecutive_failures=10**9)
#: The narrowest window the tests expect: Finagle's minimum aperture.
WINDOW = 12


def inst(n: int, zone: str = "a") -> Instance:
    return Instance(
        id=f"i{n}",
        service="svc",
        group="svc-v001",
        version="v001",
        zone=zone,
        host="10.0.0.1",
        port=7000 + n % 50000,
        status=Status.UP,
    )


def share_of_failing(policy: EjectionPolicy, seed: int) -> float:
    """2 s of 500 calls/s, 8 in flight, over five instances; `i0` answers errors in 0.1 ms,
    the others succeed in 5 ms. The share of calls `i0` got."""
    clock = ManualClock()
    balancer = Balancer("a", policy, clock, random.Random(seed))
    group = [inst(n) for n in range(5)]
    in_flight: list[tuple[float, Instance]] = []
    picked: Counter[str] = Counter()
    for _ in range(1000):
        clock.advance(0.002)
        for ends, instance in [entry for entry in in_flight if entry[0] <= clock.now()]:
            in_flight.remove((ends, instance))
            failing = instance.id == "i0"
            balancer.finished(instance.id, not failing, 5, 0.0001 if failing else 0.005)
        while len(in_flight) < 8:
            chosen = balancer.pick(group)
            assert chosen is not None
            picked[chosen.id] += 1
            balancer.started(chosen.id)
            took = 0.0001 if chosen.id == "i0" else 0.005
            in_flight.append((clock.now() + took, chosen))
    return picked["i0"] / sum(picked.values())


def test_an_instance_answering_instant_errors_loses_its_share_without_ejection() -> None:
    for seed in range(5):
        assert share_of_failing(NEVER_EJECT, seed) < 0.05


def test_an_instance_answering_instant_errors_loses_its_share_with_ejection() -> None:
    for seed in range(5):
        assert share_of_failing(EjectionPolicy(), seed) < 0.05


def test_a_slower_instance_gets_less_traffic() -> None:
    clock = ManualClock()
    balancer = Balancer(None, NEVER_EJECT, clock, random.Random(3))
    fast, slow = inst(0), inst(1)
    picked: Counter[str] = Counter()
    for _ in range(2000):
        chosen = balancer.pick([fast, slow])
        assert chosen is not None
        picked[chosen.id] += 1
        balancer.started(chosen.id)
        clock.advance(0.001)
        balancer.finished(chosen.id, True, 2, 0.001 if chosen is fast else 0.050)
    assert picked["i1"] < 0.1 * picked["i0"]


def test_a_shunned_instance_is_tried_again_as_its_estimate_decays() -> None:
    clock = ManualClock()
    balancer = Balancer(None, NEVER_EJECT, clock, random.Random(5))
    good, bad = inst(0), inst(1)
    for instance in (good, bad):
        balancer.pick([instance])
        balancer.started(instance.id)
    balancer.finished(good.id, True, 2, 0.002)
    balancer.finished(bad.id, True, 2, 1.0)
    assert balancer.cost(bad.id) > 100 * balancer.cost(good.id)
    clock.advance(100.0)
    balancer.started(good.id)
    balancer.finished(good.id, True, 2, 0.002)
    assert balancer.cost(bad.id) < balancer.cost(good.id) * 2


class Counted(Sequence[Instance]):
    """A candidate list that counts how often its items are read."""

    def __init__(self, items: list[Instance]) -> None:
        self._items = items
        self.reads = 0

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Instance: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Instance]: ...
    def __getitem__(self, index: int | slice) -> Instance | Sequence[Instance]:
        self.reads += 1
        return self._items[index]

    def __iter__(self) -> Iterator[Instance]:
        for item in self._items:
            self.reads += 1
            yield item


def test_a_pick_among_ten_thousand_reads_no_more_than_a_pick_among_ten() -> None:
    """The list is indexed once; after that a pick never walks it, whatever its size."""
    reads = {}
    for size in (10, 10_000):
        clock = ManualClock()
        balancer = Balancer("a", clock=clock, rng=random.Random(1))
        candidates = Counted([inst(n, "abc"[n % 3]) for n in range(size)])
        tried: list[str] = []
        for call in range(2000):
            chosen = balancer.pick(candidates, tried[-1:], ())
            assert chosen is not None
            balancer.started(chosen.id)
            balancer.finished(chosen.id, call % 7 != 0, size, 0.002)
            tried = [chosen.id]
            clock.advance(0.01)
        reads[size] = candidates.reads - size
    assert reads[10_000] <= reads[10] + 10


def test_one_client_uses_a_bounded_window_that_rotates() -> None:
    clock = ManualClock()
    balancer = Balancer("a", clock=clock, rng=random.Random(2))
    group = [inst(n) for n in range(10_000)]
    used = set()
    for _ in range(1000):
        chosen = balancer.pick(group)
        assert chosen is not None
        used.add(chosen.id)
    assert len(used) <= WINDOW
    clock.advance(5.0)
    later = {balancer.pick(group).id for _ in range(1000)}  # type: ignore[union-attr]
    assert later - used, "the window moved on"
    assert len(later | used) <= WINDOW + 5


def test_clients_together_cover_the_group_evenly() -> None:
    group = [inst(n) for n in range(1000)]
    served: Counter[str] = Counter()
    for seed in range(300):
        balancer = Balancer("a", rng=random.Random(seed))
        for _ in range(40):
            chosen = balancer.pick(group)
            assert chosen is not None
            served[chosen.id] += 1
    # 12,000 calls over 1,000 instances: every instance some, none more than a few times its
    # share of 12.
    assert len(served) > 950
    assert max(served.values()) < 60


def test_the_window_widens_with_load_and_narrows_after() -> None:
    clock = ManualClock()
    balancer = Balancer("a", clock=clock, rng=random.Random(4))
    group = [inst(n) for n in range(1000)]
    for _ in range(400):
        chosen = balancer.pick(group)
        assert chosen is not None
        balancer.started(chosen.id)
    wide = len({balancer.pick(group).id for _ in range(3000)})  # type: ignore[union-attr]
    assert wide > 4 * WINDOW
    for instance in group:
        while balancer.outstanding(instance.id):
            balancer.finished(instance.id, True, 1000, 0.001)
    for _ in range(600):
        clock.advance(1.0)
        balancer.pick(group)
    narrow = {balancer.pick(group).id for _ in range(3000)}  # type: ignore[union-attr]
    assert len(narrow) <= WINDOW


def test_a_hung_local_zone_is_left_after_a_window_of_ejections() -> None:
    clock = ManualClock()
    balancer = Balancer("a", clock=clock, rng=random.Random(6))
    group = [inst(n, "abc"[n % 3]) for n in range(3000)]
    hung_hits = 0
    for _ in range(2000):
        chosen = balancer.pick(group)
        assert chosen is not None
        balancer.started(chosen.id)
        if chosen.zone == "a":
            hung_hits += 1
            clock.advance(0.001)
            balancer.finished(chosen.id, False, len(group), 1.0)
        else:
            balancer.finished(chosen.id, True, len(group), 0.002)
    # Five failures eject each instance of the window: about 5 x 12 calls, not 5 x 1,000.
    assert hung_hits <= 5 * WINDOW + 20


def test_a_new_instance_costs_what_a_typical_one_does_until_it_answers() -> None:
    clock = ManualClock()
    balancer = Balancer(None, NEVER_EJECT, clock, random.Random(7))
    old = [inst(n) for n in range(3)]
    for _ in range(100):
        chosen = balancer.pick(old)
        assert chosen is not None
        balancer.started(chosen.id)
        clock.advance(0.001)
        balancer.finished(chosen.id, True, 4, 0.010)
    newcomer = inst(3)
    group = [*old, newcomer]
    taken = 0
    # 20 calls in flight at once: a newcomer that looked free would take most of them.
    for _ in range(20):
        chosen = balancer.pick(group)
        assert chosen is not None
        balancer.started(chosen.id)
        taken += chosen is newcomer
    assert taken <= 8
