"""Admission: the fixed cap, the adaptive limit's queue (most critical first, newest first within
a level), the cubic curve that keeps critical work to the end, and deadline-aware dropping."""

from __future__ import annotations

import asyncio

import pytest

from herd._model import clock as _clock
from herd._model.clock import ManualClock
from herd._model.limit import LimitPolicy
from herd._server.admission import Admission, Mode, Shed, shed_below

FAR = 1e12
CRITICAL, DEGRADED, BEST_EFFORT = 90, 50, 10


async def _queue(admission: Admission, levels: list[int]) -> list[asyncio.Task[None]]:
    tasks = []
    for level in levels:
        tasks.append(asyncio.create_task(admission.enter(level, FAR), name=str(level)))
        await asyncio.sleep(0)  # let it take its place in the queue, in this order
    return tasks


def test_the_fixed_cap_refuses_at_once_and_none_never() -> None:
    fixed = Admission(Mode.FIXED, ceiling=2)
    assert [fixed.try_enter() for _ in range(3)] == [True, True, False]
    with pytest.raises(Shed, match="2 requests in flight"):
        asyncio.run(fixed.enter(CRITICAL, FAR))
    unlimited = Admission(Mode.NONE, ceiling=2)
    assert all(unlimited.try_enter() for _ in range(10_000))


async def test_the_most_critical_go_first_and_the_newest_first_within_a_level() -> None:
    admission = Admission(Mode.ADAPTIVE_PRIORITY, ceiling=1, max_queued=8)
    assert admission.try_enter()
    tasks = await _queue(admission, [BEST_EFFORT, CRITICAL, BEST_EFFORT + 1, DEGRADED])
    assert admission.queued == 4
    started = []
    for _ in range(4):
        admission.leave(None, 1)
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            started.append(int(task.get_name()))
            tasks.remove(task)
    assert started == [CRITICAL, DEGRADED, BEST_EFFORT + 1, BEST_EFFORT]


async def test_without_priorities_the_queue_is_lifo() -> None:
    admission = Admission(Mode.ADAPTIVE, ceiling=1, max_queued=8)
    assert admission.try_enter()
    first, second = await _queue(admission, [CRITICAL, BEST_EFFORT])
    admission.leave(None, 1)
    await second
    assert not first.done()
    first.cancel()


async def test_a_full_queue_sheds_its_least_critical_oldest_entry_for_a_more_critical_one() -> None:
    admission = Admission(Mode.ADAPTIVE_PRIORITY, ceiling=1, max_queued=2)
    assert admission.try_enter()
    oldest, newer = await _queue(admission, [DEGRADED, CRITICAL])
    (critical,) = await _queue(admission, [CRITICAL])
    with pytest.raises(Shed, match="more critical"):
        await oldest
    assert admission.queued == 2
    # Nothing less critical left to shed: an equal one is refused.
    with pytest.raises(Shed, match="queued"):
        await admission.enter(CRITICAL, FAR)
    assert admission.shed == {DEGRADED: 1, CRITICAL: 1}
    for task in (newer, critical):
        task.cancel()


async def test_the_curve_sheds_best_effort_early_and_critical_only_at_the_end() -> None:
    assert shed_below(0.35) == pytest.approx(4.3, abs=0.1)  # Zuul: mid-90s of 100
    assert shed_below(0.8) == pytest.approx(51.2)
    assert shed_below(0.96) < CRITICAL < shed_below(0.97)
    admission = Admission(Mode.ADAPTIVE_PRIORITY, ceiling=1, max_queued=10)
    assert admission.try_enter()
    waiting = await _queue(admission, [BEST_EFFORT] * 5)
    # Half full of work at least as critical: 12.5, so best effort is refused, critical queues.
    with pytest.raises(Shed, match="shedding criticality 10"):
        await admission.enter(BEST_EFFORT, FAR)
    waiting += await _queue(admission, [CRITICAL])
    assert admission.queued == 6
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert admission.queued == 0


async def test_work_whose_deadline_cannot_be_met_is_dropped_before_it_starts() -> None:
    clock = ManualClock()
    policy = LimitPolicy(initial=1, min_limit=1, max_limit=1)
    admission = Admission(Mode.ADAPTIVE, ceiling=1, max_queued=8, policy=policy, clock=clock)
    for _ in range(policy.min_samples):
        assert admission.try_enter()
        clock.advance(0.01)
        admission.leave(0.05, 1)  # requests take 50 ms now
    assert admission.try_enter()
    now = _clock.monotonic()
    with pytest.raises(Shed, match="too little of its deadline is left"):
        await admission.enter(CRITICAL, now + 0.03)
    # Queued with just enough time, it waits until too little is left, then is dropped.
    with pytest.raises(Shed, match="waited until too little"):
        await admission.enter(CRITICAL, now + 0.06)
    # Its turn comes when too little is left: dropped, and the place goes to the next one.
    timely = asyncio.create_task(admission.enter(CRITICAL, FAR))
    late = asyncio.create_task(admission.enter(CRITICAL, now + 0.3))  # newest: first in line
    await asyncio.sleep(0)
    admission._limiter.gradient.short_rtt = 0.5  # type: ignore[union-attr]
    admission.leave(None, 1)
    await timely
    with pytest.raises(Shed, match="too little of its deadline was left"):
        await late
    assert admission.inflight == 1


async def test_a_waiter_whose_caller_hung_up_holds_no_place() -> None:
    admission = Admission(Mode.ADAPTIVE_PRIORITY, ceiling=1, max_queued=8)
    assert admission.try_enter()
    (gone,) = await _queue(admission, [CRITICAL])
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert admission.queued == 0
    admission.leave(None, 1)
    assert admission.inflight == 0
    assert admission.try_enter()
