"""Circuit breaker and bulkhead: rolling window, state machine, single half-open trial."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd._client.breaker import (
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    Bulkhead,
    CircuitBreaker,
)
from herd._model.clock import ManualClock

SMALL = BreakerPolicy(
    window_s=10.0, buckets=10, volume_threshold=4, error_threshold_pct=50.0, sleep_window_s=5.0
)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A call, not `breaker.state`: mypy would keep the property narrowed across state changes.
    return breaker.state


def record(breaker: CircuitBreaker, successes: int, failures: int) -> None:
    for _ in range(successes):
        breaker.record_success()
    for _ in range(failures):
        breaker.record_failure()


def open_breaker(clock: ManualClock) -> CircuitBreaker:
    breaker = CircuitBreaker(SMALL, clock)
    record(breaker, 0, SMALL.volume_threshold)
    assert state_of(breaker) is BreakerState.OPEN
    return breaker


def test_defaults_are_hystrix() -> None:
    assert BreakerPolicy() == BreakerPolicy(
        window_s=10.0, buckets=10, volume_threshold=20, error_threshold_pct=50.0, sleep_window_s=5.0
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_s": 0.0},
        {"buckets": 0},
        {"volume_threshold": 0},
        {"error_threshold_pct": 101.0},
        {"error_threshold_pct": -1.0},
        {"sleep_window_s": 0.0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]


def test_state_values_are_lowercase() -> None:
    assert [s.value for s in BreakerState] == ["closed", "open", "half_open"]


def test_closed_allows_and_stays_closed_below_volume() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(SMALL, clock)
    record(breaker, 0, SMALL.volume_threshold - 1)
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()


def test_opens_at_volume_and_error_threshold() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(SMALL, clock)
    record(breaker, 2, 1)
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure()  # 4 requests, 50 % failed: exactly at both thresholds
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()


def test_success_reaching_volume_can_trip() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(SMALL, clock)
    record(breaker, 1, 2)
    breaker.record_success()  # 4 requests, 2 failures
    assert state_of(breaker) is BreakerState.OPEN


def test_low_error_rate_does_not_trip() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(SMALL, clock)
    record(breaker, 100, 99)
    assert state_of(breaker) is BreakerState.CLOSED
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.requests, snapshot.failures) == (BreakerState.CLOSED, 199, 99)
    assert snapshot.error_pct == pytest.approx(100 * 99 / 199)


def test_old_failures_leave_the_window() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(SMALL, clock)
    record(breaker, 0, 3)
    clock.advance(SMALL.window_s)  # those three failures are now out of the window
    assert breaker.snapshot().requests == 0
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.snapshot() == BreakerSnapshot(BreakerState.CLOSED, 1, 1, 100.0)


def test_window_expires_one_bucket_at_a_time() -> None:
    clock = ManualClock(start=1000.0)
    breaker = CircuitBreaker(SMALL, clock)
    breaker.record_failure()  # bucket 1000
    clock.advance(5.0)
    breaker.record_failure()  # bucket 1005
    clock.advance(4.5)  # t=1009.5: both in the window
    assert breaker.snapshot().failures == 2
    clock.advance(0.5)  # t=1010: bucket 1000 expired
    assert breaker.snapshot().failures == 1
    clock.advance(4.9)  # t=1014.9: bucket 1005 still in
    assert breaker.snapshot().failures == 1
    clock.advance(0.1)
    assert breaker.snapshot().failures == 0


def test_failures_spread_over_the_window_trip() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(SMALL, clock)
    for _ in range(SMALL.volume_threshold):
        breaker.record_failure()
        clock.advance(2.0)
    assert state_of(breaker) is BreakerState.OPEN


def test_open_rejects_until_sleep_window_then_one_trial() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(SMALL.sleep_window_s - 0.01)
    assert not breaker.allow()
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(0.01)
    assert breaker.allow()
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert not breaker.allow()
    clock.advance(1.0)
    assert not breaker.allow()


def test_half_open_success_closes_with_a_clean_window() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(SMALL.sleep_window_s)
    assert breaker.allow()
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.snapshot() == BreakerSnapshot(BreakerState.CLOSED, 0, 0, 0.0)
    breaker.record_failure()  # the failures that opened it are forgotten
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()


def test_half_open_failure_reopens_for_a_new_sleep_window() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(SMALL.sleep_window_s)
    assert breaker.allow()
    clock.advance(1.0)
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    clock.advance(SMALL.sleep_window_s - 0.01)
    assert not breaker.allow()
    clock.advance(0.01)
    assert breaker.allow()
    assert state_of(breaker) is BreakerState.HALF_OPEN


def test_outcomes_while_open_are_ignored() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    breaker.record_success()
    breaker.record_success()
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.snapshot().requests == SMALL.volume_threshold


def test_lost_trial_is_replaced_after_a_sleep_window() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(SMALL.sleep_window_s)
    assert breaker.allow()
    clock.advance(SMALL.sleep_window_s - 0.01)
    assert not breaker.allow()
    clock.advance(0.01)
    assert breaker.allow()
    assert not breaker.allow()


def test_snapshot_reports_open_state_and_window() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(SMALL, clock)
    record(breaker, 1, 3)
    assert breaker.snapshot() == BreakerSnapshot(BreakerState.OPEN, 4, 3, 75.0)


class _Model:
    """A naive reference breaker: keeps every outcome and recounts the window each time."""

    def __init__(self, policy: BreakerPolicy, clock: ManualClock) -> None:
        self.policy = policy
        self.clock = clock
        self.width = policy.window_s / policy.buckets
        self.events: list[tuple[int, bool]] = []
        self.state = BreakerState.CLOSED
        self.opened_at = 0.0
        self.trial_at: float | None = None

    def window(self) -> tuple[int, int]:
        newest = max([int(self.clock.now() / self.width)] + [b for b, _ in self.events])
        inside = [ok for b, ok in self.events if b > newest - self.policy.buckets]
        return len(inside), inside.count(False)

    def allow(self) -> bool:
        now = self.clock.now()
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now - self.opened_at < self.policy.sleep_window_s:
                return False
            self.state = BreakerState.HALF_OPEN
        elif self.trial_at is not None and now - self.trial_at < self.policy.sleep_window_s:
            return False
        self.trial_at = now
        return True

    def record(self, ok: bool) -> None:
        now = self.clock.now()
        if self.state is BreakerState.CLOSED:
            self.events.append((int(now / self.width), ok))
            requests, failures = self.window()
            if (
                requests >= self.policy.volume_threshold
                and 100 * failures >= self.policy.error_threshold_pct * requests
            ):
                self.state, self.opened_at, self.trial_at = BreakerState.OPEN, now, None
        elif self.state is BreakerState.HALF_OPEN:
            if ok:
                self.state, self.trial_at, self.events = BreakerState.CLOSED, None, []
            else:
                self.state, self.opened_at, self.trial_at = BreakerState.OPEN, now, None


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=7.0)),
        st.tuples(st.just("allow"), st.just(0.0)),
        st.tuples(st.just("success"), st.just(0.0)),
        st.tuples(st.just("failure"), st.just(0.0)),
    ),
    max_size=200,
)


@settings(max_examples=300)
@given(
    steps=_steps,
    volume=st.integers(min_value=1, max_value=6),
    threshold=st.sampled_from([0.0, 25.0, 50.0, 100.0]),
    buckets=st.integers(min_value=1, max_value=10),
)
def test_matches_naive_model(
    steps: list[tuple[str, float]], volume: int, threshold: float, buckets: int
) -> None:
    policy = BreakerPolicy(
        window_s=10.0,
        buckets=buckets,
        volume_threshold=volume,
        error_threshold_pct=threshold,
        sleep_window_s=5.0,
    )
    clock = ManualClock()
    breaker, model = CircuitBreaker(policy, clock), _Model(policy, clock)
    for op, dt in steps:
        if op == "advance":
            clock.advance(dt)
        elif op == "allow":
            assert breaker.allow() == model.allow()
        else:
            getattr(breaker, f"record_{op}")()
            model.record(op == "success")
        assert state_of(breaker) is model.state
        if breaker.state is BreakerState.CLOSED:
            requests, failures = model.window()
            snapshot = breaker.snapshot()
            assert (snapshot.requests, snapshot.failures) == (requests, failures)


@settings(max_examples=300)
@given(steps=_steps)
def test_never_more_than_one_half_open_trial(steps: list[tuple[str, float]]) -> None:
    """While not closed, a second trial is granted only once the first is resolved or lost."""
    clock = ManualClock()
    policy = BreakerPolicy(volume_threshold=3, sleep_window_s=5.0)
    breaker = CircuitBreaker(policy, clock)
    trial_out_since: float | None = None
    for op, dt in steps:
        if op == "advance":
            clock.advance(dt)
        elif op == "allow":
            was_closed = breaker.state is BreakerState.CLOSED
            allowed = breaker.allow()
            if allowed and not was_closed:
                if trial_out_since is not None:
                    assert clock.now() - trial_out_since >= policy.sleep_window_s
                trial_out_since = clock.now()
            if breaker.state is BreakerState.OPEN:
                assert not allowed
        else:
            getattr(breaker, f"record_{op}")()
            trial_out_since = None


def test_bulkhead_limits_concurrency() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.max_concurrent == 2
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    assert bulkhead.in_use == 2
    bulkhead.release()
    assert bulkhead.in_use == 1
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()


def test_bulkhead_validates() -> None:
    with pytest.raises(ValueError):
        Bulkhead(0)
    with pytest.raises(RuntimeError):
        Bulkhead(1).release()
