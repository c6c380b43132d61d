"""`herd up`: run an app on the local cloud until Ctrl-C, SIGTERM or `herd down`."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from herd._client.driver import plain_transport, static_driver
from herd._cloud.app import App, load, with_network
from herd._cloud.controller import Controller
from herd._cloud.interface import CloudApi
from herd._cloud.launch.etcd import etcd_binary
from herd._cloud.network import isolated
from herd._cloud.regions.api import RegionsApi
from herd._cloud.regions.plane import Regions
from herd._cloud.state import state_file
from herd._model.errors import ConfigurationError
from herd._registry.etcd_cluster import ETCD, local_members

Ready = Callable[[Controller], Awaitable[None]]


async def up(
    path: str | Path | App,
    *,
    say: Callable[[str], None],
    on_ready: Ready | None = None,
    network: str | None = None,
    state: bool = True,
    token: str | None = None,
) -> None:
    """Start the app (its file, or one loaded and changed, as experiments do) and run until
    stopped; `on_ready` runs once everything is up. `network` ("loopback" or "isolated")
    overrides the app file's. An app with regions runs a cloud per region under the global
    control plane (`herd._cloud.regions`; `on_ready` is not called for it); `state` False is
    one region's cloud, which writes no state file and runs beside the global one, with the
    admin `token` that one gave it.

    Raises `ConfigurationError`, having touched nothing, when a local cloud already runs (its
    state file names a live process), a port the app needs is taken, or its registry needs
    what is not installed (the etcd client, or etcd itself).
    """
    app = path if isinstance(path, App) else load(path)
    if network is not None:
        app = with_network(app, network)
    if app.spec.regions:
        await up_regions(app, say=say)
        return
    _refuse_if_running(app, state=state)
    controller = Controller(app, say=say, state=state, token=token)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, controller.stopped.set)
    try:
        await controller.start()
        if on_ready is not None:
            await on_ready(controller)
        await controller.stopped.wait()
    finally:
        say("stopping: instances deregister and drain")
        await controller.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def up_regions(
    path: str | Path | App,
    *,
    say: Callable[[str], None],
    on_ready: Callable[[Regions], Awaitable[None]] | None = None,
) -> None:
    """Start an app with regions (a cloud per region, the global front door and control
    plane) and run until stopped; `on_ready` runs once every region is up. Refuses as `up`
    does."""
    app = path if isinstance(path, App) else load(path)
    _refuse_if_running(app)
    plane = Regions(app, say=say)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, plane.stopped.set)
    try:
        await plane.start()
        say(f"{app.spec.name} is up in regions {', '.join(app.spec.regions)}")
        say(f"  open {plane.door.url} · regions http://{plane.control_address}/")
        if on_ready is not None:
            await on_ready(plane)
        await plane.stopped.wait()
    finally:
        say("stopping: every region drains")
        await plane.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _state() -> dict[str, Any]:
    state = running()
    if state is None:
        # A control plane killed with SIGKILL leaves its state file behind.
        state_file().unlink(missing_ok=True)
        raise ConfigurationError("no local cloud is running: start one with `herd up APP`")
    return state


def control() -> CloudApi:
    """A driver of the running local cloud's control API, with its admin token; in a cloud
    with regions, of the region `HERD_REGION` names (docs/regions.md)."""
    state = _state()
    regions = state.get("regions")
    if regions:
        region = os.environ.get("HERD_REGION", "")
        if region not in regions:
            raise ConfigurationError(
                f"the running cloud has regions ({', '.join(regions)}): name one with"
                " HERD_REGION=REGION for this command"
            )
        state = regions[region]
    return static_driver(
        CloudApi, str(state["control"]), token=str(state["token"]), transport=plain_transport
    )


def regions_control() -> RegionsApi | None:
    """A driver of the running cloud's global control API; None when it has no regions."""
    state = _state()
    if not state.get("regions"):
        return None
    return static_driver(
        RegionsApi, str(state["control"]), token=str(state["token"]), transport=plain_transport
    )


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a socket already listens on `host:port` (as a server binds: with SO_REUSEADDR,
    so connections of a process that just exited do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _refuse_if_running(app: App, *, state: bool = True) -> None:
    """Stop a second `herd up` before it touches anything of the running cloud (`state`
    False: a region's cloud, started by the running global one, checks only its ports)."""
    other = running() if state else None
    if other is not None:
        raise ConfigurationError(
            f"a local cloud is already running: {other.get('app')} (pid {other.get('pid')},"
            f" control API {other.get('control')}); stop it with `herd down` first"
            f" (its state: {state_file()})"
        )
    spec = app.spec
    if spec.network == "isolated":
        isolated.require()
    if spec.regions:
        steering = spec.global_front_door
        assert steering is not None
        ports = [
            ("control API", "control_port", "127.0.0.1", spec.control_port),
            ("global front door", "global_front_door.port", steering.host, steering.port),
        ]
        _refuse_taken(app, ports)
        return
    ports = [
        ("control API", "control_port", "127.0.0.1", spec.control_port),
        ("registry", "registry_port", "127.0.0.1", spec.registry_port),
    ]
    if spec.front_door is not None:
        door = spec.front_door
        ports.append(("front door", "front_door.port", door.host, door.port))
    if spec.registry != "embedded" and importlib.util.find_spec("aetcd") is None:
        raise ConfigurationError(
            f"{app.source}: registry = {spec.registry!r} needs the etcd client:"
            " pip install 'herd[etcd]'"
        )
    if spec.registry == ETCD:
        etcd_binary()  # says which package to install when etcd is missing
        for member in local_members(spec.etcd_port):
            for port in (member.client_port, member.peer_port):
                ports.append((f"etcd member {member.name}", "etcd_port", "127.0.0.1", port))
    _refuse_taken(app, ports)


def _refuse_taken(app: App, ports: list[tuple[str, str, str, int]]) -> None:
    for what, setting, host, port in ports:
        if port_taken(port, host):
            raise ConfigurationError(
                f"port {port} for the {what} is in use (another cloud, or another program):"
                f" stop what holds it, or change {setting} in {app.source}"
            )


def running() -> dict[str, Any] | None:
    """The state of the local cloud that runs now; None if none does."""
    try:
        state = json.loads(state_file().read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    pid = state.get("pid")
    return state if isinstance(pid, int) and _alive(pid) else None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
