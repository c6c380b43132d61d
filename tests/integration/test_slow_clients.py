"""Slow and greedy clients cannot hold a herd server: heads and bodies have deadlines, idle
keep-alive connections stay usable, and connections beyond the cap are refused."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

import herd
from herd._wire import http_server
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(60)


class Echo(herd.Interface, name="echo"):
    async def echo(self, text: str) -> str: ...


class EchoService(Echo):
    async def echo(self, text: str) -> str:
        return text


def rpc(text: str, *, body: bytes | None = None, length: int | None = None) -> bytes:
    payload = msgspec.msgpack.encode([text]) if body is None else body
    head = (
        "POST /rpc/echo/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-msgpack\r\n"
        f"Content-Length: {len(payload) if length is None else length}\r\n\r\n"
    )
    return head.encode() + payload


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closes the connection (reading what it sends meanwhile)."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


async def test_a_trickled_head_is_cut_off_and_others_are_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_server, "HEADER_TIMEOUT_S", 0.3)
    async with herd.serve(EchoService()) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /rpc/echo/echo HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        took = await closed_within(reader, 5.0)
        assert 0.3 <= took < 3.0
        writer.close()
        async with herd.driver(Echo, address=server.address) as echo:
            assert await echo.echo("still here") == "still here"


async def test_an_idle_keep_alive_connection_is_not_mistaken_for_a_slow_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_server, "HEADER_TIMEOUT_S", 0.2)
    async with herd.serve(EchoService()) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        for text in ("one", "two"):
            writer.write(rpc(text))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert msgspec.msgpack.decode(await reader.readexactly(length)) == text
            # Idle for longer than the head timeout, between two requests on one connection.
            await asyncio.sleep(0.5)
        writer.close()


async def test_a_body_that_never_comes_is_answered_408_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_server, "BODY_TIMEOUT_S", 0.3)
    async with herd.serve(EchoService(), max_inflight=1) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(rpc("x", body=b"", length=100))
        await writer.drain()
        async with asyncio.timeout(5.0):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), head
        writer.close()
        assert server.inflight == 0
        async with herd.driver(Echo, address=server.address) as echo:
            assert await echo.echo("next") == "next"


async def test_connections_beyond_the_cap_are_refused_and_the_server_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_server, "MAX_CONNECTIONS", 4)
    async with herd.serve(EchoService()) as server:
        held = [await asyncio.open_connection(server.host, server.port) for _ in range(4)]
        await eventually(lambda: server.connections, lambda n: n == 4, what="4 connections")
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(rpc("refused"))
        with pytest.raises(ConnectionError):
            await writer.drain()
            if not await reader.read(1):
                raise ConnectionResetError("closed without an answer")
        writer.close()
        for _, held_writer in held:
            held_writer.close()
            await held_writer.wait_closed()
        await eventually(lambda: server.connections, lambda n: n == 0, what="all closed")
        async with herd.driver(Echo, address=server.address) as echo:
            assert await echo.echo("after") == "after"
