"""Streamed web responses (server-sent events) through the one server pipeline: chunks arrive as
they are yielded, the stream counts in flight until it ends, and it ends at the request's
deadline, at drain, or when the client leaves."""

# mypy: disable-error-code="empty-body"
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import aiohttp

import herd
from herd._wire.protocol import H_DEADLINE
from tests.helpers import eventually


class Ticker(herd.Interface, name="ticker"):
    @herd.method()
    async def ping(self) -> str: ...


class TickerService(Ticker):
    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def ping(self) -> str:
        return "pong"

    async def _ticks(self) -> AsyncGenerator[bytes, None]:
        try:
            for n in range(1_000_000):
                yield f"data: {n}\n\n".encode()
                await asyncio.sleep(0.05)
        finally:
            self.closed.set()

    @herd.route("GET", "/ticks")
    async def ticks(self, request: herd.WebRequest) -> herd.WebResponse:
        return herd.WebResponse.streaming(self._ticks())


async def read_events(answer: aiohttp.ClientResponse, count: int) -> list[str]:
    events = []
    async for line in answer.content:
        if line.startswith(b"data: "):
            events.append(line.decode().strip())
            if len(events) == count:
                break
    return events


async def test_chunks_arrive_as_they_are_yielded_and_the_stream_ends_at_its_deadline() -> None:
    service = TickerService()
    async with herd.serve(service) as server, aiohttp.ClientSession() as session:
        began = time.monotonic()
        headers = {H_DEADLINE: "600"}
        async with session.get(f"http://{server.address}/ticks", headers=headers) as answer:
            assert answer.status == 200
            assert answer.headers["content-type"] == "text/event-stream"
            assert answer.headers["cache-control"] == "no-store"
            assert await read_events(answer, 3) == ["data: 0", "data: 1", "data: 2"]
            assert server.inflight == 1  # the stream is still in flight
            rest = await answer.read()  # ends by itself: the deadline
        took = time.monotonic() - began
        assert 0.5 < took < 5.0, took
        assert rest.count(b"data: ") >= 3
        await asyncio.wait_for(service.closed.wait(), 5)
        assert server.inflight == 0
        assert b'method="GET /ticks",outcome="ok"' in server.metrics.exposition()


async def test_a_client_that_leaves_ends_the_stream() -> None:
    service = TickerService()
    async with herd.serve(service) as server, aiohttp.ClientSession() as session:
        async with session.get(f"http://{server.address}/ticks") as answer:
            await read_events(answer, 2)
        await asyncio.wait_for(service.closed.wait(), 5)
        await eventually(lambda: server.inflight, lambda n: n == 0, what="out of flight")


async def test_drain_ends_open_streams() -> None:
    service = TickerService()
    async with herd.serve(service) as server, aiohttp.ClientSession() as session:
        async with session.get(f"http://{server.address}/ticks") as answer:
            await read_events(answer, 1)
            # The default deadline is 30 s; the drain must not wait for it.
            assert await server.drain(timeout=5.0)
            await answer.read()
        assert service.closed.is_set()
