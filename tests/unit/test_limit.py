"""The adaptive limit (Gradient2) on manual time: it grows while latency holds, shrinks when
requests queue, stays put when the service is idle, and updates once per window."""

from __future__ import annotations

import pytest

import herd
from herd._client.breaker import Bulkhead
from herd._model.clock import ManualClock
from herd._model.limit import Gradient2, LimitPolicy, Windowed

POLICY = LimitPolicy(initial=20, min_limit=4, max_limit=100, min_samples=5, min_window_s=0.1)


def test_the_limit_grows_while_latency_holds_up_to_its_ceiling() -> None:
    gradient = Gradient2(POLICY)
    limits = [gradient.update(0.010, inflight=int(gradient.limit)) for _ in range(400)]
    assert limits[0] == pytest.approx(20 + 4 * 0.2)
    assert limits == sorted(limits)
    assert limits[-1] == 100


def test_the_limit_shrinks_when_requests_queue_and_not_below_its_floor() -> None:
    gradient = Gradient2(POLICY)
    for _ in range(20):
        gradient.update(0.010, inflight=20)
    before = gradient.limit
    # Five times the no-load latency: the gradient is at its floor of 0.5.
    after = gradient.update(0.050, inflight=int(before))
    assert after == pytest.approx(before * 0.8 + (before * 0.5 + 4) * 0.2)
    for _ in range(200):
        gradient.update(5 * gradient.long_rtt, inflight=100)
    # Where halving and the queue allowance balance: 2 x queue_size, above this floor of 4.
    assert gradient.limit == pytest.approx(2 * POLICY.queue_size)
    floored = Gradient2(LimitPolicy(initial=20, min_limit=12))
    for _ in range(200):
        floored.update(0.010 if floored.long_rtt == 0 else 5 * floored.long_rtt, inflight=100)
    assert floored.limit == 12


def test_an_idle_service_says_nothing_about_its_capacity() -> None:
    gradient = Gradient2(POLICY)
    for _ in range(50):
        assert gradient.update(0.500, inflight=9) == 20


def test_a_baseline_inflated_by_a_long_overload_is_forgotten_sooner() -> None:
    gradient = Gradient2(POLICY)
    for _ in range(50):
        gradient.update(0.100, inflight=1)
    gradient.update(0.010, inflight=1)
    # The long average alone would move it by 2 / 601 of the gap; the decay takes 10 % more.
    assert gradient.long_rtt < 0.100 * 0.91


def test_samples_update_the_limit_once_per_window() -> None:
    clock = ManualClock()
    windowed = Windowed(POLICY, clock)
    for _ in range(10):
        windowed.sample(0.010, 20)
    assert windowed.gradient.short_rtt == 0  # the window is not over yet
    clock.advance(0.1)
    windowed.sample(0.020, 20)
    assert windowed.gradient.short_rtt == pytest.approx((10 * 0.010 + 0.020) / 11)
    assert windowed.limit == 20
    windowed.sample(0.010, 20)  # a new window: too few samples and too short
    assert windowed.gradient.short_rtt == pytest.approx((10 * 0.010 + 0.020) / 11)


def test_settings_that_cannot_work_are_refused() -> None:
    for bad in ({"min_limit": 30}, {"smoothing": 0.0}, {"tolerance": 0.5}, {"min_samples": 0}):
        with pytest.raises(herd.ConfigurationError):
            LimitPolicy(**bad)  # type: ignore[arg-type]


def test_a_clients_adaptive_bulkhead_sends_less_to_a_dependency_that_slows() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead(16, POLICY, clock)
    assert bulkhead.limit == 16  # the fixed cap stays the ceiling of the initial 20
    for latency in [0.010] * 30 + [0.100] * 60:
        assert bulkhead.try_acquire()
        for _ in range(bulkhead.limit - 1):  # keep the limit in use, or it would not move
            bulkhead.try_acquire()
        clock.advance(0.1)
        for _ in range(bulkhead.in_use):
            bulkhead.release(latency)
    assert bulkhead.limit < 10
    for _ in range(bulkhead.limit):
        assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    unlimited = Bulkhead(16)
    unlimited.try_acquire()
    unlimited.release(10.0)
    assert unlimited.limit == 16
