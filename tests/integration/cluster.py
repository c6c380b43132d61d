"""Real processes for integration tests: a registry, instances of a chain service, and load.

`Cluster` starts a registry process on a free port and instances of `examples.chain.service`
(zones a, b, c) that register themselves with it (`HERD_REGISTRY`), waits for their ``HERD_READY``
line and for the registry to list them UP, and kills everything it started when closed. Every
child also dies with the test process (`PR_SET_PDEATHSIG`), so even a killed test run leaves no
orphans. `Load` is an open-loop load generator: calls start at fixed times whatever the answers do.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import herd
from examples.chain.interface import Deep
from examples.chain.service import FAULT_ENV
from herd._model.instance import Instance, Status
from herd._process.registry_api import RegistryApi, Snapshot
from herd._process.registry_client import RegistryResolver
from herd._process.run import READY_PREFIX

ROOT = Path(__file__).resolve().parents[2]
ZONES = ("a", "b", "c")
GROUP = "deep-v001"

_live: set[Process] = set()
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.005
) -> float:
    """Wait until `condition()` holds (checked every `interval`); returns the seconds waited."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


class Process:
    """One child process; a reader thread keeps its output drained and spots ``HERD_READY``.

    Start it from the event loop's (main) thread: the death signal is tied to the forking thread.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self.ready: dict[str, Any] | None = None
        self.ready_at: float | None = None
        self._ended = threading.Event()
        self._log = log
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent,
        )
        _live.add(self)
        threading.Thread(target=self._read, name=f"{name}-output", daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self._log.open("a") as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                if self.ready is None and line.startswith(READY_PREFIX):
                    self.ready_at = time.monotonic()
                    self.ready = json.loads(line[len(READY_PREFIX) :])
        self._ended.set()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def address(self) -> str:
        assert self.ready is not None, f"{self.name} is not ready"
        return str(self.ready["address"])

    def output(self, last: int = 40) -> str:
        """The last lines the process printed."""
        return "".join(self.lines[-last:])

    async def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for the ``HERD_READY`` line; fail with the output if the process ends first."""
        started = time.monotonic()
        while self.ready is None:
            if not self.alive or time.monotonic() - started > timeout:
                self.kill()
                raise AssertionError(
                    f"{self.name} not ready within {timeout}s (exit {self.popen.poll()}):\n"
                    + self.output()
                )
            await asyncio.sleep(0.01)
        return self.ready

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without deregistering or draining."""
        if self.alive:
            self.popen.kill()

    def terminate(self) -> None:
        """SIGTERM: the graceful path (deregister, drain, exit 0)."""
        if self.alive:
            self.popen.terminate()

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit; its exit code (negative: killed by that signal)."""
        await wait_for(lambda: not self.alive, timeout=timeout, what=f"{self.name} exits")
        code = self.popen.wait()
        _live.discard(self)
        return code

    def reap(self) -> None:
        """Make sure the process is gone: SIGKILL if it still runs, then collect it."""
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10.0)
        self._ended.wait(5.0)
        _live.discard(self)


@atexit.register
def _reap_all() -> None:
    for process in list(_live):
        process.reap()


@dataclasses.dataclass
class Member:
    """One instance of the service in the cluster."""

    id: str
    zone: str
    process: Process


