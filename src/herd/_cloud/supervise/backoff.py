"""How long a slot waits before it starts a process again."""

from __future__ import annotations


class Backoff:
    """How long a slot waits before starting a process again after one exited.

    A process that had run for `forgive_after_s` (or the first one) is replaced at once: one
    crash is no loop. One that exits sooner after its restart is in a crash loop: the next start
    waits `first_s`, doubling with each such exit up to `most_s`, so a broken build costs a
    start every `most_s` rather than a CPU.
    """

    def __init__(
        self, first_s: float = 0.5, most_s: float = 30.0, forgive_after_s: float = 60.0
    ) -> None:
        self.first_s = first_s
        self.most_s = most_s
        self.forgive_after_s = forgive_after_s
        self.failures = 0
        """Exits since the last process that ran for `forgive_after_s`."""
        self.delay_s = 0.0

    def crashed(self, ran_s: float) -> float:
        """Count an exit after `ran_s` seconds of running; the wait before the next start."""
        if ran_s >= self.forgive_after_s:
            self.failures = 0
        self.failures += 1
        if self.failures == 1:
            self.delay_s = 0.0
        else:
            self.delay_s = min(self.most_s, max(self.first_s, self.delay_s * 2))
        return self.delay_s

    @property
    def looping(self) -> bool:
        """Whether it exited again soon after a restart: its restarts back off."""
        return self.failures >= 2
