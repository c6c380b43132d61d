"""An asyncio event loop on virtual time: herd's real call path runs on it, unchanged.

The loop's selector never waits: asked to wait `timeout` seconds for I/O, it moves the virtual
clock forward by `timeout` and reports nothing ready, so the loop jumps straight to its next timer.
While the loop runs, the call path's `herd._model.clock.monotonic` reads the same virtual clock,
so deadlines, attempt timers, the timer wheel, breakers, budgets and ejections all agree with the
loop's timers. A simulation has no I/O at all, so an empty wait with nothing scheduled is a
deadlock, and raises.

looptime (PyPI) fast-forwards a loop's `time()` too, but it is a pytest plugin built around real
I/O in tests, and leaves `time.monotonic` alone, which herd's deadlines read; what a simulation
needs is this selector and one clock, a few lines.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from herd._model import clock as call_path_clock

T = TypeVar("T")

#: Where virtual time starts: far from 0, like a monotonic clock, so nothing treats 0 as "unset".
START = 1000.0


class VirtualClock:
    """Seconds of virtual time; only the selector moves it."""

    __slots__ = ("now",)

    def __init__(self, start: float = START) -> None:
        self.now = start

    def time(self) -> float:
        """The current virtual time."""
        return self.now


class _Selector(selectors.BaseSelector):
    """Holds registrations (the loop's self-pipe) and never reports any ready."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._keys: dict[Any, selectors.SelectorKey] = {}
        self.waits = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, _fd(fileobj), events, data)
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("virtual time: nothing is scheduled and nothing can happen")
        if timeout > 0:
            self._clock.now += timeout
            self.waits += 1
        return []

    def close(self) -> None:
        self._keys.clear()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys


def _fd(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())


class VirtualLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` is a `VirtualClock` that jumps to the next timer."""

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        self._virtual_selector = _Selector(self.clock)
        super().__init__(self._virtual_selector)
        # The base loop fires a timer up to this early; virtual time is exact.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        """The virtual time, which the loop's timers are scheduled on."""
        return self.clock.now

    @property
    def jumps(self) -> int:
        """How many times the clock jumped forward to the next timer."""
        return self._virtual_selector.waits


def run(
    main: Callable[[VirtualLoop], Coroutine[Any, Any, T]], clock: VirtualClock | None = None
) -> T:
    """Run `main(loop)` to completion on a new virtual-time loop, with the call path's
    `monotonic()` on the same clock for the duration; real time is restored afterwards."""
    loop = VirtualLoop(clock)
    previous = call_path_clock.use_monotonic(loop.clock.time)
    try:
        return loop.run_until_complete(main(loop))
    finally:
        try:
            # Still on virtual time: what unwinds (deadline scopes, breakers) reads the clock.
            _cancel_all(loop)
        finally:
            call_path_clock.use_monotonic(previous)
            loop.close()


def _cancel_all(loop: VirtualLoop) -> None:
    """Cancel what is still pending (hung handlers, the arrival process) and let it unwind."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
