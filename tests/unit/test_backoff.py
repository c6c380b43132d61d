"""The local cloud's restart back-off: a crash after a good run is replaced at once; a crash
loop waits 0.5 s, doubling to 30 s; a minute up forgives."""

from __future__ import annotations

from herd._cloud.supervise.backoff import Backoff


def test_a_crash_after_a_good_run_is_replaced_at_once() -> None:
    backoff = Backoff()
    assert backoff.crashed(ran_s=3600.0) == 0.0
    assert not backoff.looping


def test_a_crash_loop_waits_half_a_second_doubling_to_30_s() -> None:
    backoff = Backoff()
    delays = [backoff.crashed(ran_s=0.1) for _ in range(10)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.looping
    # however long it loops: no overflow, the wait stays at the cap
    assert all(backoff.crashed(ran_s=0.1) == 30.0 for _ in range(2000))


def test_a_minute_up_forgives_the_loop() -> None:
    backoff = Backoff()
    for _ in range(5):
        backoff.crashed(ran_s=1.0)
    assert backoff.crashed(ran_s=59.0) == 8.0, "under a minute: still looping"
    assert backoff.crashed(ran_s=60.0) == 0.0
    assert not backoff.looping
    assert backoff.crashed(ran_s=1.0) == 0.5, "a new loop starts from the beginning"
