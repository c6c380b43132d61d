"""The autoscale loop: every `INTERVAL_S`, each autoscaled group's figures go to its `Autoscaler`
(`policy.py`), and what it decides is applied. A figure is an instance's requests in flight (its
own `/health`), or its percent of one core since the last round (`/proc`, no request at all)."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import os
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

from herd._cloud.app import GroupSpec
from herd._cloud.autoscale.policy import Autoscaler, Decision
from herd._cloud.launch.process import Process
from herd._cloud.supervise.groups import ServerGroups
from herd._cloud.supervise.slot import Slot
from herd._wire.http_client import InstanceSession

log = structlog.get_logger("herd.cloud")

#: How often autoscaled groups' figures are gathered and their autoscalers asked.
INTERVAL_S = 1.0
#: /proc counts a process's CPU time in these per second.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Autoscaling:
    """The autoscalers of one control plane's groups, and the loop that runs them."""

    def __init__(self, groups: ServerGroups, *, up: Callable[[Slot], bool]) -> None:
        """`up` tells whether a slot's instance is UP in the registry."""
        self._groups = groups
        self._up = up
        self._autoscalers = {
            name: Autoscaler(spec.autoscale)
            for name, spec in groups.specs.items()
            if spec.autoscale is not None
        }
        self._reasons: dict[str, str] = {}
        self.decisions: collections.deque[tuple[float, str, Decision]] = collections.deque(
            maxlen=1000
        )
        """The latest decisions that changed a count: (`time.monotonic()`, group, decision),
        oldest first."""
        self._cpu_seen: dict[int, tuple[int, float]] = {}
        """pid -> (CPU clock ticks used, monotonic time) at the last reading."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the loop until `close`, if any group autoscales."""
        if self._autoscalers and self._task is None:
            self._task = asyncio.create_task(self._loop(), context=contextvars.Context())

    def add(self, group: GroupSpec) -> None:
        """Autoscale a new group (a deploy's) if it asks to be, starting the loop if need be."""
        if group.autoscale is not None:
            self._autoscalers[group.name] = Autoscaler(group.autoscale)
            self.start()

    def remove(self, group: str) -> None:
        """Forget a group's autoscaler."""
        self._autoscalers.pop(group, None)

    def policy(self, group: str) -> str:
        """The group's autoscaling policy; "" when it has none."""
        scaler = self._autoscalers.get(group)
        return scaler.policy if scaler is not None else ""

    def reason(self, group: str) -> str:
        """The group's autoscaler's latest verdict."""
        return self._reasons.get(group, "")

    async def close(self) -> None:
        """Stop the loop (first, when the cloud stops: it would start instances meanwhile)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=INTERVAL_S / 2)
        async with InstanceSession(timeout) as session:
            while True:
                await asyncio.sleep(INTERVAL_S)
                # A copy: a deploy adds and removes groups while this round awaits figures.
                for name, scaler in list(self._autoscalers.items()):
                    try:
                        figures = await self._figures(name, scaler.spec.metric, session)
                        self._apply(name, scaler.decide(self._groups.desired[name], figures))
                    except Exception as exc:
                        # One bad round must not end autoscaling for good.
                        log.error("autoscale failed", group=name, error=repr(exc))
                slots = self._groups.instance_slots()
                live = {slot.process.pid for slot in slots if slot.process}
                for pid in self._cpu_seen.keys() - live:
                    del self._cpu_seen[pid]

    async def _figures(self, name: str, metric: str, session: InstanceSession) -> list[float]:
        """One figure per UP instance of the group that has one. An instance's first round only
        sets the CPU baseline: its start-up is not load."""
        up = [
            slot.process
            for slot in self._groups.slots[name]
            if slot.process is not None and slot.filled and self._up(slot)
        ]
        if metric == "cpu":
            return [f for process in up if (f := self._cpu_percent(process)) is not None]
        answers = await asyncio.gather(
            *(_inflight(session, process) for process in up), return_exceptions=True
        )
        return [a for a in answers if isinstance(a, float)]

    def _cpu_percent(self, process: Process) -> float | None:
        pid = process.pid
        if pid is None:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 0
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        now = time.monotonic()
        last = self._cpu_seen.get(pid)
        self._cpu_seen[pid] = (ticks, now)
        if last is None or now <= last[1]:
            return None
        return 100.0 * (ticks - last[0]) / _CLOCK_TICKS / (now - last[1])

    def _apply(self, name: str, decision: Decision) -> None:
        self._reasons[name] = decision.reason
        if decision.desired == decision.current:
            return
        self._groups.scale(name, decision.desired, cause="autoscale")
        self.decisions.append((time.monotonic(), name, decision))
        # One event name and flat fields: what a history reads back.
        log.info(
            "autoscaled",
            group=name,
            action=decision.action,
            current=decision.current,
            desired=decision.desired,
            reason=decision.reason,
            panic=decision.panic,
            per_instance=round(decision.per_instance, 3),
            reporting=decision.reporting,
        )


async def _inflight(scrape: InstanceSession, process: Process) -> float:
    assert process.address is not None
    async with scrape.session.get(scrape.url(process.address, "/health")) as response:
        body = await response.json()
    return float(body["inflight"])
