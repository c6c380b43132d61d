"""Deadlines: nest and only shrink, flow through awaits, tasks and threads, and reach the server."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import herd
from herd._model import deadline as _deadline


def test_no_deadline_outside_a_block() -> None:
    assert herd.remaining() is None
    assert _deadline.current() is None


def test_a_deadline_counts_down_and_is_gone_after_the_block() -> None:
    before = time.monotonic()
    with herd.deadline(2.0) as at:
        assert before + 2.0 <= at <= time.monotonic() + 2.0
        left = herd.remaining()
        assert left is not None
        assert 1.5 < left <= 2.0
        assert _deadline.current() == at
    assert herd.remaining() is None


def test_an_inner_deadline_cannot_outlive_the_outer_one() -> None:
    with herd.deadline(1.0) as outer:
        with herd.deadline(60.0) as inner:
            assert inner == outer
            left = herd.remaining()
            assert left is not None
            assert left <= 1.0
        with herd.deadline(0.1) as shorter:
            assert shorter < outer
            left = herd.remaining()
            assert left is not None
            assert left <= 0.1
        # Leaving the inner block restores the outer deadline.
        assert _deadline.current() == outer


def test_the_outer_deadline_is_restored_when_the_block_raises() -> None:
    with herd.deadline(5.0) as outer:
        with contextlib.suppress(KeyError), herd.deadline(0.5):
            raise KeyError("boom")
        assert _deadline.current() == outer


@given(st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=8))
def test_nested_deadlines_only_ever_shrink(durations: list[float]) -> None:
    with contextlib.ExitStack() as stack:
        previous = math.inf
        for seconds in durations:
            at = stack.enter_context(herd.deadline(seconds))
            assert at <= previous
            assert at <= time.monotonic() + seconds
            previous = at


@pytest.mark.parametrize("seconds", [-0.001, -5.0, math.nan])
def test_a_negative_or_nan_deadline_is_a_configuration_error(seconds: float) -> None:
    with pytest.raises(herd.ConfigurationError), herd.deadline(seconds):
        pass


def test_a_zero_deadline_is_already_expired() -> None:
    with herd.deadline(0.0):
        left = herd.remaining()
        assert left is not None
        assert left <= 0.0


async def test_the_deadline_flows_through_awaits_into_tasks_and_threads() -> None:
    async def seen_by_a_task() -> float | None:
        await asyncio.sleep(0)
        return _deadline.current()

    with herd.deadline(3.0) as at:
        await asyncio.sleep(0)
        assert _deadline.current() == at
        task = asyncio.create_task(seen_by_a_task())
        gathered = await asyncio.gather(seen_by_a_task(), seen_by_a_task())
        threaded = await asyncio.to_thread(_deadline.current)
        assert await task == at
        assert gathered == [at, at]
        assert threaded == at
    # A task made outside any deadline has none, even while another block is active elsewhere.
    assert await asyncio.create_task(seen_by_a_task()) is None


async def test_a_task_keeps_the_deadline_it_was_created_under() -> None:
    leave = asyncio.Event()

    async def later() -> float | None:
        await leave.wait()
        return _deadline.current()

    with herd.deadline(3.0) as at:
        task = asyncio.create_task(later())
    leave.set()  # the block has ended; the task's copy of the context has not
    assert await task == at


async def test_a_deadline_set_inside_a_task_does_not_leak_to_its_parent() -> None:
    async def child() -> float | None:
        with herd.deadline(0.5):
            return _deadline.current()

    with herd.deadline(3.0) as at:
        inner = await asyncio.create_task(child())
        assert inner is not None and inner < at
        assert _deadline.current() == at


# -- the deadline crosses the wire -----------------------------------------------------------


class Clock(herd.Interface, name="clock"):
    async def left(self) -> float: ...

    async def left_in_task(self) -> float: ...

    async def wait(self) -> str: ...


class ClockService(Clock):
    def __init__(self) -> None:
        self.calls = 0
        self.entered = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def left(self) -> float:
        self.calls += 1
        left = herd.remaining()
        assert left is not None
        return left

    async def left_in_task(self) -> float:
        self.calls += 1
        return await asyncio.create_task(self.left())

    async def wait(self) -> str:
        self.calls += 1
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "never"


async def test_the_server_runs_the_handler_under_the_callers_remaining_time() -> None:
    impl = ClockService()
    async with herd.serve(impl) as server:
        clock = herd.driver(Clock, address=server.address)
        try:
            with herd.deadline(2.0):
                direct = await clock.left()
                in_task = await clock.left_in_task()
            # With no deadline in force, the driver's default timeout is what travels.
            default = await clock.left()
        finally:
            await clock.aclose()
    assert 1.5 < direct <= 2.0
    # The deadline travels in whole milliseconds, cut down: a later call may see up to 1 ms
    # more than an earlier one, never more.
    assert 1.5 < in_task <= direct + 0.001
    assert 0.5 < default <= herd.CallPolicy().timeout


async def test_a_call_with_too_little_time_left_fails_without_sending() -> None:
    impl = ClockService()
    async with herd.serve(impl) as server:
        clock = herd.driver(Clock, address=server.address, policy=herd.CallPolicy(min_useful=0.05))
        try:
            for seconds in (0.0, 0.02):
                started = time.monotonic()
                with pytest.raises(herd.DeadlineExceeded) as caught, herd.deadline(seconds):
                    await clock.left()
                assert time.monotonic() - started < 0.05
                assert (caught.value.service, caught.value.method) == ("clock", "left")
            assert impl.calls == 0
            with herd.deadline(1.0):
                await clock.left()  # with enough time the same call is sent
            assert impl.calls == 1
        finally:
            await clock.aclose()


async def test_the_handler_is_cancelled_when_its_deadline_passes() -> None:
    impl = ClockService()
    async with herd.serve(impl) as server:
        clock = herd.driver(Clock, address=server.address, policy=herd.CallPolicy(attempts=1))
        try:
            started = time.monotonic()
            with pytest.raises(herd.DeadlineExceeded), herd.deadline(0.3):
                await clock.wait()
            assert 0.25 < time.monotonic() - started < 1.0
            assert impl.entered.is_set()
            await asyncio.wait_for(impl.cancelled.wait(), 5.0)
            assert server.inflight == 0
        finally:
            await clock.aclose()


async def test_a_deadline_cancels_the_work_under_it_and_raises_deadline_exceeded() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    started = time.monotonic()
    with pytest.raises(herd.DeadlineExceeded), herd.deadline(0.05):
        await slow()
    elapsed = time.monotonic() - started
    assert cancelled.is_set()
    assert 0.05 <= elapsed < 1.0
    assert herd.remaining() is None


async def test_the_outer_deadline_is_the_one_that_raises_when_it_is_the_earlier() -> None:
    with pytest.raises(herd.DeadlineExceeded), herd.deadline(0.05):
        try:
            with herd.deadline(5.0):
                await asyncio.sleep(10)
        except herd.DeadlineExceeded:
            pytest.fail("the inner block must see a cancellation, not its own timeout")


async def test_work_that_finishes_in_time_is_left_alone() -> None:
    scope = herd.deadline(0.05)
    with scope:
        await asyncio.sleep(0)
    # The scope is disarmed: its time passes without cancelling anything.
    await asyncio.sleep(0.1)
    assert not scope.fired
    assert herd.remaining() is None


async def test_a_cancellation_from_outside_stays_a_cancellation_under_a_deadline() -> None:
    entered = asyncio.Event()

    async def work() -> None:
        with herd.deadline(5.0):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
