"""Real processes for integration tests: a registry, instances of a chain service, and load.

`Cluster` starts a registry process on a free port and instances of `examples.chain.service`
(zones a, b, c) that register themselves with it (`HERD_REGISTRY`), waits for their ``HERD_READY``
line and for the registry to list them UP, and kills everything it started when closed; every
child also dies with the test process (`tests.helpers.ServiceProcess`). `Load` is an open-loop
load generator on herd_tools' schedule: calls start at fixed times whatever the answers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import herd
from examples.chain.interface import Deep
from examples.chain.service import FAULT_ENV
from herd._model.clock import MONOTONIC
from herd._model.instance import Instance, Status
from herd._process.registry_api import RegistryApi, Snapshot
from herd._process.registry_client import RegistryResolver
from herd_tools.schedule import Schedule, drive
from tests.helpers import ServiceProcess, eventually, free_port

ZONES = ("a", "b", "c")
GROUP = "deep-v001"


@dataclasses.dataclass
class Member:
    """One instance of the service in the cluster."""

    id: str
    zone: str
    process: ServiceProcess


class Cluster:
    """A registry process and instances of one chain service that register with it.

    Use one per test and `await cluster.aclose()` in a finalizer (the `cluster` fixtures do).
    """

    def __init__(self, log_dir: Path, *, service: str = "deep", lease_s: float = 3.0) -> None:
        self.service = service
        self.lease_s = lease_s
        self.log_dir = log_dir
        self.registry_port = free_port()
        self.registry: ServiceProcess | None = None
        self.members: dict[str, Member] = {}
        self._registry_starts = 0
        self._counter = 0
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._api = herd.driver(
            RegistryApi,
            address=self.registry_address,
            # No breaker: tests read the table while the registry restarts.
            policy=herd.CallPolicy(attempts=1, timeout=2.0, breaker=None),
        )
        self._closers.append(self._api.aclose)

    @property
    def registry_address(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    # -- processes --------------------------------------------------------------------------------

    async def start_registry(self) -> ServiceProcess:
        """Start (or restart) the registry, always on the same port."""
        assert self.registry is None or not self.registry.alive, "the registry is running"
        self._registry_starts += 1
        argv = [sys.executable, "-m", "herd._registry.service"]
        argv += ["--port", str(self.registry_port), "--lease", str(self.lease_s)]
        name = f"registry-{self._registry_starts}"
        self.registry = ServiceProcess(name, argv, self.log_dir / f"{name}.log")
        await asyncio.to_thread(self.registry.wait_ready)
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
        process = ServiceProcess(instance_id, argv, self.log_dir / f"{instance_id}.log", env)
        member = self.members[instance_id] = Member(instance_id, zone, process)
        await asyncio.to_thread(process.wait_ready)
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
    ) -> None:
        """Wait until the registry lists `present` UP and not `absent`."""
        present, absent = set(present), set(absent)

        async def listed_ids() -> set[str] | None:
            try:
                return set(await self.listed())
            except herd.HerdError:
                return None

        await eventually(
            listed_ids,
            lambda ids: ids is not None and present <= ids and not absent & ids,
            timeout=timeout,
            what=f"the registry lists {sorted(present)} and not {sorted(absent)}",
        )

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
        self._closers.append(deep.aclose)
        return deep, resolver

    async def wait_seen(
        self,
        resolver: RegistryResolver,
        present: Collection[str] = (),
        absent: Collection[str] = (),
        timeout: float = 10.0,
    ) -> None:
        """Start `resolver` if needed and wait until its copy has `present` UP and not `absent`."""
        await resolver.start()
        await eventually(
            lambda: {i.id for i in resolver.instances(self.service)},
            lambda ids: set(present) <= ids and not set(absent) & ids,
            timeout=timeout,
            what=f"the driver sees {sorted(present)} and not {sorted(absent)}",
            interval=0.005,
        )

    # -- teardown ---------------------------------------------------------------------------------

    def kill_all(self) -> None:
        """SIGKILL and reap every process this cluster started."""
        processes = [member.process for member in self.members.values()]
        if self.registry is not None:
            processes.append(self.registry)
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()

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
        self._indexes = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._generator: asyncio.Task[None] | None = None

    def start(self, duration: float) -> Load:
        """Start generating calls for `duration` seconds (`stop` ends them sooner)."""
        self.started_at = MONOTONIC.now()
        schedule = Schedule(self.rate, duration)
        self._generator = asyncio.create_task(drive(schedule, self.started_at, self._fire))
        return self

    def _fire(self, scheduled: float) -> None:
        task = asyncio.create_task(self._one(next(self._indexes), scheduled))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        await asyncio.wait({self._generator})
        if not self._generator.cancelled():
            self._generator.result()  # a schedule that failed fails the test
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
        return sorted(self.outcomes, key=lambda o: o.index)

    async def stop(self) -> list[Outcome]:
        """Stop starting calls; wait for those in flight; the outcomes by index."""
        assert self._generator is not None
        self._generator.cancel()
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
