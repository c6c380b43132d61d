"""`herd up` as a real process, for integration tests that must not collide with anything.

`write_app` copies an app description (`examples/*/app.toml`) into a test directory with free
ports (registry, control API, front door), `root` pointing at this checkout and the run directory
inside the test directory; `Cloud` runs `herd up` on it with its own `HERD_HOME`, waits until every
group is at its desired count and UP, and drives it through the `herd` command or a `CloudApi`
driver. Closing a `Cloud` stops it and SIGKILLs anything it started that is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from herd._client.driver import plain_transport, static_driver
from herd._cloud.app import load
from herd._cloud.interface import CloudApi, GroupView, InstanceView
from herd._cloud.up import port_taken as port_taken
from herd._model.identity import CONTROL
from herd._wire import tls
from tests.helpers import ROOT, ServiceProcess, clean_environment, eventually, free_port

# ------------------------------------------------------------------------------------ app files


def write_app(
    directory: Path,
    example: str,
    *,
    instances: Mapping[str, int] | None = None,
    groups: Iterable[Mapping[str, Any]] = (),
    file: str = "app.toml",
    **settings: Any,
) -> Path:
    """Copy `examples/<example>/<file>` into `directory` with free ports, `root` at this
    checkout and the run directory in `directory`; `instances` overrides counts per service,
    `groups` are added to the example's, and an `env` setting to the example's environment."""
    document = tomllib.loads((ROOT / "examples" / example / file).read_text())
    # `env` adds to the example's environment rather than replacing it.
    settings["env"] = {**document.get("env", {}), **settings.get("env", {})}
    document.update(
        root=str(ROOT),
        run_dir=str(directory / "run"),
        registry_port=free_port(),
        control_port=free_port(),
        **settings,
    )
    for group in document["groups"]:
        if instances and group["service"] in instances:
            group["instances"] = instances[group["service"]]
    document["groups"] += [dict(group) for group in groups]
    if "front_door" in document:
        document["front_door"]["port"] = free_port()
    path = directory / "app.toml"
    path.write_text(tomli_w.dumps(document))
    return path


# ------------------------------------------------------------------------------------- processes


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a pid from a later reuse of it); None if
    no such process runs: gone, or a zombie (dead, only waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class Pids:
    """Processes seen running, to check later that they are gone."""

    def __init__(self, pids: Iterable[int] = ()) -> None:
        self.seen: dict[int, int] = {}
        self.add(pids)

    def add(self, pids: Iterable[int]) -> None:
        for pid in pids:
            started = _start_time(pid)
            if started is not None:
                self.seen.setdefault(pid, started)

    def running(self) -> list[int]:
        """Those still running (the same process, not a new one reusing its pid)."""
        return [pid for pid, started in self.seen.items() if _start_time(pid) == started]

    def kill(self) -> None:
        for pid in self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The direct children of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def herd_command() -> list[str]:
    script = Path(sys.executable).parent / "herd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from herd_tools.cli import main; main()"]


def run_herd(
    *args: str, env: Mapping[str, str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run `herd ARGS` in this checkout with `env`, to its end."""
    return subprocess.run(
        [*herd_command(), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cloud_env(home: Path) -> dict[str, str]:
    """A clean environment for the `herd` command, with its own HERD_HOME and plain, wide
    output."""
    return clean_environment(HERD_HOME=str(home), COLUMNS="200", NO_COLOR="1")


class Cloud:
    """`herd up APP` as a child process, with its own HERD_HOME."""

    def __init__(self, app: Path) -> None:
        self.app = app
        self.home = app.parent / "herd-home"
        self.home.mkdir(exist_ok=True)
        self.env = cloud_env(self.home)
        self.started_at = time.time()  # wall-clock, like the uptimes `herd ps` shows
        self.pids = Pids()  # everything the cloud ran that the tests saw, for the clean-up
        command = [*herd_command(), "up", str(app)]
        self.process = ServiceProcess("herd-up", command, app.parent / "herd-up.log", self.env)

    # -- state

    def state(self) -> dict[str, Any] | None:
        """What `herd up` wrote for the other commands, once it wrote it."""
        try:
            state = json.loads((self.home / "cloud.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return state if state.get("pid") == self.process.pid else None

    def output(self) -> str:
        """What `herd up` printed so far."""
        return self.process.output()

    @property
    def front_door(self) -> str:
        state = self.state()
        assert state is not None and state["front_door"], self.output()
        return str(state["front_door"]).rstrip("/")

    @property
    def registry(self) -> str:
        """The registry's `host:port`."""
        return f"127.0.0.1:{load(self.app).spec.registry_port}"

    def registry_pid(self) -> int | None:
        """The registry process `herd up` runs now, if one runs."""
        for pid in children(self.process.pid):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if b"herd._registry.service" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    @contextlib.asynccontextmanager
    async def api(self) -> AsyncIterator[CloudApi]:
        """A driver of the control API, with the admin token."""
        state = self.state()
        assert state is not None, f"herd up is not serving:\n{self.output()}"
        api = static_driver(
            CloudApi, state["control"], token=state["token"], transport=plain_transport
        )
        try:
            yield api
        finally:
            await api.aclose()

    def tls(self, identity: str = CONTROL) -> ssl.SSLContext:
        """A client context holding one of the cloud's identities: the control plane's, or an
        instance's (by its id), to call as that instance."""
        state = self.state()
        assert state is not None, f"herd up is not serving:\n{self.output()}"
        return tls.client_context(Path(state["tls"]).parent / identity)

    @contextlib.contextmanager
    def identity(self, identity: str = CONTROL) -> Iterator[ssl.SSLContext]:
        """Drivers made inside present `identity` (see `tls`), as the cloud's processes do."""
        context = self.tls(identity)
        previous = tls.set_client_context(context)
        try:
            yield context
        finally:
            tls.set_client_context(previous)

    async def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until `herd up` serves its control API (every group has had a first start)."""

        def serving() -> bool:
            if not self.process.alive:
                raise AssertionError(
                    f"herd up exited ({self.process.returncode}):\n{self.output()}"
                )
            return self.state() is not None

        await eventually(serving, timeout=timeout, what="herd up serves its control API")

    async def wait_up(self, timeout: float = 60.0) -> tuple[list[GroupView], list[InstanceView]]:
        """Wait until `herd up` serves and every group has its desired count, all UP."""
        await self.wait_serving(timeout)
        async with self.api() as api:
            return await settled(api, timeout=timeout, pids=self.pids)

    def start(self, timeout: float = 60.0) -> Cloud:
        """Blocking `wait_up`, for fixtures that run outside an event loop."""
        try:
            asyncio.run(self.wait_up(timeout))
        except BaseException:
            self.close()
            raise
        return self

    # -- the herd command

    def cli(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run `herd ARGS` against this cloud; its output (stdout and stderr)."""
        done = run_herd(*args, env=self.env, timeout=timeout)
        output = done.stdout + done.stderr
        if check:
            assert done.returncode == 0, f"herd {' '.join(args)} -> {done.returncode}\n{output}"
        return output

    # -- the end

    def close(self) -> None:
        """Stop `herd up` (SIGTERM: instances drain), then SIGKILL whatever is left."""
        if self.process.alive:
            self.pids.add(children(self.process.pid))
        self.process.stop(grace_s=20.0)
        self.pids.kill()


def ps_rows(output: str) -> dict[str, list[str]]:
    """`herd ps`'s table rows (groups and instances), as cells keyed by their first cell:
    plain aligned text, cells at least two spaces apart."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) > 1:
            rows[cells[0]] = cells
    return rows


async def settled(
    api: CloudApi, *, timeout: float, pids: Pids | None = None
) -> tuple[list[GroupView], list[InstanceView]]:
    """Wait until every group runs exactly its desired count of instances, all of them UP."""

    async def probe() -> tuple[list[GroupView], list[InstanceView]]:
        groups, instances = await api.groups(), await api.ps()
        if pids is not None:
            pids.add(i.pid for i in instances if i.pid)
        return groups, instances

    def done(seen: tuple[list[GroupView], list[InstanceView]]) -> bool:
        groups, instances = seen
        members = by_group(instances)
        return all(
            len(members.get(g.name, [])) == g.desired
            and all(i.status == "UP" for i in members.get(g.name, []))
            for g in groups
        )

    return await eventually(
        probe, done, timeout=timeout, what="every group at its desired count, UP"
    )


async def replaced(
    cloud: Cloud, victim: InstanceView, before: set[str], started: float
) -> tuple[float, InstanceView]:
    """Wait until the victim's group is back at its count, all UP, without the victim; returns
    the seconds since `started` and the replacement (the one member not in `before`)."""
    async with cloud.api() as api:
        desired = next(g.desired for g in await api.groups() if g.name == victim.group)
        members: list[InstanceView] = []

        async def back() -> bool:
            members[:] = [i for i in await api.ps() if i.group == victim.group]
            return (
                len(members) == desired
                and victim.id not in {m.id for m in members}
                and all(m.status == "UP" for m in members)
            )

        await eventually(back, timeout=15, what=f"{victim.group} back to {desired} UP")
    elapsed = time.monotonic() - started
    cloud.pids.add(m.pid for m in members)
    (new,) = [m for m in members if m.id not in before]
    return elapsed, new


def by_group(instances: Iterable[InstanceView]) -> dict[str, list[InstanceView]]:
    """Instances keyed by group name."""
    grouped: dict[str, list[InstanceView]] = {}
    for view in instances:
        grouped.setdefault(view.group, []).append(view)
    return grouped
