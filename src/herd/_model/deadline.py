"""Deadlines: an absolute time by which an answer is needed, carried in a context variable.

The deadline flows through `await` and into tasks because it lives in a `ContextVar`; every outgoing
call sends what is left of it, and the server runs its handler under that remainder, so the budget
telescopes through every hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import weakref
from collections.abc import Iterator
from typing import Any

from herd._model.errors import ConfigurationError

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "herd_deadline", default=None
)


def current() -> float | None:
    """The absolute deadline (`time.monotonic()` seconds) in force here, or None."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left before the deadline in force here (may be negative), or None without one."""
    at = _deadline.get()
    if at is None:
        return None
    return at - time.monotonic()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Run the block under a deadline `seconds` from now; yields the absolute deadline.

    A deadline can only shrink: inside an outer deadline, the earlier of the two wins, so a
    library cannot give itself more time than its caller has.
    """
    if seconds != seconds or seconds < 0:
        raise ConfigurationError(
            f"deadline must be a non-negative number of seconds, not {seconds}"
        )
    at = time.monotonic() + seconds
    outer = _deadline.get()
    if outer is not None and outer < at:
        at = outer
    token = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(token)


@contextlib.contextmanager
def _at(absolute: float) -> Iterator[None]:
    """Install an absolute deadline (used by the server for an incoming request)."""
    token = _deadline.set(absolute)
    try:
        yield
    finally:
        _deadline.reset(token)


#: Expiries fire within this much after their time: one coarse timer per event loop serves every
#: call, instead of a timer created and cancelled per call (half of herd's own cost per call).
RESOLUTION_S = 0.001


class Expiry:
    """Cancel the enclosing task at an absolute time and raise `TimeoutError` out of the block.

    Like `asyncio.timeout_at`, but served by the loop's shared `_Wheel`: entering costs a dict
    insert rather than a timer handle.
    """

    __slots__ = ("_cancelling", "_task", "_wheel", "at", "fired", "slot")

    def __init__(self, at: float) -> None:
        self.at = at
        self.fired = False
        self.slot = 0
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._wheel: _Wheel | None = None

    async def __aenter__(self) -> Expiry:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("herd deadlines need a running task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = asyncio.get_running_loop()
        wheel = _wheels.get(loop)
        if wheel is None:
            wheel = _wheels[loop] = _Wheel(loop)
        self._wheel = wheel
        wheel.add(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        assert self._wheel is not None and self._task is not None
        self._wheel.discard(self)
        if (
            self.fired
            and exc_type is asyncio.CancelledError
            and self._task.uncancel() <= self._cancelling
        ):
            raise TimeoutError from exc

    def fire(self) -> None:
        """Called by the wheel when the time has come."""
        if self._task is not None and not self._task.done():
            self.fired = True
            self._task.cancel()


class _Wheel:
    """Buckets of expiries by time slot, swept by one repeating timer while any are pending."""

    __slots__ = ("_buckets", "_loop", "_next", "_ticking")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, dict[Expiry, None]] = {}
        self._next = int(time.monotonic() / RESOLUTION_S)
        self._ticking = False

    def add(self, expiry: Expiry) -> None:
        if not self._ticking:
            self._ticking = True
            self._next = int(time.monotonic() / RESOLUTION_S)
            self._loop.call_later(RESOLUTION_S, self._tick)
        # Round up, so that an expiry never fires before its time.
        slot = max(int(expiry.at / RESOLUTION_S) + 1, self._next)
        expiry.slot = slot
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = {}
        bucket[expiry] = None

    def discard(self, expiry: Expiry) -> None:
        bucket = self._buckets.get(expiry.slot)
        if bucket is not None:
            bucket.pop(expiry, None)
            if not bucket:
                del self._buckets[expiry.slot]

    def _tick(self) -> None:
        now_slot = int(time.monotonic() / RESOLUTION_S)
        if self._buckets:
            for slot in range(self._next, now_slot + 1):
                bucket = self._buckets.pop(slot, None)
                if bucket is not None:
                    for expiry in bucket:
                        expiry.fire()
        self._next = now_slot + 1
        if self._buckets:
            self._loop.call_later(RESOLUTION_S, self._tick)
        else:
            self._ticking = False


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()
