"""Running a service as a process: serve until SIGTERM, then drain in-flight work and exit.

With `HERD_REGISTRY` set, the instance registers itself (identity from the `HERD_*` variables the
local cloud sets), renews its lease, and on SIGTERM deregisters *before* it drains, so callers
stop choosing it while it still answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from herd._cache.metrics import CACHE_METRICS
from herd._client.driver import close_all
from herd._client.metrics import CLIENT_METRICS
from herd._model.instance import Status
from herd._model.interface import Interface
from herd._process import identity
from herd._process.config import settings
from herd._process.logging import configure as configure_logging
from herd._process.registry_client import Registrar, instance_from_env
from herd._server.server import Server
from herd._trace.setup import process_provider

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
    await server.impl.astart()
    if on_ready is not None:
        await on_ready(server)
    ready = {"service": server.service, "address": server.address, "pid": os.getpid()}
    print(READY_PREFIX + json.dumps(ready), flush=True)
    await stop.wait()
    if before_drain is not None:
        await before_drain(server)
    await server.drain(drain_timeout)
    await server.close()
    await server.impl.aclose()
    await close_all()


async def serve_registered(
    server: Server, *, drain_timeout: float = 30.0, grace_s: float = 0.5
) -> None:
    """`serve_until_signalled`, registering the instance when `HERD_REGISTRY` is set.

    On shutdown the instance deregisters, keeps serving for `grace_s` while callers' copies of
    the registry catch up, then drains.
    """
    address = settings().registry
    registrar: Registrar | None = None

    async def ready(server: Server) -> None:
        nonlocal registrar
        if address:
            registrar = Registrar(
                address, instance_from_env(server.service, server.host, server.port)
            )
            await registrar.start(Status.UP)

    async def leaving(server: Server) -> None:
        if registrar is not None:
            await registrar.stop()
            await asyncio.sleep(grace_s)

    await serve_until_signalled(
        server, drain_timeout=drain_timeout, on_ready=ready, before_drain=leaving
    )


def serve(impl: Interface, **options: Any) -> Server:
    """A server for an implementation of an interface; start it with ``async with``.

    Options: `host` (default loopback), `port` (default any free port), `max_inflight` (shed
    load above it with an overload answer), `limit` (`adaptive_priority`, the default: an
    adaptive limit under `max_inflight` that sheds the least critical first; `adaptive`,
    `fixed` or `none`), `max_queued` (requests that may wait for a place), `max_body` (bytes,
    default 1 MiB),
    `default_timeout` (for requests that carry no deadline), `max_timeout` (the most a caller's
    deadline may ask for), `admin_token` (for methods declared `admin=True` and the injected
    faults at `/herd/faults`, beside the control plane's identity), `tls` (an
    `ssl.SSLContext`: callers must prove an identity) and `allow` (the services that may call,
    with `tls`). Its `/metrics` and `/herd/dependencies` include what this process's drivers
    see (`herd.client_metrics`); its `/metrics` also what its caches see (`herd.cache_metrics`).
    """
    options.setdefault("collectors", [CLIENT_METRICS, CACHE_METRICS])
    options.setdefault("dependencies", CLIENT_METRICS.report)
    return Server(impl, **options)


def trace_process(service: str) -> None:
    """Record this process's spans, named after its instance (`HERD_*`), for the control plane
    and any `OTEL_*` exporter."""
    me = instance_from_env(service, "", 0)
    attributes = {
        "service.name": service,
        "service.instance.id": me.id,
        "service.version": me.version,
        "herd.zone": me.zone,
        "herd.group": me.group,
    }
    process_provider(attributes, share=settings().trace_share)


def run(impl: Interface, *, drain_timeout: float = 30.0, **server_options: Any) -> None:
    """Serve `impl` in this process until SIGTERM or SIGINT, then drain and exit.

    Prints one line ``HERD_READY {"service": ..., "address": ..., "pid": ...}`` once serving, so a
    parent process (or a test) learns the port when `port=0`. `server_options` are
    `serve`'s; `port` and `host` default to `HERD_PORT` and `HERD_HOST` (else any free port
    on loopback), `tls` to the identity in `HERD_TLS_DIR`, `allow` to `HERD_ALLOW`, `limit`
    and `max_inflight` to `HERD_LIMIT` and `HERD_MAX_INFLIGHT`. With
    `HERD_REGISTRY` set, the instance registers itself.
    """
    configure_logging()
    env = settings()
    server_options.setdefault("port", env.port)
    server_options.setdefault("host", env.host)
    server_options.setdefault("tls", identity.server_context())
    server_options.setdefault("allow", env.allow)
    server_options.setdefault("limit", env.limit)
    server_options.setdefault("max_inflight", env.max_inflight)

    async def main() -> None:
        server = serve(impl, **server_options)
        trace_process(server.service)
        await serve_registered(server, drain_timeout=drain_timeout)

    try:
        uvloop.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
