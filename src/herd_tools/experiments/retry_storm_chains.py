"""The retry storm's three chains (edge → middle → deep) as real processes, and how the
experiment reads them: one user's call, and each tier's counters.

`naive` runs `herd_tools.experiments.naive_services` (aiohttp, httpx and tenacity; nothing of
herd), `telescoped` and `herd` run `herd_tools.experiments.chain_services`. Each chain has one
edge, two middles and two deep instances, the first of which hangs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import msgspec

import herd
from herd._cloud.launch.process import Process
from herd_tools.experiments.chain_interface import StormDeep, StormEdge, StormMiddle

_CHAIN = "herd_tools.experiments.chain_services"
_NAIVE = "herd_tools.experiments.naive_services"

Stats = dict[str, int]


def _child_env() -> dict[str, str]:
    # The chain is wired with fixed addresses: no registry, zone or port from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERD_")}
    src = str(Path(herd.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Processes:
    """Starts processes, learns their addresses, and stops them all at the end."""

    def __init__(self, logdir: Path, startup_timeout: float) -> None:
        self.logdir = logdir
        self.startup_timeout = startup_timeout
        self.started: list[Process] = []

    async def spawn(self, name: str, module: str, *args: str) -> str:
        """Start `python -m module args` and wait for its ready line; its address."""
        argv = [sys.executable, "-m", module, *args]
        log = self.logdir / f"{name}.log"
        process = Process(name, argv, {}, Path.cwd(), log, base_env=_child_env())
        self.started.append(process)
        await process.start()
        if not await process.wait_ready(self.startup_timeout):
            if process.alive:
                raise RuntimeError(
                    f"{name} not ready after {self.startup_timeout} s:\n{process.tail(20)}"
                )
            raise RuntimeError(f"{name} exited ({process.returncode}):\n{process.tail(20)}")
        assert process.address is not None
        return process.address

    async def stop_all(self) -> None:
        """SIGTERM every process, SIGKILL those still running 5 s later."""
        await asyncio.gather(*(process.stop(grace_s=5.0) for process in self.started))


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Every middle's and both deep instances' counters at one moment."""

    middles: list[Stats]
    hanging: Stats
    healthy: Stats

    @property
    def middle_sent(self) -> int:
        return sum(m["sent"] for m in self.middles)

    @property
    def middle_running(self) -> int:
        return sum(m["running"] for m in self.middles)

    @property
    def deep_received(self) -> int:
        return self.hanging["received"] + self.healthy["received"]


class Chain(Protocol):
    """One configuration's chain, as the experiment calls and reads it."""

    name: str

    async def user_call(self, item: int) -> tuple[bool, str]:
        """One user request to the edge: (answered, outcome)."""
        ...

    async def middle_stats(self, reset_peak: bool = False) -> list[Stats]: ...

    async def deep_stats(self) -> tuple[Stats, Stats]:
        """The hanging and the healthy deep instance's counters."""
        ...

    async def close(self) -> None: ...


async def snapshot(chain: Chain, reset_peak: bool = False) -> Snapshot:
    """Read every counter of `chain` at once (`reset_peak`: start the middles' peaks anew)."""
    middles, (hanging, healthy) = await asyncio.gather(
        chain.middle_stats(reset_peak), chain.deep_stats()
    )
    return Snapshot(middles, hanging, healthy)


_NEVER_OPEN = herd.BreakerPolicy(volume_threshold=1_000_000_000)


