"""Retry pressure: when most of what a server receives is retries, retries only add load.

A server that sees too large a share of retried requests answers further retried requests with
"overloaded, do not retry", which stops a retry storm at the instance that sees it, whatever the
callers' budgets.
"""

from __future__ import annotations

from herd._model.clock import MONOTONIC, Clock


class RetryPressure:
    """Counts first attempts and retries over a sliding window of two half-windows."""

    __slots__ = ("_clock", "_counts", "_half", "_max_share", "_min_volume", "_slot")

    def __init__(
        self,
        *,
        window_s: float = 10.0,
        max_share: float = 0.5,
        min_volume: int = 20,
        clock: Clock = MONOTONIC,
    ) -> None:
        self._clock = clock
        self._half = window_s / 2
        self._max_share = max_share
        self._min_volume = min_volume
        # [first attempts, retries] for the previous and the current half-window.
        self._counts = [[0, 0], [0, 0]]
        self._slot = int(clock.now() / self._half)

    def _roll(self) -> None:
        slot = int(self._clock.now() / self._half)
        if slot != self._slot:
            self._counts = [self._counts[1] if slot == self._slot + 1 else [0, 0], [0, 0]]
            self._slot = slot

    def admit(self, attempt: int) -> bool:
        """Count a request; False if it is a retry and retries are already too large a share."""
        self._roll()
        retry = attempt > 1
        if retry:
            firsts = self._counts[0][0] + self._counts[1][0]
            retries = self._counts[0][1] + self._counts[1][1]
            total = firsts + retries
            if total >= self._min_volume and retries >= self._max_share * total:
                return False
        self._counts[1][1 if retry else 0] += 1
        return True
