"""The retry-storm chain built the way most stacks are: aiohttp servers, httpx clients, tenacity.

    python -m herd_tools.experiments.naive_services deep [--hang]
    python -m herd_tools.experiments.naive_services middle --deep URL
    python -m herd_tools.experiments.naive_services edge --middle URL [--middle URL]

Nothing here imports herd. Every hop calls the next with an `httpx.AsyncClient(timeout=2.0)` inside
tenacity's `@retry(stop=stop_after_attempt(3))`: a 2 s timeout and 2 retries, the same settings at
every hop, retrying the same URL. There is no deadline propagation (a hop does not know how long
its caller will wait) and no cancellation: aiohttp's default (`handler_cancellation=False`) keeps
a handler running after its caller hung up, so the middle goes on calling deep for an edge that
has given up. Each process prints `HERD_READY {"address": ...}` once serving, the line the
experiment's process wrapper (herd's) waits for; `GET /stats` reads its counters and
`GET /stats?reset_peak=1` also resets the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from collections.abc import Sequence
from typing import Any

import httpx
from aiohttp import web
from tenacity import retry, stop_after_attempt

READY_PREFIX = "HERD_READY "
TIMEOUT_S = 2.0
ATTEMPTS = 3


class Counters:
    """What the orchestrator reads: the same fields as the herd chain's `Stats`."""

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0
        self.running = 0
        self.peak = 0
        self.succeeded = 0
        self.failed = 0
        self.pool_timeouts = 0
        """Attempts that never left this process: no free connection in httpx's pool (100)."""

    def enter(self) -> None:
        self.received += 1
        self.running += 1
        self.peak = max(self.peak, self.running)

    def leave(self, ok: bool) -> None:
        self.running -= 1
        if ok:
            self.succeeded += 1
        else:
            self.failed += 1

    def snapshot(self, reset_peak: bool) -> dict[str, int]:
        data = dict(vars(self))
        if reset_peak:
            self.peak = self.running
        return data


class Hop:
    """A client for the next hop: the common httpx + tenacity recipe, at the same URL each try."""

    def __init__(self, urls: Sequence[str], counters: Counters) -> None:
        self.urls = list(urls)
        self.counters = counters
        self.client = httpx.AsyncClient(timeout=TIMEOUT_S)

    async def call(self, path: str, payload: dict[str, Any]) -> Any:
        """POST to one instance, picked once per request; the retries go to that same URL."""
        return await self._post(random.choice(self.urls) + path, payload)

    @retry(stop=stop_after_attempt(ATTEMPTS), reraise=True)
    async def _post(self, url: str, payload: dict[str, Any]) -> Any:
        self.counters.sent += 1
        try:
            response = await self.client.post(url, json=payload)
        except httpx.PoolTimeout:
            self.counters.pool_timeouts += 1
            raise
        response.raise_for_status()
        return response.json()


def build(role: str, hang: bool, downstream: Sequence[str]) -> web.Application:
    """The aiohttp application of one role."""
    counters = Counters()
    app = web.Application()
    hop: Hop | None = None
    if role != "deep":
        hop = Hop(downstream, counters)

        async def close_client(app: web.Application) -> None:
            assert hop is not None
            await hop.client.aclose()

        app.on_cleanup.append(close_client)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counters.snapshot("reset_peak" in request.query))

    async def work(request: web.Request) -> web.Response:
        counters.enter()
        ok = False
        try:
            item = int((await request.json())["item"])
            if hang:
                await asyncio.Event().wait()
            ok = True
            return web.json_response({"result": item + 1})
        finally:
            counters.leave(ok)

    async def forward(request: web.Request) -> web.Response:
        counters.enter()
        ok = False
        try:
            payload = await request.json()
            assert hop is not None
            path = "/relay" if role == "edge" else "/work"
            try:
                answer = await hop.call(path, payload)
            except httpx.HTTPError as exc:
                return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=502)
            ok = True
            return web.json_response(answer)
        finally:
            counters.leave(ok)

    app.router.add_get("/stats", stats)
    app.router.add_post("/work", work)
    app.router.add_post("/relay", forward)
    app.router.add_post("/handle", forward)
    return app


async def serve(role: str, hang: bool, downstream: Sequence[str], port: int) -> None:
    """Serve until cancelled (SIGTERM ends the process)."""
    runner = web.AppRunner(build(role, hang, downstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, bound = runner.addresses[0][:2]
    print(READY_PREFIX + json.dumps({"service": role, "address": f"{host}:{bound}"}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one service of the naive chain."""
    parser = argparse.ArgumentParser(prog="python -m herd_tools.experiments.naive_services")
    parser.add_argument("role", choices=["deep", "middle", "edge"])
    parser.add_argument("--hang", action="store_true", help="deep: accept and never answer")
    parser.add_argument("--deep", action="append", default=[], help="middle: deep's base URL")
    parser.add_argument("--middle", action="append", default=[], help="edge: a middle's base URL")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    downstream = args.deep if args.role == "middle" else args.middle
    if args.role != "deep" and not downstream:
        parser.error(f"{args.role} needs a downstream URL")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.role, args.hang, downstream, args.port))


if __name__ == "__main__":
    main()
