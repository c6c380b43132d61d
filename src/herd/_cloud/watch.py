"""What running instances report, into the history, every `INTERVAL_S`:

- **breakers**: each UP instance's `/herd/dependencies` (what the dashboard shows); a breaker
  that changed state since the last answer is recorded as `breaker.opened`, `breaker.half-open`
  or `breaker.closed`, with the instance that holds it and the dependency it guards;
- **registry status**: a running instance that stops being UP in the registry (a hung one whose
  lease ran out, one taken out of service) is recorded `instance.down`, and `instance.up` when it
  is UP again. (A process that ends is `instance.terminated`, recorded by the controller.)

A change undone between two polls goes unrecorded: the history says what was reported, at the
poll's resolution.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from herd._cloud.cloud import Cloud
from herd._cloud.interface import InstanceView
from herd._model.instance import Status
from herd._model.tasks import cancel_and_wait
from herd._wire.http_client import InstanceSession

log = structlog.get_logger("herd.watch")

#: Seconds between two polls.
INTERVAL_S = 2.0
_KINDS = {"open": "breaker.opened", "half_open": "breaker.half-open", "closed": "breaker.closed"}


class InstanceWatch:
    """Polls the running instances and records what changed in what they report."""

    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud
        self._states: dict[tuple[str, str], str] = {}
        self._status: dict[str, str] = {}
        self._down: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Poll until `close`."""
        self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def close(self) -> None:
        """Stop polling."""
        await cancel_and_wait(self._task)

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

    def statuses(self, views: list[InstanceView]) -> None:
        """Record running instances that left UP, or came back to it, since the last look."""
        running = {view.id: view for view in views if view.pid}
        for view in running.values():
            before = self._status.get(view.id)
            self._status[view.id] = view.status
            if before == Status.UP and view.status != Status.UP:
                self._down.add(view.id)
                self._cloud.record(
                    "instance.down", cause="registry", group=view.group, instance=view.id,
                    status=view.status,
                )  # fmt: skip
            elif view.status == Status.UP and view.id in self._down:
                self._down.discard(view.id)
                self._cloud.record(
                    "instance.up", cause="registry", group=view.group, instance=view.id
                )
        for gone in self._status.keys() - running.keys():
            del self._status[gone]
            self._down.discard(gone)

    async def _run(self) -> None:
        # The control plane's own identity: instances take no call without one.
        async with InstanceSession(aiohttp.ClientTimeout(total=INTERVAL_S / 2)) as session:
            while True:
                await asyncio.sleep(INTERVAL_S)
                try:
                    everyone = await self._cloud.ps()
                    self.statuses(everyone)
                    views = [v for v in everyone if v.status == Status.UP and v.address]
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
                    log.exception("watch poll failed")

    @staticmethod
    async def _poll(scrape: InstanceSession, view: InstanceView) -> Any:
        url = scrape.url(view.address, "/herd/dependencies")
        async with scrape.session.get(url) as answer:
            return await answer.json() if answer.status == 200 else None
