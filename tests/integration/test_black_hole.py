"""A connection that swallows calls and answers nothing (a partition after it was opened) is
given up on: the next call opens a fresh one instead of waiting on it again."""

from __future__ import annotations

import asyncio

import pytest

from herd._wire.frames import PREFACE
from herd._wire.mux_client import SILENT_S, MuxTransport

pytestmark = pytest.mark.timeout(30)


async def test_a_call_given_up_on_a_silent_connection_makes_the_next_call_reconnect() -> None:
    opened: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(writer)
        writer.write(PREFACE)  # a herd server, which then never answers: a black hole
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = MuxTransport("127.0.0.1", port, connect_timeout=0.25, tls=None)
    try:
        for _ in range(2):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(SILENT_S + 0.1):
                    await transport.call("s", "m", b"", {})
        # Each call found the connection before it silent, and opened another.
        assert len(opened) == 2
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # given up before it could call the peer silent
                await transport.call("s", "m", b"", {})
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await transport.call("s", "m", b"", {})
        assert len(opened) == 3  # a short wait alone is no sign: the connection is kept
    finally:
        await transport.close()
        for writer in opened:
            writer.close()
        server.close()
        await server.wait_closed()
