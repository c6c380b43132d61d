# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""history's interface: what a visitor watched recently. Callers import this and nothing else."""

from __future__ import annotations

import msgspec

import herd
from examples.flix.idempotency import BadKey, InvalidWrite, KeyReused
from examples.flix.ids import VideoId, VisitorId

#: history feeds an optional row: a page waits at most this long for one attempt, and retries
#: once elsewhere only if its deadline has room, before rendering without the row.
ATTEMPT_CAP = 0.15


class Play(msgspec.Struct, frozen=True):
    """One viewing as stored. `applied` is False when this key had already been recorded (a
    retry): the stored viewing is returned unchanged."""

    key: str
    visitor: VisitorId
    video: VideoId
    played_at_ms: int
    applied: bool


__all__ = ["ATTEMPT_CAP", "BadKey", "History", "InvalidWrite", "KeyReused", "Play"]


class History(herd.Interface, name="history"):
    """Viewing history."""

    @herd.method(idempotent=True, timeout=ATTEMPT_CAP)
    async def recent(self, visitor: VisitorId, limit: int = 10) -> list[VideoId]:
        """The videos `visitor` watched most recently, newest first; [] for none."""

    @herd.method(idempotent=True)
    async def play(self, visitor: VisitorId, video: VideoId, key: str) -> Play:
        """Record that `visitor` played `video`, durably, once per idempotency `key` (16-64 of
        A-Z a-z 0-9 _ -): a retry with the same key changes nothing. Raises
        `KeyReused` for a key this visitor used for a different viewing, `BadKey`."""
