"""Retry budget: ratio of requests, reserve for quiet clients, expiry, and the long-run bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd._client.budget import BUCKETS, BudgetPolicy, BudgetSnapshot, RetryBudget
from herd._model.clock import ManualClock

NO_RESERVE = BudgetPolicy(ratio=0.2, window_s=10.0, min_retries_per_s=0.0)


def spend_all(budget: RetryBudget, limit: int = 100_000) -> int:
    spent = 0
    while spent < limit and budget.try_spend():
        spent += 1
    return spent


def test_defaults_are_finagles() -> None:
    assert BudgetPolicy() == BudgetPolicy(ratio=0.2, window_s=10.0, min_retries_per_s=10.0)


@pytest.mark.parametrize(
    "kwargs", [{"ratio": -0.1}, {"window_s": 0.0}, {"min_retries_per_s": -1.0}]
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BudgetPolicy(**kwargs)


def test_each_request_earns_ratio_tokens() -> None:
    budget = RetryBudget(NO_RESERVE, ManualClock())
    assert not budget.try_spend()
    for _ in range(4):
        budget.record_request()
    assert not budget.try_spend()  # 0.8 tokens
    budget.record_request()
    assert budget.try_spend()  # exactly 1.0: 5 * 0.2 must add up without float drift
    assert not budget.try_spend()
    for _ in range(100):
        budget.record_request()
    assert spend_all(budget) == 20


def test_deposits_expire_after_the_window() -> None:
    clock = ManualClock(start=1000.0)
    budget = RetryBudget(NO_RESERVE, clock)
    for _ in range(50):
        budget.record_request()
    clock.advance(NO_RESERVE.window_s - 0.01)
    assert budget.snapshot().balance == pytest.approx(10.0)
    clock.advance(0.01)
    assert budget.snapshot().balance == 0.0
    assert not budget.try_spend()


def test_reserve_allows_retries_without_traffic_and_refills() -> None:
    clock = ManualClock(start=1000.0)
    policy = BudgetPolicy(ratio=0.2, window_s=10.0, min_retries_per_s=2.0)
    budget = RetryBudget(policy, clock)
    assert spend_all(budget) == 20  # 2/s over a 10 s window
    clock.advance(1.0)
    assert not budget.try_spend()  # spent tokens are still in the window
    clock.advance(policy.window_s - 1.0)
    assert spend_all(budget) == 20


def test_steady_trickle_at_min_rate_is_always_allowed() -> None:
    # Times sit between bucket edges so float rounding cannot move a retry across one.
    clock = ManualClock(start=1000.05)
    budget = RetryBudget(BudgetPolicy(), clock)
    interval = 1.0 / BudgetPolicy().min_retries_per_s
    for _ in range(2000):
        assert budget.try_spend()
        clock.advance(interval)
    assert budget.snapshot().denied == 0


def test_trickle_above_min_rate_is_throttled() -> None:
    clock = ManualClock(start=1000.05)
    budget = RetryBudget(BudgetPolicy(), clock)
    allowed = 0
    for _ in range(2000):  # 20/s for 100 s, twice the reserve rate
        allowed += budget.try_spend()
        clock.advance(0.05)
    assert allowed <= 10 * 100 + 100
    assert allowed >= 10 * 100


def test_snapshot_counts() -> None:
    clock = ManualClock()
    budget = RetryBudget(BudgetPolicy(ratio=0.5, window_s=10.0, min_retries_per_s=0.0), clock)
    for _ in range(4):
        budget.record_request()
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    assert budget.snapshot() == BudgetSnapshot(requests=4, retries=2, denied=1, balance=0.0)
    budget.record_request()
    assert budget.snapshot().balance == pytest.approx(0.5)


def test_long_idle_clears_the_window() -> None:
    clock = ManualClock()
    budget = RetryBudget(NO_RESERVE, clock)
    for _ in range(10):
        budget.record_request()
    assert budget.try_spend()
    clock.advance(1e6)
    assert budget.snapshot().balance == 0.0
    budget.record_request()
    assert budget.snapshot().balance == pytest.approx(0.2)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=15.0)),
        st.tuples(st.just("request"), st.integers(min_value=1, max_value=30)),
        st.tuples(st.just("retry"), st.integers(min_value=1, max_value=30)),
    ),
    max_size=150,
)


@settings(max_examples=400)
@given(
    ops=_ops,
    ratio_pct=st.integers(min_value=0, max_value=100),
    min_per_s=st.integers(min_value=0, max_value=5),
    window_s=st.sampled_from([1.0, 2.5, 10.0]),
    start=st.floats(min_value=0.0, max_value=1e5),
)
def test_retries_never_exceed_the_bound(
    ops: list[tuple[str, float]], ratio_pct: int, min_per_s: int, window_s: float, start: float
) -> None:
    """retries <= ratio * requests + min/s * (elapsed + window * (1 + 2 / BUCKETS)), always."""
    policy = BudgetPolicy(ratio=ratio_pct / 100, window_s=window_s, min_retries_per_s=min_per_s)
    clock = ManualClock(start=start)
    budget = RetryBudget(policy, clock)
    requests = retries = 0
    for op, amount in ops:
        if op == "advance":
            clock.advance(amount)
            continue
        for _ in range(int(amount)):
            if op == "request":
                budget.record_request()
                requests += 1
            else:
                retries += budget.try_spend()
        elapsed = clock.now() - start
        bound = policy.ratio * requests + policy.min_retries_per_s * (
            elapsed + window_s * (1 + 2 / BUCKETS)
        )
        assert retries <= bound + 1e-6
        snapshot = budget.snapshot()
        assert (snapshot.requests, snapshot.retries) == (requests, retries)


@settings(max_examples=200)
@given(
    requests=st.integers(min_value=0, max_value=200),
    ratio_pct=st.integers(min_value=0, max_value=100),
)
def test_a_burst_gets_exactly_its_share(requests: int, ratio_pct: int) -> None:
    policy = BudgetPolicy(ratio=ratio_pct / 100, window_s=10.0, min_retries_per_s=0.0)
    budget = RetryBudget(policy, ManualClock())
    for _ in range(requests):
        budget.record_request()
    assert spend_all(budget) == requests * ratio_pct // 100
