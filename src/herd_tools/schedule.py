"""The open-model schedule every load in the project runs on: `herd load`, the experiments and
the tests' load.

Requests are due at fixed intended times, `start + i / rate`, however slowly the target answers:
a generator that waited for answers would slow down exactly when the system does, and hide the
failure. A caller that falls behind sends the overdue requests at once with their original
intended times, so measuring latency from the intended time keeps coordinated omission from
hiding stalls.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from herd._model.clock import MONOTONIC, Clock

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Schedule:
    """Fixed arrival times: request `i` is due `i / rate` seconds after the start, while that
    is before `duration`."""

    rate: float
    duration: float

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {self.rate}")
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0 s, got {self.duration}")

    @property
    def count(self) -> int:
        """How many requests the schedule holds: `ceil(rate * duration)`, robust to float
        noise (a rate of 0.1/s for 30 s is 3 requests, not 4)."""
        return math.ceil(self.rate * self.duration - 1e-9)

    def offset(self, index: int) -> float:
        """Seconds from the start at which request `index` is due (computed, never summed, so
        rounding does not drift)."""
        return index / self.rate


async def drive(
    schedule: Schedule,
    start: float,
    fire: Callable[[float], None],
    *,
    clock: Clock = MONOTONIC,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Call `fire(intended_time)` once per scheduled request, not before its intended time.

    `start` is a time of `clock`. When the caller falls behind (a stall, an overshooting sleep),
    the overdue requests fire at once with their original intended times: the schedule never
    shifts. Cancelling the call stops the schedule where it is.
    """
    for index in range(schedule.count):
        intended = start + schedule.offset(index)
        wait = intended - clock.now()
        if wait > 0:
            await sleep(wait)
        fire(intended)


#: What `open_model` starts for one due request (None: nothing to send this time).
Send = Callable[[float], Coroutine[Any, Any, None] | None]


async def open_model(
    schedule: Schedule, start: float, send: Send, *, clock: Clock = MONOTONIC
) -> None:
    """The open-model load loop: start `send(intended_time)` for every scheduled request, each
    as a task of its own, whether or not earlier ones have finished; return once all have.

    `send` runs at the request's due time and returns the coroutine to run, or None when it
    counted the request itself (a client-side refusal, say). Cancelling cancels every request.
    """
    async with asyncio.TaskGroup() as sending:

        def fire(intended: float) -> None:
            request = send(intended)
            if request is not None:
                sending.create_task(request)

        await drive(schedule, start, fire, clock=clock)
