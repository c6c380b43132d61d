"""Running a service as a process: serve until SIGTERM, then drain in-flight work and exit."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from herd._client.driver import close_all
from herd._interface import Interface
from herd._server.server import Server

READY_PREFIX = "HERD_READY "

Hook = Callable[[Server], Awaitable[None]]


async def serve_until_signalled(
    server: Server,
    *,
    drain_timeout: float = 30.0,
    on_ready: Hook | None = None,
    before_drain: Hook | None = None,
) -> None:
    """Start `server`, announce it, wait for SIGTERM or SIGINT, then drain and close.

    `before_drain` runs first on shutdown (deregistration, so callers stop choosing this
    instance before it refuses anything).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if on_ready is not None:
        await on_ready(server)
    print(
        READY_PREFIX + json.dumps({"service": server.service, "address": server.address}),
        flush=True,
    )
    await stop.wait()
    if before_drain is not None:
        await before_drain(server)
    await server.drain(drain_timeout)
    await server.close()
    await close_all()


def run(impl: Interface, *, drain_timeout: float = 30.0, **server_options: Any) -> None:
    """Serve `impl` in this process until SIGTERM or SIGINT, then drain and exit.

    Prints one line ``HERD_READY {"service": ..., "address": ...}`` once serving, so a parent
    process (or a test) learns the port when `port=0`. `server_options` are `herd.serve`'s.
    """

    async def main() -> None:
        await serve_until_signalled(Server(impl, **server_options), drain_timeout=drain_timeout)

    try:
        uvloop.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