class Cluster:
    """A registry process and instances of one chain service that register with it.

    Use one per test and `await cluster.aclose()` in a finalizer (the `cluster` fixtures do).
    """

    def __init__(self, log_dir: Path, *, service: str = "deep", lease_s: float = 3.0) -> None:
        self.service = service
        self.lease_s = lease_s
        self.log_dir = log_dir
        self.registry_port = free_port()
        self.registry: Process | None = None
        self.members: dict[str, Member] = {}
        self._registry_starts = 0
        self._counter = 0
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._api = herd.driver(
            RegistryApi,
            address=self.registry_address,
            # No breaker: tests read the table while the registry restarts.
            policy=herd.CallPolicy(
                attempts=1, timeout=2.0, breaker=herd.BreakerPolicy(volume_threshold=sys.maxsize)
            ),
        )
        self._closers.append(lambda: herd.aclose(self._api))

    @property
    def registry_address(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    # -- processes --------------------------------------------------------------------------------

    async def start_registry(self) -> Process:
        """Start (or restart) the registry, always on the same port."""
        assert self.registry is None or not self.registry.alive, "the registry is running"
        self._registry_starts += 1
        argv = [sys.executable, "-m", "herd._registry.service"]
        argv += ["--port", str(self.registry_port), "--lease", str(self.lease_s)]
        name = f"registry-{self._registry_starts}"
        self.registry = Process(name, argv, {}, self.log_dir / f"{name}.log")
        await self.registry.wait_ready()
        return self.registry

    async def start_instance(
        self,
        zone: str,
        *,
        fault: str = "",
        wait_up: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> Member:
        """Start one instance in `zone` (with an optional `CHAIN_DEEP_FAULT`); wait until it is
        serving and (by default) listed UP by the registry."""
        self._counter += 1
        instance_id = f"{self.service}-{zone}-{self._counter}"
        env = {
            "HERD_REGISTRY": self.registry_address,
            "HERD_ZONE": zone,
            "HERD_GROUP": GROUP,
            "HERD_VERSION": "v001",
            "HERD_INSTANCE": instance_id,
            FAULT_ENV: fault,
            **(extra_env or {}),
        }
        argv = [sys.executable, "-m", "examples.chain.service", self.service]
        process = Process(instance_id, argv, env, self.log_dir / f"{instance_id}.log")
        member = self.members[instance_id] = Member(instance_id, zone, process)
        await process.wait_ready()
        if wait_up:
            await self.wait_listed([instance_id])
        return member

    async def start(self, count: int = 3, *, faults: dict[str, str] | None = None) -> list[Member]:
        """Start the registry (if needed) and `count` instances spread over zones a, b, c.

        `faults` maps a zone to the fault its instance gets (`hang` or `fail`).
        """
        if self.registry is None:
            await self.start_registry()
        zones = [ZONES[i % len(ZONES)] for i in range(count)]
        faults = faults or {}
        members = await asyncio.gather(
            *(self.start_instance(z, fault=faults.get(z, ""), wait_up=False) for z in zones)
        )
        await self.wait_listed([m.id for m in members])
        return list(members)

    def member(self, zone: str) -> Member:
        """The (first) live instance in `zone`."""
        return next(m for m in self.members.values() if m.zone == zone and m.process.alive)

    # -- what the registry and drivers see -------------------------------------------------------

    async def table(self) -> Snapshot:
        """The registry's table, read directly (raises a `herd.HerdError` if it is down)."""
        with herd.deadline(2.0):
            # Another epoch than the registry's: the watch answers at once.
            return await self._api.watch("", -1)

    async def listed(self) -> dict[str, Instance]:
        """The instances of the service the registry lists UP, by id."""
        snapshot = await self.table()
        return {
            i.id: i
            for i in snapshot.instances
            if i.service == self.service and i.status == Status.UP
        }

    async def wait_listed(
        self, present: Iterable[str] = (), absent: Iterable[str] = (), timeout: float = 10.0
    ) -> float:
        """Wait until the registry lists `present` UP and not `absent`; the seconds it took."""
        present, absent = set(present), set(absent)
        started = time.monotonic()
        while True:
            try:
                ids = set(await self.listed())
            except herd.HerdError:
                ids = None
            if ids is not None and present <= ids and not absent & ids:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"registry lists {ids}, wanted {present} and not {absent} within {timeout}s"
                )
            await asyncio.sleep(0.02)

    def resolver(self) -> RegistryResolver:
        """A new watcher of the registry (its own cached copy), closed with the cluster."""
        resolver = RegistryResolver(self.registry_address)
        self._closers.append(resolver.close)
        return resolver

    def driver(
        self, *, zone: str = "a", policy: herd.CallPolicy | None = None
    ) -> tuple[Deep, RegistryResolver]:
        """A driver of the service in `zone` with its own registry resolver, closed with the
        cluster."""
        resolver = self.resolver()
        deep = herd.driver(Deep, resolver=resolver, zone=zone, policy=policy)
        self._closers.append(lambda: herd.aclose(deep))
        return deep, resolver

    async def wait_seen(
        self,
        resolver: RegistryResolver,
        present: Collection[str] = (),
        absent: Collection[str] = (),
        timeout: float = 10.0,
    ) -> float:
        """Start `resolver` if needed and wait until its copy has `present` UP and not `absent`."""
        await resolver.start()

        def seen() -> bool:
            ids = {i.id for i in resolver.instances(self.service)}
            return set(present) <= ids and not set(absent) & ids

        return await wait_for(
            seen,
            timeout=timeout,
            what=f"driver sees {sorted(present)} and not {sorted(absent)}: "
            f"{sorted(i.id for i in resolver.instances(self.service))}",
        )

    # -- teardown ---------------------------------------------------------------------------------

    def kill_all(self) -> None:
        """SIGKILL and reap every process this cluster started."""
        for member in self.members.values():
            member.process.reap()
        if self.registry is not None:
            self.registry.reap()

    async def aclose(self) -> None:
        """Close drivers and resolvers, then kill every process."""
        try:
            for close in reversed(self._closers):
                with contextlib.suppress(Exception):
                    await close()
        finally:
            self.kill_all()


@dataclasses.dataclass
class Outcome:
    """One call of a `Load`."""

    index: int
    scheduled: float
    started: float
    ended: float
    value: Any = None
    error: BaseException | None = None
    cpu: float = 0.0  # the thread's CPU time over the call: the call's own if it never waited

    @property
    def latency(self) -> float:
        return self.ended - self.started


class Load:
    """Open-loop load: call `call(i)` at `rate` per second, each under its own deadline.

    Calls start on schedule whether or not earlier ones have answered (a generator that waits for
    answers would slow down exactly when the system does, and hide the failure).
    """

    def __init__(
        self, call: Callable[[int], Awaitable[Any]], *, rate: float, deadline: float = 1.0
    ) -> None:
        self.call = call
        self.rate = rate
        self.deadline = deadline
        self.outcomes: list[Outcome] = []
        self.started_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._generator: asyncio.Task[None] | None = None
        self._stop = False

    def start(self, duration: float | None = None) -> Load:
        """Start generating calls for `duration` seconds (None: until `stop`)."""
        self.started_at = time.monotonic()
        self._generator = asyncio.create_task(self._generate(duration))
        return self

    async def _generate(self, duration: float | None) -> None:
        count = None if duration is None else round(self.rate * duration)
        index = 0
        while not self._stop and (count is None or index < count):
            at = self.started_at + index / self.rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(index, at))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            index += 1

    async def _one(self, index: int, scheduled: float) -> None:
        started = time.monotonic()
        cpu = time.thread_time()
        outcome = Outcome(index, scheduled, started, started)
        try:
            with herd.deadline(self.deadline):
                outcome.value = await self.call(index)
        except Exception as exc:
            outcome.error = exc
        outcome.ended = time.monotonic()
        outcome.cpu = time.thread_time() - cpu
        self.outcomes.append(outcome)

    async def until(self, seconds: float) -> None:
        """Wait until the load has run for `seconds` (to act at a point of the schedule)."""
        await asyncio.sleep(max(0.0, self.started_at + seconds - time.monotonic()))

    async def wait(self) -> list[Outcome]:
        """Wait for the schedule to finish and every call to end; the outcomes by index."""
        assert self._generator is not None
        await self._generator
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
        return sorted(self.outcomes, key=lambda o: o.index)

    async def stop(self) -> list[Outcome]:
        """Stop starting calls; wait for those in flight; the outcomes by index."""
        self._stop = True
        return await self.wait()

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]


def describe(errors: list[Outcome], since: float = 0.0, limit: int = 5) -> str:
    """A short account of failed calls for an assertion message (times relative to `since`)."""
    shown = [
        f"#{o.index} at +{o.started - since:.3f}s after {o.latency * 1000:.0f} ms: {o.error!r}"
        for o in errors[:limit]
    ]
    return f"{len(errors)} failed calls: " + "; ".join(shown)
