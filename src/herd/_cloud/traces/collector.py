"""Collecting the spans of kept traces: from this process (the front door's) and from every
instance's `/herd/traces/`, which answers the control plane's identity (or the token) only.

Instances hold their recent spans (`herd._trace.recent`); the control plane asks for the ones it
kept, in one request per instance per round, so that tracing costs the instances no sending.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import structlog

from herd._cloud.traces.flow import Flow
from herd._cloud.traces.store import TraceStore
from herd._model.tasks import cancel_and_wait
from herd._trace.recent import TRACES_PATH, RecentSpans
from herd._wire.http_client import InstanceSession

log = structlog.get_logger("herd.traces")

_ASK_TIMEOUT_S = 2.0


class TraceCollector:
    """Every `interval_s`, collects the spans of the traces `store` has due."""

    def __init__(
        self,
        store: TraceStore,
        addresses: Callable[[], Awaitable[Sequence[str]]],
        local: RecentSpans,
        flow: Flow,
        *,
        interval_s: float = 0.5,
    ) -> None:
        self._store = store
        self._flow = flow
        self._addresses = addresses
        self._local = local
        self._interval_s = interval_s
        self._session: InstanceSession | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Collect in the background until `stop`."""
        # In an empty context: the collector's own requests belong to no trace.
        self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def stop(self) -> None:
        """Stop collecting and close the connections."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.collect(time.monotonic())
            except Exception:
                log.exception("collecting spans failed")

    async def collect(self, now: float) -> None:
        """One round: the spans of every trace due now, from here and every instance."""
        self._flow.flush(now)
        due = self._store.due(now)
        if not due:
            return
        ids = [int(trace_id, 16) for trace_id in due]
        self._store.add_spans(self._local.spans(ids))
        if self._session is None:
            self._session = InstanceSession(aiohttp.ClientTimeout(total=_ASK_TIMEOUT_S))
        path = TRACES_PATH + ",".join(due)
        answers = await asyncio.gather(
            *(self._ask(self._session, address, path) for address in await self._addresses())
        )
        for spans in answers:
            self._flow.saw(self._store.add_spans(spans))

    @staticmethod
    async def _ask(session: InstanceSession, address: str, path: str) -> list[dict[str, Any]]:
        try:
            async with session.session.get(session.url(address, path)) as answer:
                if answer.status != 200:
                    return []
                body = json.loads(await answer.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            # An instance that went away took its spans with it: the trace shows without them.
            return []
        spans = body.get("spans") if isinstance(body, dict) else None
        return spans if isinstance(spans, list) else []
