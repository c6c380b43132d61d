"""The open-model schedule: fixed intended times, and no shift when the caller falls behind."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import Any

import pytest

from herd._model.clock import MONOTONIC, ManualClock
from herd_tools.schedule import Schedule, drive, open_model


@pytest.mark.parametrize(
    ("rate", "duration", "count"),
    [(50, 20, 1000), (0.1, 30, 3), (3, 1, 3), (7, 0.5, 4), (1000, 0.001, 1), (0.5, 1, 1)],
)
def test_schedule_holds_rate_times_duration(rate: float, duration: float, count: int) -> None:
    schedule = Schedule(rate, duration)
    assert schedule.count == count
    assert schedule.offset(count - 1) < duration


def test_offsets_are_computed_not_summed() -> None:
    schedule = Schedule(rate=3, duration=1000)
    assert schedule.offset(2999) == pytest.approx(2999 / 3, abs=1e-12)


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (-5, 1), (1, 0), (1, -1), (math.nan, 1)])
def test_schedule_rejects_nonsense(rate: float, duration: float) -> None:
    with pytest.raises(ValueError):
        Schedule(rate, duration)


async def fire_times(
    schedule: Schedule, start: float, overshoot: dict[int, float] | None = None
) -> list[tuple[float, float]]:
    """Drive `schedule` on a manual clock from `start`; each request's intended and actual
    firing time. `overshoot[n]` makes the n-th sleep return that many seconds late."""
    clock = ManualClock(start=start)
    sleeps = 0

    async def sleep(seconds: float) -> None:
        nonlocal sleeps
        clock.advance(seconds + (overshoot or {}).get(sleeps, 0.0))
        sleeps += 1

    fired: list[tuple[float, float]] = []
    await drive(
        schedule,
        start,
        lambda intended: fired.append((intended, clock.now())),
        clock=clock,
        sleep=sleep,
    )
    return fired


async def test_drive_fires_each_request_at_its_intended_time() -> None:
    fired = await fire_times(Schedule(rate=10, duration=1), start=100.0)
    assert [intended for intended, _ in fired] == pytest.approx([100 + i / 10 for i in range(10)])
    assert all(at == pytest.approx(intended) for intended, at in fired)


async def test_a_stall_neither_shifts_nor_thins_the_schedule() -> None:
    """The generator stalls for 1 s: the overdue requests go out at once, keeping their
    intended times, so the stall shows as latency instead of disappearing (no coordinated
    omission), and the run still sends rate x duration requests."""
    # The sleep before request 5 returns 1 s late.
    fired = await fire_times(Schedule(rate=10, duration=3), start=0.0, overshoot={4: 1.0})
    assert len(fired) == 30
    assert [intended for intended, _ in fired] == pytest.approx([i / 10 for i in range(30)])
    lateness = [at - intended for intended, at in fired]
    assert lateness[5] == pytest.approx(1.0)  # the one stuck behind the stall waited the full 1 s
    assert lateness[6:15] == pytest.approx([0.9 - 0.1 * k for k in range(9)])  # caught up at once
    assert lateness[15:] == pytest.approx([0.0] * 15)  # and back on schedule


async def test_cancelling_the_drive_stops_the_schedule_where_it_is() -> None:
    fired: list[float] = []
    schedule = Schedule(rate=100, duration=10)
    driving = asyncio.create_task(drive(schedule, MONOTONIC.now(), fired.append))
    await asyncio.sleep(0.1)
    driving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driving
    count = len(fired)
    assert 0 < count < schedule.count
    await asyncio.sleep(0.05)
    assert len(fired) == count


async def test_the_open_model_starts_each_request_without_waiting_for_earlier_ones() -> None:
    # No request answers before the last one has started: a loop that waited for answers
    # (a closed model) would never start the last, and never return.
    answer = asyncio.Event()
    started: list[int] = []
    finished: list[int] = []
    schedule = Schedule(rate=1000, duration=0.005)

    async def request(index: int) -> None:
        started.append(index)
        await answer.wait()
        finished.append(index)

    def send(intended: float) -> Coroutine[Any, Any, None] | None:
        index = round((intended - start) * 1000)
        if index == schedule.count - 1:
            answer.set()
        # Request 2 is counted by the caller itself (a client-side refusal): nothing to run.
        return None if index == 2 else request(index)

    start = MONOTONIC.now()
    async with asyncio.timeout(5):
        await open_model(schedule, start, send)
    assert sorted(started) == sorted(finished) == [0, 1, 3, 4]
