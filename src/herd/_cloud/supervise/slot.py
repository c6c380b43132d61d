"""Slots and their supervisor: every process of the local cloud fills a **slot** (the registry's,
an etcd member's, a cache server's, or one of a group's instances). A slot is kept filled by a
task of its own (start, wait for the exit, back off, start again), so one slot's trouble never
stalls another's, and every process that fills a slot in turn writes to the slot's one log file.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import shutil
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import structlog

from herd._cloud.app import GroupSpec
from herd._cloud.history.recorder import Recorder
from herd._cloud.launch.caches import CacheServer
from herd._cloud.launch.process import Process
from herd._cloud.supervise.backoff import Backoff
from herd._store.nats_server import Member

log = structlog.get_logger("herd.cloud")

#: How long a process may take from exec to its ready line.
START_TIMEOUT_S = 30.0


@dataclasses.dataclass(eq=False)
class Slot:
    """One place the control plane keeps filled."""

    name: str
    log: Path
    launch: Callable[[], Process]
    """Makes the next process of the slot (not started)."""
    group: GroupSpec | None = None
    """None for the registry, etcd members and cache servers."""
    zone: str = ""
    index: int = 0
    started_kind: str = ""
    """What the history records when a process of a slot that is no instance starts ("":
    nothing)."""
    process: Process | None = None
    """The process filling the slot now, or the last one."""
    backoff: Backoff = dataclasses.field(default_factory=Backoff)
    cache: CacheServer | None = None
    """The memcached server the slot runs, for a cache's slot."""
    store: Member | None = None
    """The nats-server the slot runs, for a member of the store cluster."""
    details: dict[str, str] = dataclasses.field(default_factory=dict)
    """What the history records beside the pid with `started_kind`."""
    replace: bool = False
    """Killed on purpose (`herd kill`): start the next one at once; no crash to count."""
    cause: str = ""
    """Why its process is ending, for the history ("": it crashed)."""
    tried: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set once the first process is ready or has failed to start."""
    task: asyncio.Task[None] | None = None

    def kill(self, *, cause: str) -> None:
        """SIGKILL the running process: the slot starts another at once (once its zone is
        open), with no crash counted; `cause` is what the history says of its end."""
        assert self.process is not None
        self.replace = True
        self.cause = cause
        self.process.signal(signal.SIGKILL)

    @property
    def filled(self) -> bool:
        """Whether a process runs in the slot and has said it is ready."""
        process = self.process
        return process is not None and process.alive and process.ready.is_set()


class Supervisor:
    """Keeps slots filled and records what their instances do.

    `zone_open` holds an instance's start while its zone is out (a chaos zone outage);
    `tls_dir` holds each instance's identity, removed when its process is gone; `forget` (set
    once deploys run) hears of every instance that ended, which the control plane deregisters.
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        zone_open: Callable[[str], Awaitable[None]],
        tls_dir: Path,
    ) -> None:
        self._recorder = recorder
        self._zone_open = zone_open
        self._tls_dir = tls_dir
        self.forget: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._live: set[str] = set()
        """Instances launched whose end the history has not recorded yet."""
        self._chores: set[asyncio.Task[None]] = set()

    def supervise(self, slot: Slot) -> None:
        """Keep `slot` filled, from now until it is retired or stopped."""
        # A fresh context: created while serving `scale`, the task would inherit its deadline.
        slot.task = asyncio.create_task(self._keep(slot), context=contextvars.Context())

    async def fill(self, slots: Sequence[Slot], what: str) -> None:
        """Supervise `slots` and wait until each has tried its first start; RuntimeError
        naming the logs if any of them did not start."""
        for slot in slots:
            self.supervise(slot)
        await asyncio.gather(*(slot.tried.wait() for slot in slots))
        failed = [slot for slot in slots if not slot.filled]
        if failed:
            logs = ", ".join(str(slot.log) for slot in failed)
            raise RuntimeError(f"{what} did not start: see {logs}")

    def chore(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` beside the supervision; `stop` waits for it."""
        task = asyncio.create_task(work, context=contextvars.Context())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def retire(self, slot: Slot, done: Callable[[Slot], None]) -> None:
        """Stop supervising `slot` and stop its process (it deregisters and drains); `done`
        hears when it has."""
        self.chore(self._retire(slot, done))

    async def _retire(self, slot: Slot, done: Callable[[Slot], None]) -> None:
        try:
            await self.unsupervise([slot])
            if slot.process is not None:
                slot.cause = slot.cause or "scale"
                await slot.process.stop()
                self.ended(slot, slot.process.returncode)
        finally:
            done(slot)

    @staticmethod
    async def unsupervise(slots: Sequence[Slot]) -> None:
        """Stop keeping `slots` filled (their processes run on)."""
        for slot in slots:
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(*(slot.task for slot in slots if slot.task), return_exceptions=True)

    async def stop(self, slots: Sequence[Slot], *, cause: str = "") -> None:
        """Stop the processes of `slots` (no longer supervised) and wait for every chore."""
        for slot in slots:
            slot.cause = cause
        await asyncio.gather(
            *(slot.process.stop() for slot in slots if slot.process), *self._chores
        )
        for slot in slots:
            self.ended(slot, slot.process.returncode if slot.process else None)

    async def _keep(self, slot: Slot) -> None:
        """Keep `slot` filled until cancelled: start a process, wait for its exit, back off,
        and again. Nothing that goes wrong in one round ends the loop: a supervisor that died
        would leave the slot empty for good, and silently."""
        while True:
            if slot.group is not None or slot.store is not None:
                # A zone that is out starts nothing: its instances, and its store member.
                await self._zone_open(slot.zone)
            began = time.monotonic()
            try:
                await self._run(slot)
            except Exception as exc:
                # A plain traceback: a rich one would print local variables, which need not
                # end up in a log.
                log.error(
                    "start failed",
                    slot=slot.name,
                    error=str(exc),
                    exception=traceback.format_exc(),
                )
            slot.tried.set()
            if slot.replace:
                slot.replace = False
                continue
            delay = slot.backoff.crashed(time.monotonic() - began)
            if delay:
                log.warning(
                    "crash loop: backing off",
                    slot=slot.name,
                    crashes=slot.backoff.failures,
                    delay_s=delay,
                )
            await asyncio.sleep(delay)

    async def _run(self, slot: Slot) -> None:
        """One process in `slot`, from its start to its exit."""
        slot.log.parent.mkdir(parents=True, exist_ok=True)
        process = slot.process = slot.launch()
        with process.log_path.open("a") as log_file:
            # One file holds every process of the slot in turn: say where each one begins.
            log_file.write(f"--- herd: {process.name} starts ({time.strftime('%F %T')})\n")
        try:
            await process.start()
            self._started(slot)
            ready = await process.wait_ready(START_TIMEOUT_S)
            slot.tried.set()
            if not ready:
                log.warning(
                    "not ready",
                    instance=process.name,
                    code=process.returncode,  # None: still silent after START_TIMEOUT_S
                    log=str(process.log_path),
                )
                slot.cause = "not-ready"
                await process.stop(grace_s=1.0)
                self.ended(slot, process.returncode)
                return
            if slot.group is not None:
                self._recorder.record(
                    "instance.up",
                    group=slot.group.name,
                    instance=process.name,
                    address=process.address,
                )
            code = await process.wait()
            log.info("exited", instance=process.name, code=code)
            self.ended(slot, code)
        finally:
            if slot.group is not None:
                # An instance's key is of no use to anyone once it is gone (its successor gets
                # an identity of its own).
                shutil.rmtree(self._tls_dir / process.name, ignore_errors=True)

    def _started(self, slot: Slot) -> None:
        """Record a process's launch: an instance's, or the registry's (again, after a crash)."""
        process = slot.process
        assert process is not None
        slot.cause = ""
        if slot.started_kind:
            self._recorder.record(slot.started_kind, pid=process.pid, **slot.details)
        elif slot.group is not None:
            self._live.add(process.name)
            self._recorder.record(
                "instance.launched",
                group=slot.group.name,
                instance=process.name,
                zone=slot.zone,
                pid=process.pid,
                version=slot.group.version,
            )

    def ended(self, slot: Slot, code: int | None) -> None:
        """Record the end of the slot's instance, once, with why it ended."""
        process = slot.process
        if process is None or slot.group is None or process.name not in self._live:
            return
        self._live.discard(process.name)
        if self.forget is not None:
            # A killed process never deregisters: the control plane, which saw it end, does.
            self.chore(self.forget(process.name))
        self._recorder.record(
            "instance.terminated",
            cause=slot.cause or "crash",
            group=slot.group.name,
            instance=process.name,
            zone=slot.zone,
            code=code,
        )
