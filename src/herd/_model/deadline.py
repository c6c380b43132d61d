"""Deadlines: an absolute time by which an answer is needed, carried in a context variable.

The deadline flows through `await` and into tasks because it lives in a `ContextVar`; every outgoing
call sends what is left of it, and the server runs its handler under that remainder, so the budget
telescopes through every hop. A deadline scope also cancels the work under it when its time comes
(like `trio.fail_after` or `asyncio.timeout`), and raises `DeadlineExceeded` out of the block.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable
from typing import Any

from herd._model import clock as _clock
from herd._model.errors import ConfigurationError, DeadlineExceeded

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "herd_deadline", default=None
)


def current() -> float | None:
    """The absolute deadline (`clock.monotonic()` seconds) in force here, or None."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left before the deadline in force here (may be negative), or None without one."""
    at = _deadline.get()
    if at is None:
        return None
    return at - _clock.monotonic()


#: Expiries fire within this much after their time: one coarse timer per event loop serves every
#: call, instead of a timer created and cancelled per call (half of herd's own cost per call).
RESOLUTION_S = 0.001


class _Timer:
    """Cancels a task at an absolute time, through the loop's shared `_Wheel`."""

    __slots__ = ("_cancelling", "_task", "_wheel", "at", "fired", "slot")

    def __init__(self, at: float) -> None:
        self.at = at
        self.fired = False
        self.slot = 0
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._wheel: _Wheel | None = None

    def _arm(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._cancelling = task.cancelling()
        self._wheel = _wheel_of(task.get_loop())
        self._wheel.add(self)

    def _disarm(self, exc_type: type[BaseException] | None) -> bool:
        """Stop the timer; True if it cancelled the block (which then must raise a timeout)."""
        if self._wheel is None or self._task is None:
            return False
        self._wheel.discard(self)
        return (
            self.fired
            and exc_type is asyncio.CancelledError
            and self._task.uncancel() <= self._cancelling
        )

    def fire(self) -> None:
        """Called by the wheel when the time has come."""
        if self._task is not None and not self._task.done():
            self.fired = True
            self._task.cancel()


class Expiry(_Timer):
    """Cancel the enclosing task at an absolute time and raise `TimeoutError` out of the block.

    Like `asyncio.timeout_at`, but served by the loop's shared `_Wheel`: entering costs a dict
    insert rather than a timer handle. The driver bounds each attempt with one; it does not
    change the deadline that code under it sees.
    """

    __slots__ = ()

    async def __aenter__(self) -> Expiry:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("herd deadlines need a running task")
        self._arm(task)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if self._disarm(exc_type):
            raise TimeoutError from exc


class Scope(_Timer):
    """A deadline in force for a block: what `herd.deadline` returns.

    Entering it installs the deadline for the code under it (the earlier of it and any outer
    one) and, in a task, arms a timer that cancels the block when it passes; leaving a block that
    ran out raises `DeadlineExceeded`. Outside a running event loop it only installs the deadline.
    """

    __slots__ = ("_token",)

    def __init__(self, at: float) -> None:
        outer = _deadline.get()
        super().__init__(at if outer is None or at < outer else outer)
        self._token: contextvars.Token[float | None] | None = None

    def __enter__(self) -> float:
        self._token = _deadline.set(self.at)
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        if task is not None:
            self._arm(task)
        return self.at

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if self._token is not None:
            _deadline.reset(self._token)
            self._token = None
        if self._disarm(exc_type):
            raise DeadlineExceeded("the deadline passed") from exc


class Alarm(_Timer):
    """Calls a function at an absolute time, from the loop's shared wheel: a hedge's trigger
    costs a dict entry, not a timer handle, on calls that never need it."""

    __slots__ = ("_callback",)

    def __init__(self, at: float, callback: Callable[[], object]) -> None:
        super().__init__(at)
        self._callback = callback

    def start(self) -> None:
        """Arm the alarm on the running loop's wheel."""
        self._wheel = _wheel_of(asyncio.get_running_loop())
        self._wheel.add(self)

    def cancel(self) -> None:
        """Disarm the alarm (harmless after it rang)."""
        if self._wheel is not None:
            self._wheel.discard(self)

    def fire(self) -> None:
        """Called by the wheel when the time has come."""
        self.fired = True
        self._callback()


def deadline(seconds: float) -> Scope:
    """Run the block under a deadline `seconds` from now; `as` gives the absolute deadline.

    ::

        with herd.deadline(1.0):
            shown = await movies.presentation([VideoId(7)])

    A deadline can only shrink: inside an outer deadline, the earlier of the two wins, so a
    library cannot give itself more time than its caller has. Every call under it sends what is
    left to the next hop, and when it passes, the work under it is cancelled and
    `DeadlineExceeded` is raised from the block.
    """
    if seconds != seconds or seconds < 0:
        raise ConfigurationError(
            f"deadline must be a non-negative number of seconds, not {seconds}"
        )
    return Scope(_clock.monotonic() + seconds)


def scope_at(absolute: float) -> Scope:
    """A deadline scope at an absolute time (the server's, for an incoming request)."""
    return Scope(absolute)


class _Wheel:
    """Buckets of timers by time slot, swept by one repeating timer while any are pending."""

    __slots__ = ("_buckets", "_loop", "_next", "_ticking")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, dict[_Timer, None]] = {}
        self._next = int(_clock.monotonic() / RESOLUTION_S)
        self._ticking = False

    def add(self, timer: _Timer) -> None:
        if not self._ticking:
            self._ticking = True
            self._next = int(_clock.monotonic() / RESOLUTION_S)
            self._loop.call_later(RESOLUTION_S, self._tick)
        # Round up, so that a timer never fires before its time.
        slot = max(int(timer.at / RESOLUTION_S) + 1, self._next)
        timer.slot = slot
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = {}
        bucket[timer] = None

    def discard(self, timer: _Timer) -> None:
        bucket = self._buckets.get(timer.slot)
        if bucket is not None:
            bucket.pop(timer, None)
            if not bucket:
                del self._buckets[timer.slot]

    def _tick(self) -> None:
        now_slot = int(_clock.monotonic() / RESOLUTION_S)
        if self._buckets:
            for slot in range(self._next, now_slot + 1):
                bucket = self._buckets.pop(slot, None)
                if bucket is not None:
                    for timer in bucket:
                        timer.fire()
        self._next = now_slot + 1
        if self._buckets:
            self._loop.call_later(RESOLUTION_S, self._tick)
        else:
            self._ticking = False


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()


#: The last loop asked for and its wheel: nearly every lookup, without the weak mapping's cost.
_last: tuple[asyncio.AbstractEventLoop | None, _Wheel | None] = (None, None)


def _wheel_of(loop: asyncio.AbstractEventLoop) -> _Wheel:
    """The loop's one wheel, made on first use."""
    global _last
    last, wheel = _last
    if last is loop and wheel is not None:
        return wheel
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = _Wheel(loop)
    _last = (loop, wheel)
    return wheel
