"""Stopping a background task: the one way every long-lived loop (a watch, a poll, chaos) ends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has ended, so nothing it does outlives its owner's close.
    Its cancellation is swallowed; an error it ended with is not."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
