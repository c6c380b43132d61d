"""Circuit breakers into the history: every `INTERVAL_S` the control plane asks each UP instance
for its `/herd/dependencies` (what the dashboard shows) and records each breaker that changed
state since the last answer: `breaker.opened`, `breaker.half-open`, `breaker.closed`, with the
instance that holds it and the dependency it guards.

A breaker that opens and closes again between two polls goes unrecorded: the history says what
the instances reported, at the poll's resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import structlog

from herd._cloud.interface import InstanceView

log = structlog.get_logger("herd.breakers")

#: Seconds between two polls.
INTERVAL_S = 2.0
_KINDS = {"open": "breaker.opened", "half_open": "breaker.half-open", "closed": "breaker.closed"}


class Cloud(Protocol):
    """What the watch needs of the control plane (the `Controller`)."""

    async def ps(self) -> list[InstanceView]:
        """Every instance."""
        ...

    def record(
        self,
        kind: str,
        *,
        cause: str = "",
        group: str | None = None,
        instance: str | None = None,
        **detail: object,
    ) -> None:
        """Record a change in the history."""
        ...


class BreakerWatch:
    """Polls the instances' breakers and records their changes."""

    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud
        self._states: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Poll until `close`."""
        self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def close(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def observe(self, view: InstanceView, dependencies: Mapping[str, Any]) -> None:
        """Record the breakers of `view` that changed since its last report. A breaker seen for
        the first time is recorded only when it is not closed (closed is where they start)."""
        for dependency, figures in dependencies.items():
            breaker = figures.get("breaker") if isinstance(figures, Mapping) else None
            if not isinstance(breaker, Mapping):
                continue
            state = str(breaker.get("state", "closed"))
            key = (view.id, dependency)
            before = self._states.get(key, "closed")
            self._states[key] = state
            if state != before and state in _KINDS:
                self._cloud.record(
                    _KINDS[state],
                    cause="breaker",
                    group=view.group,
                    instance=view.id,
                    dependency=dependency,
                    was=before,
                )

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=INTERVAL_S / 2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await asyncio.sleep(INTERVAL_S)
                try:
                    views = [v for v in await self._cloud.ps() if v.status == "UP" and v.address]
                    answers = await asyncio.gather(
                        *(self._poll(session, view) for view in views), return_exceptions=True
                    )
                    for view, answer in zip(views, answers, strict=True):
                        if isinstance(answer, dict):
                            self.observe(view, answer)
                    live = {view.id for view in views}
                    for key in [k for k in self._states if k[0] not in live]:
                        del self._states[key]
                except Exception:
                    # One bad round must not end the watch for good.
                    log.exception("breaker poll failed")

    @staticmethod
    async def _poll(session: aiohttp.ClientSession, view: InstanceView) -> Any:
        async with session.get(f"http://{view.address}/herd/dependencies") as answer:
            return await answer.json() if answer.status == 200 else None
