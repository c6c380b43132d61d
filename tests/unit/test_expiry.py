"""The shared deadline timer: one coarse timer per loop serves every call's expiry."""

from __future__ import annotations

import asyncio
import time

import pytest

from herd._model.deadline import RESOLUTION_S, Expiry


async def test_an_expiry_cancels_the_block_at_its_time_and_never_before() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Expiry(started + 0.05) as expiry:
            await asyncio.sleep(5)
    elapsed = time.monotonic() - started
    assert expiry.fired
    assert 0.05 <= elapsed < 0.05 + 0.2


async def test_a_block_that_finishes_in_time_is_left_alone() -> None:
    async with Expiry(time.monotonic() + 0.05) as expiry:
        await asyncio.sleep(0)
    await asyncio.sleep(0.05 + 3 * RESOLUTION_S)
    assert not expiry.fired


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    entered = asyncio.Event()

    async def work() -> None:
        async with Expiry(time.monotonic() + 5):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_inner_expiry_does_not_fire_the_outer_one() -> None:
    async with Expiry(time.monotonic() + 1) as outer:
        with pytest.raises(TimeoutError):
            async with Expiry(time.monotonic() + 0.02):
                await asyncio.sleep(1)
        await asyncio.sleep(0)
    assert not outer.fired


async def test_many_expiries_fire_in_the_order_of_their_times() -> None:
    fired: list[int] = []

    async def wait(index: int, delay: float) -> None:
        try:
            async with Expiry(time.monotonic() + delay):
                await asyncio.sleep(5)
        except TimeoutError:
            fired.append(index)

    await asyncio.gather(*(wait(i, 0.02 + 0.02 * i) for i in (4, 1, 3, 0, 2)))
    assert fired == [0, 1, 2, 3, 4]


async def test_an_expiry_already_past_fires_at_the_next_tick() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with Expiry(started - 1):
            await asyncio.sleep(5)
    assert time.monotonic() - started < 0.2
