# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""history's interface: what a visitor watched recently. Callers import this and nothing else."""

from __future__ import annotations

import herd
from examples.flix.ids import VideoId, VisitorId

#: history feeds an optional row: a page waits at most this long for one attempt, and retries
#: once elsewhere only if its deadline has room, before rendering without the row.
ATTEMPT_CAP = 0.15


class History(herd.Interface, name="history"):
    """Viewing history."""

    @herd.method(idempotent=True, timeout=ATTEMPT_CAP)
    async def recent(self, visitor: VisitorId, limit: int = 10) -> list[VideoId]:
        """The videos `visitor` watched most recently, newest first; [] for none."""