class _HerdChain:
    """The `telescoped` or `herd` chain: herd services, read through herd drivers."""

    def __init__(
        self,
        name: str,
        edge: str,
        middles: Sequence[str],
        hanging: str,
        healthy: str,
        user_timeout: float,
    ) -> None:
        self.name = name
        # The user and the operator call with one attempt and no breaker, so that what they
        # measure is the chain, not their own client.
        user = herd.CallPolicy(
            timeout=user_timeout, attempts=1, max_concurrent=1_000_000, breaker=_NEVER_OPEN
        )
        ops = herd.CallPolicy(timeout=5.0, attempts=1, breaker=_NEVER_OPEN)
        self.user = herd.driver(StormEdge, address=edge, policy=user)
        self.middles = [herd.driver(StormMiddle, address=a, policy=ops) for a in middles]
        self.hanging = herd.driver(StormDeep, address=hanging, policy=ops)
        self.healthy = herd.driver(StormDeep, address=healthy, policy=ops)

    async def user_call(self, item: int) -> tuple[bool, str]:
        try:
            await self.user.handle(item)
        except herd.HerdError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, "ok"

    async def middle_stats(self, reset_peak: bool = False) -> list[Stats]:
        stats = await asyncio.gather(*(m.stats(reset_peak) for m in self.middles))
        return [msgspec.structs.asdict(s) for s in stats]

    async def deep_stats(self) -> tuple[Stats, Stats]:
        hanging, healthy = await asyncio.gather(self.hanging.stats(), self.healthy.stats())
        return msgspec.structs.asdict(hanging), msgspec.structs.asdict(healthy)

    async def close(self) -> None:
        for driver in (self.user, *self.middles, self.hanging, self.healthy):
            await driver.aclose()


class _NaiveChain:
    """The `naive` chain: plain HTTP and JSON, read with httpx."""

    def __init__(
        self, edge: str, middles: Sequence[str], hanging: str, healthy: str, user_timeout: float
    ) -> None:
        import httpx

        self.name = "naive"
        self._httpx = httpx
        self.edge = f"http://{edge}"
        self.middles = [f"http://{a}" for a in middles]
        self.hanging = f"http://{hanging}"
        self.healthy = f"http://{healthy}"
        unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self.user = httpx.AsyncClient(timeout=user_timeout, limits=unlimited)
        self.ops = httpx.AsyncClient(timeout=5.0)

    async def user_call(self, item: int) -> tuple[bool, str]:
        try:
            response = await self.user.post(f"{self.edge}/handle", json={"item": item})
        except self._httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if response.status_code == 200:
            return True, "ok"
        return False, f"HTTP {response.status_code}: {response.text[:200]}"

    async def _stats(self, base: str, reset_peak: bool = False) -> Stats:
        url = f"{base}/stats" + ("?reset_peak=1" if reset_peak else "")
        response = await self.ops.get(url)
        response.raise_for_status()
        data: Stats = response.json()
        return data

    async def middle_stats(self, reset_peak: bool = False) -> list[Stats]:
        return list(await asyncio.gather(*(self._stats(m, reset_peak) for m in self.middles)))

    async def deep_stats(self) -> tuple[Stats, Stats]:
        hanging, healthy = await asyncio.gather(
            self._stats(self.hanging), self._stats(self.healthy)
        )
        return hanging, healthy

    async def close(self) -> None:
        await self.user.aclose()
        await self.ops.aclose()


async def start_chain(name: str, processes: Processes, user_timeout: float) -> Chain:
    """Start configuration `name`'s five processes, deep first, and return its chain."""
    module = _NAIVE if name == "naive" else _CHAIN
    hanging, healthy = await asyncio.gather(
        processes.spawn(f"{name}-deep-hanging", module, "deep", "--hang"),
        processes.spawn(f"{name}-deep-healthy", module, "deep"),
    )
    if name == "naive":
        # The middle calls one deep URL: the hanging instance. It has no notion of another.
        middle_args = ["--deep", f"http://{hanging}"]
    else:
        middle_args = ["--mode", name, "--hanging", hanging, "--healthy", healthy]
    middles = await asyncio.gather(
        *(processes.spawn(f"{name}-middle-{i}", module, "middle", *middle_args) for i in (1, 2))
    )
    scheme = "http://" if name == "naive" else ""
    edge_args = [a for m in middles for a in ("--middle", f"{scheme}{m}")]
    if name != "naive":
        edge_args += ["--mode", name]
    edge = await processes.spawn(f"{name}-edge", module, "edge", *edge_args)
    if name == "naive":
        return _NaiveChain(edge, middles, hanging, healthy, user_timeout)
    return _HerdChain(name, edge, middles, hanging, healthy, user_timeout)


async def drain(chain: Chain, timeout: float) -> bool:
    """Wait until no middle handler is running (abandoned work included); True if it happened."""
    end = time.monotonic() + timeout
    while True:
        if sum(m["running"] for m in await chain.middle_stats()) == 0:
            return True
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.1)
