"""`herd up`: run an app on the local cloud until Ctrl-C, SIGTERM or `herd down`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from herd._client.driver import static_driver
from herd._cloud.app import load
from herd._cloud.controller import Controller, state_file
from herd._cloud.interface import CloudApi
from herd._model.errors import ConfigurationError

Ready = Callable[[Controller], Awaitable[None]]


async def up(
    path: str | Path, *, say: Callable[[str], None], on_ready: Ready | None = None
) -> None:
    """Start the app and run until stopped; `on_ready` runs once everything is up."""
    app = load(path)
    controller = Controller(app, say=say)
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


def control() -> CloudApi:
    """A driver of the running local cloud's control API, with its admin token."""
    path = state_file()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        state = None
    if state is None or not _alive(int(state.get("pid", 0))):
        # A control plane killed with SIGKILL leaves its state file behind.
        path.unlink(missing_ok=True)
        raise ConfigurationError("no local cloud is running: start one with `herd up APP`")
    return static_driver(CloudApi, str(state["control"]), token=str(state["token"]))


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
