"""Balancer: zone affinity, retry placement, power of two choices, outlier ejection, panic mode."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd._client.balance import Balancer, EjectionPolicy
from herd._model.clock import ManualClock
from herd._model.instance import Instance, Status

POLICY = EjectionPolicy()


def inst(id: str, zone: str = "a", group: str = "svc-v001") -> Instance:
    return Instance(
        id=id,
        service="svc",
        group=group,
        version="v001",
        zone=zone,
        host="127.0.0.1",
        port=8000,
        status=Status.UP,
    )


def make(zone: str | None = "a", seed: int = 0) -> tuple[Balancer, ManualClock]:
    clock = ManualClock()
    return Balancer(zone, POLICY, clock, random.Random(seed)), clock


def fail(balancer: Balancer, instance: Instance, times: int, group_size: int) -> None:
    for _ in range(times):
        balancer.started(instance.id)
        balancer.finished(instance.id, False, group_size)


def eject(balancer: Balancer, instance: Instance, group_size: int) -> None:
    assert balancer.pick([instance]) is instance  # teaches the balancer the instance's group
    fail(balancer, instance, POLICY.consecutive_failures, group_size)
    assert balancer.is_ejected(instance.id)


def test_defaults() -> None:
    assert EjectionPolicy() == EjectionPolicy(
        consecutive_failures=5, base_ejection_s=5.0, max_ejection_s=60.0, max_ejected_pct=50.0
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"consecutive_failures": 0},
        {"base_ejection_s": 0.0},
        {"base_ejection_s": 10.0, "max_ejection_s": 5.0},
        {"max_ejected_pct": 120.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EjectionPolicy(**kwargs)  # type: ignore[arg-type]


def test_no_candidates() -> None:
    balancer, _ = make()
    assert balancer.pick([]) is None
    one = inst("i1")
    assert balancer.pick([one], tried={"i1"}) is None


def test_prefers_local_zone() -> None:
    balancer, _ = make("b")
    candidates = [inst("a1", "a"), inst("b1", "b"), inst("c1", "c"), inst("b2", "b")]
    picks = {balancer.pick(candidates).id for _ in range(200)}  # type: ignore[union-attr]
    assert picks == {"b1", "b2"}


def test_without_local_zone_uses_everyone() -> None:
    balancer, _ = make(None)
    candidates = [inst("a1", "a"), inst("b1", "b"), inst("c1", "c")]
    picks = {balancer.pick(candidates).id for _ in range(200)}  # type: ignore[union-attr]
    assert picks == {"a1", "b1", "c1"}


def test_local_zone_absent_falls_back_to_others() -> None:
    balancer, _ = make("z")
    candidates = [inst("a1", "a"), inst("b1", "b")]
    picks = {balancer.pick(candidates).id for _ in range(200)}  # type: ignore[union-attr]
    assert picks == {"a1", "b1"}


def test_retry_goes_to_another_zone() -> None:
    balancer, _ = make("a")
    candidates = [inst("a1", "a"), inst("a2", "a"), inst("b1", "b"), inst("c1", "c")]
    for _ in range(200):
        chosen = balancer.pick(candidates, tried={"a1"}, avoid_zones={"a"})
        assert chosen is not None and chosen.zone in {"b", "c"}


def test_retry_prefers_local_among_allowed_zones() -> None:
    balancer, _ = make("a")
    candidates = [inst("a1", "a"), inst("b1", "b"), inst("c1", "c")]
    for _ in range(50):
        chosen = balancer.pick(candidates, tried={"b1"}, avoid_zones={"b"})
        assert chosen is not None and chosen.id == "a1"


def test_retry_stays_in_avoided_zone_when_nothing_else() -> None:
    balancer, _ = make("a")
    candidates = [inst("a1", "a"), inst("a2", "a")]
    for _ in range(50):
        chosen = balancer.pick(candidates, tried={"a1"}, avoid_zones={"a"})
        assert chosen is not None and chosen.id == "a2"


def test_power_of_two_never_picks_the_strictly_busiest() -> None:
    balancer, _ = make("a")
    candidates = [inst("i1"), inst("i2"), inst("i3")]
    for _ in range(3):
        balancer.started("i2")
    balancer.started("i3")
    picks = Counter(balancer.pick(candidates).id for _ in range(3000))  # type: ignore[union-attr]
    assert "i2" not in picks
    # i1 wins both pairs it is in (2 of 3), i3 only the pair with i2 (1 of 3).
    assert picks["i1"] == pytest.approx(2000, rel=0.1)
    assert picks["i3"] == pytest.approx(1000, rel=0.15)


def test_ties_are_broken_at_random() -> None:
    balancer, _ = make("a")
    candidates = [inst("i1"), inst("i2")]
    picks = Counter(balancer.pick(candidates).id for _ in range(2000))  # type: ignore[union-attr]
    assert picks["i1"] == pytest.approx(1000, rel=0.15)


def test_outstanding_counts() -> None:
    balancer, _ = make()
    balancer.started("i1")
    balancer.started("i1")
    assert balancer.outstanding("i1") == 2
    balancer.finished("i1", True, 3)
    assert balancer.outstanding("i1") == 1
    assert balancer.outstanding("unknown") == 0


def test_ejected_after_consecutive_failures_only() -> None:
    balancer, _ = make()
    one, other = inst("i1"), inst("i2")
    balancer.pick([one])
    fail(balancer, one, POLICY.consecutive_failures - 1, group_size=2)
    balancer.started(one.id)
    balancer.finished(one.id, True, 2)  # a success resets the run
    fail(balancer, one, POLICY.consecutive_failures - 1, group_size=2)
    assert not balancer.is_ejected(one.id)
    fail(balancer, one, 1, group_size=2)
    assert balancer.is_ejected(one.id)
    for _ in range(100):
        assert balancer.pick([one, other]) is other


def test_ejection_grows_and_is_capped() -> None:
    balancer, clock = make()
    one = inst("i1")
    expected = [5.0, 10.0, 15.0] + [20.0 + 5.0 * k for k in range(8)] + [60.0, 60.0]
    for duration in expected:
        eject(balancer, one, group_size=2)
        clock.advance(duration - 0.01)
        assert balancer.is_ejected(one.id)
        clock.advance(0.01)
        assert not balancer.is_ejected(one.id)


def test_never_more_than_half_of_a_group_ejected() -> None:
    balancer, _ = make()
    group = [inst(f"i{n}") for n in range(4)]
    for instance in group:
        balancer.pick([instance])
        fail(balancer, instance, POLICY.consecutive_failures, group_size=4)
    assert sum(balancer.is_ejected(i.id) for i in group) == 2


def test_ejection_cap_is_per_group() -> None:
    balancer, _ = make()
    old = [inst("o1", group="svc-v001"), inst("o2", group="svc-v001")]
    new = [inst("n1", group="svc-v002"), inst("n2", group="svc-v002")]
    eject(balancer, old[0], group_size=2)
    eject(balancer, new[0], group_size=2)
    balancer.pick([old[1]])
    fail(balancer, old[1], POLICY.consecutive_failures, group_size=2)
    assert not balancer.is_ejected(old[1].id)


def test_blocked_ejection_happens_on_next_failure_once_room() -> None:
    balancer, clock = make()
    first, second = inst("i1"), inst("i2")
    eject(balancer, first, group_size=2)
    balancer.pick([second])
    fail(balancer, second, POLICY.consecutive_failures, group_size=2)
    assert not balancer.is_ejected(second.id)
    clock.advance(POLICY.base_ejection_s)
    assert not balancer.is_ejected(first.id)
    fail(balancer, second, 1, group_size=2)
    assert balancer.is_ejected(second.id)


def test_single_instance_group_is_never_ejected() -> None:
    balancer, _ = make()
    one = inst("i1")
    balancer.pick([one])
    fail(balancer, one, 50, group_size=1)
    assert not balancer.is_ejected(one.id)


def test_panic_mode_uses_ejected_when_nothing_else() -> None:
    balancer, _ = make("a")
    ejected, healthy = inst("i1", "a"), inst("i2", "b")
    eject(balancer, ejected, group_size=2)
    assert balancer.pick([ejected, healthy]) is healthy
    assert balancer.pick([ejected, healthy], tried={"i2"}) is ejected


def test_healthy_in_avoided_zone_beats_ejected_elsewhere() -> None:
    balancer, _ = make("a")
    ejected, healthy = inst("b1", "b"), inst("a2", "a")
    eject(balancer, ejected, group_size=2)
    chosen = balancer.pick([inst("a1", "a"), ejected, healthy], tried={"a1"}, avoid_zones={"a"})
    assert chosen is healthy


def test_forget_drops_state_and_ignores_late_answers() -> None:
    balancer, _ = make()
    one = inst("i1")
    eject(balancer, one, group_size=2)
    balancer.started(one.id)
    balancer.forget(one.id)
    assert not balancer.is_ejected(one.id)
    assert balancer.outstanding(one.id) == 0
    balancer.finished(one.id, False, 2)
    assert balancer.outstanding(one.id) == 0


_instances = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from(["g1", "g2"])), min_size=1, max_size=10
).map(lambda specs: [inst(f"i{n}", zone, group) for n, (zone, group) in enumerate(specs)])


@settings(max_examples=300)
@given(
    instances=_instances,
    data=st.data(),
    local=st.one_of(st.none(), st.sampled_from("abc")),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_pick_invariants(
    instances: list[Instance], data: st.DataObject, local: str | None, seed: int
) -> None:
    """Never a tried instance; never an ejected one while a healthy untried one exists."""
    clock = ManualClock()
    balancer = Balancer(local, POLICY, clock, random.Random(seed))
    ids = [i.id for i in instances]
    for _ in range(data.draw(st.integers(min_value=0, max_value=60))):
        victim = data.draw(st.sampled_from(instances))
        balancer.pick([victim])
        size = sum(i.group == victim.group for i in instances)
        balancer.started(victim.id)
        # Mostly failures, so that some instances get ejected.
        ok = data.draw(st.integers(min_value=0, max_value=4)) == 0
        balancer.finished(victim.id, ok, size)
        clock.advance(data.draw(st.floats(min_value=0.0, max_value=1.0)))
    tried = data.draw(st.sets(st.sampled_from(ids)))
    avoid = data.draw(st.sets(st.sampled_from("abc")))
    chosen = balancer.pick(instances, tried, avoid)
    untried = [i for i in instances if i.id not in tried]
    if not untried:
        assert chosen is None
        return
    assert chosen is not None and chosen.id not in tried
    healthy = [i for i in untried if not balancer.is_ejected(i.id)]
    if healthy:
        assert not balancer.is_ejected(chosen.id)
        preferred = [i for i in healthy if i.zone not in avoid]
        if preferred:
            assert chosen.zone not in avoid
            if local is not None and any(i.zone == local for i in preferred):
                assert chosen.zone == local


@settings(max_examples=300)
@given(
    instances=_instances,
    events=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=9),
            # Mostly failures, and little time between them, so ejections pile up.
            st.integers(min_value=0, max_value=9).map(lambda n: n == 0),
            st.floats(min_value=0.0, max_value=2.0),
        ),
        max_size=300,
    ),
)
def test_never_more_than_half_of_any_group_ejected(
    instances: list[Instance], events: list[tuple[int, bool, float]]
) -> None:
    clock = ManualClock()
    balancer = Balancer("a", POLICY, clock, random.Random(0))
    sizes = Counter(i.group for i in instances)
    for index, ok, dt in events:
        instance = instances[index % len(instances)]
        balancer.pick([instance])
        balancer.started(instance.id)
        balancer.finished(instance.id, ok, sizes[instance.group])
        for group, size in sizes.items():
            ejected = sum(balancer.is_ejected(i.id) for i in instances if i.group == group)
            assert ejected * 100 <= POLICY.max_ejected_pct * size
        clock.advance(dt)


def test_zone_affinity_yields_to_a_local_instance_piling_up_requests() -> None:
    from herd._client.balance import ZONE_SPILL

    local = inst("local", "a")
    remote = inst("remote", "b")
    balancer = Balancer("a", rng=random.Random(1))
    for _ in range(ZONE_SPILL):
        balancer.started("local")
    assert balancer.pick([local, remote]) is local
    balancer.started("local")
    assert balancer.pick([local, remote]) is remote
    balancer.finished("local", True, 1)
    assert balancer.pick([local, remote]) is local


def test_a_forgotten_ejected_instance_frees_its_groups_room() -> None:
    balancer, _ = make()
    gone, other = inst("i1"), inst("i2")
    eject(balancer, gone, group_size=2)
    balancer.forget(gone.id)
    eject(balancer, other, group_size=2)


def test_an_instance_shedding_load_is_never_ejected_but_costs_like_a_slow_one() -> None:
    balancer, _ = make()
    busy, calm = inst("busy"), inst("calm")
    for instance in (busy, calm):
        balancer.pick([busy, calm])
        balancer.started(instance.id)
        balancer.finished(instance.id, True, 0, 0.002)
    for _ in range(POLICY.consecutive_failures * 3):
        balancer.started(busy.id)
        balancer.finished(busy.id, True, 0, 0.0001, shed=True)
    assert not balancer.is_ejected(busy.id)
    assert balancer.cost(busy.id) > 5 * balancer.cost(calm.id)
