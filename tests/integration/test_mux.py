"""herd's frames between a real driver and a real server over loopback sockets: many calls on one
connection, HTTP on the same port, cancel (a caller that gives up stops the handler at once),
drain (a stopping server finishes what it has and takes nothing new), and a lost connection
failing only its own calls."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

import herd
from herd._wire import frames, listener, mux_client, mux_server
from herd._wire.mux_client import MuxTransport
from herd._wire.protocol import H_DEADLINE, ConnectionLost, decode_error, encode
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(60)

ONE_ATTEMPT = herd.CallPolicy(attempts=1, hedge=None)


class Work(herd.Interface, name="work"):
    async def echo(self, text: str) -> str: ...

    async def hold(self, seconds: float) -> str: ...

    @herd.method(idempotent=True)
    async def hold_idempotent(self, seconds: float) -> str: ...


class WorkService(Work):
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.started = 0
        self.cancelled = 0
        self.running = 0

    async def echo(self, text: str) -> str:
        return text

    async def hold(self, seconds: float) -> str:
        self.started += 1
        self.running += 1
        try:
            await asyncio.sleep(seconds * self.scale)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        return "held"

    async def hold_idempotent(self, seconds: float) -> str:
        return await self.hold(seconds)


async def test_many_calls_share_one_connection_and_answers_match_their_calls() -> None:
    async with (
        herd.serve(WorkService()) as server,
        herd.driver(Work, address=server.address) as work,
    ):
        texts = [f"call {i}" for i in range(200)]
        assert await asyncio.gather(*(work.echo(text) for text in texts)) == texts
        assert server.connections == 1


async def test_http_and_frames_share_the_port() -> None:
    async with (
        herd.serve(WorkService()) as server,
        herd.driver(Work, address=server.address) as work,
        aiohttp.ClientSession() as session,
    ):
        assert await work.echo("frames") == "frames"
        async with session.get(f"http://{server.address}/health") as health:
            assert health.status == 200
            assert (await health.json())["ready"] is True
        async with session.post(
            f"http://{server.address}/rpc/work/echo",
            data=encode(["http"]),
            headers={"Content-Type": "application/x-msgpack"},
        ) as answer:
            assert answer.status == 200
        assert await work.echo("still frames") == "still frames"
        assert server.connections == 2


async def test_a_preface_that_arrives_byte_by_byte_is_still_recognised() -> None:
    async with herd.serve(WorkService()) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        for byte in frames.PREFACE:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(frames.call_frame(7, "work", "echo", {H_DEADLINE: "5000"}, encode(["x"])))
        assert await reader.readexactly(len(frames.PREFACE)) == frames.PREFACE
        head = await reader.readexactly(frames.HEADER_SIZE)
        length, kind, call_id = frames.HEADER.unpack(head)
        assert (kind, call_id) == (frames.REPLY, 7)
        assert frames.decode_reply(await reader.readexactly(length)) == (200, encode("x"))
        writer.close()


async def test_a_caller_that_gives_up_cancels_the_handler_at_once() -> None:
    impl = WorkService()
    async with (
        herd.serve(impl) as server,
        herd.driver(Work, address=server.address, policy=ONE_ATTEMPT) as work,
    ):
        # The caller's own deadline (the attempt's expiry) and a plain task cancellation.
        with pytest.raises(herd.DeadlineExceeded), herd.deadline(0.3):
            await work.hold(30.0)
        await eventually(lambda: impl.cancelled, lambda n: n == 1, what="the handler cancelled")
        call = asyncio.create_task(work.hold(30.0))
        await eventually(lambda: impl.running, lambda n: n == 1, what="the handler running")
        started = time.monotonic()
        call.cancel()
        await eventually(lambda: impl.cancelled, lambda n: n == 2, what="the handler cancelled")
        assert time.monotonic() - started < 2.0
        assert server.inflight == 0
        # The connection carried both cancels and still serves.
        assert await work.echo("after") == "after"
        assert server.connections == 1


async def test_a_hedges_losing_attempt_is_cancelled_at_its_server() -> None:
    # One instance holds a hundred times longer: whichever the first attempt picks, the hedge
    # goes to the other, the fast one answers, and the slow one's attempt must stop there.
    slow, fast = WorkService(scale=100.0), WorkService()
    hedge = herd.CallPolicy(hedge=herd.HedgePolicy(delay=0.02))
    async with (
        herd.serve(slow) as slow_server,
        herd.serve(fast) as fast_server,
        herd.driver(Work, address=[slow_server.address, fast_server.address], policy=hedge) as work,
    ):
        for _ in range(3):
            with herd.deadline(10.0):
                assert await work.hold_idempotent(0.2) == "held"
        await eventually(lambda: slow.cancelled, lambda n: n == 3, what="3 cancelled at slow")
        assert slow.running == 0
        assert slow_server.inflight == 0


async def test_a_draining_server_finishes_its_calls_and_takes_nothing_new() -> None:
    impl = WorkService()
    async with (
        herd.serve(impl) as server,
        herd.driver(Work, address=server.address, policy=ONE_ATTEMPT) as work,
    ):
        with herd.deadline(10.0):
            in_flight = asyncio.create_task(work.hold(0.5))
            await eventually(lambda: impl.running, lambda n: n == 1, what="the call running")
            drained = asyncio.create_task(server.drain(10.0))
            caller = work._herd_caller._transports.get(
                next(iter(work._herd_caller.resolver.instances("work")))
            )
            assert isinstance(caller, MuxTransport)
            connection = caller._connection
            assert connection is not None
            await eventually(lambda: connection.usable, lambda usable: not usable, what="drain")
            # A new call goes out on a new connection, and is refused there: retryable.
            with pytest.raises(herd.Overloaded):
                await work.echo("too late")
            assert caller._connection is not connection
            assert await in_flight == "held"
            assert await drained is True
        # The drained connection closed once its last answer was in.
        await eventually(lambda: connection._transport, lambda t: t is None, what="closed")


async def test_a_lost_connection_fails_only_its_own_calls() -> None:
    impl = WorkService()
    async with (
        herd.serve(impl) as server,
        herd.driver(Work, address=server.address, policy=ONE_ATTEMPT) as doomed,
        herd.driver(Work, address=server.address, policy=ONE_ATTEMPT) as spared,
    ):
        with herd.deadline(10.0):
            lost = [asyncio.create_task(doomed.hold(1.0)) for _ in range(3)]
            kept = [asyncio.create_task(spared.hold(1.0)) for _ in range(3)]
            await eventually(lambda: impl.running, lambda n: n == 6, what="6 calls running")
            transport = doomed._herd_caller._transports.get(
                next(iter(doomed._herd_caller.resolver.instances("work")))
            )
            assert isinstance(transport, MuxTransport) and transport._connection is not None
            connection_transport = transport._connection._transport
            assert connection_transport is not None
            connection_transport.abort()
            for call in lost:
                # Not idempotent: the server may have run it, so it is not retried.
                with pytest.raises(herd.Unavailable) as caught:
                    await call
                assert isinstance(caught.value, ConnectionLost)
            assert await asyncio.gather(*kept) == ["held"] * 3
            # The server cancelled the lost connection's handlers; the driver reconnects.
            assert impl.cancelled == 3
            assert await doomed.echo("again") == "again"


async def test_an_idempotent_call_on_a_lost_connection_is_retried() -> None:
    impls = [WorkService(), WorkService()]
    async with (
        herd.serve(impls[0]) as first,
        herd.serve(impls[1]) as second,
        herd.driver(Work, address=[first.address, second.address]) as work,
    ):
        with herd.deadline(10.0):
            call = asyncio.create_task(work.hold_idempotent(0.5))
            await eventually(lambda: impls[0].running + impls[1].running, what="the call running")
            # The instance running it goes away mid-call; the other one answers.
            await (first if impls[0].running else second).close()
            assert await call == "held"
            assert impls[0].cancelled + impls[1].cancelled == 1


async def test_a_server_that_does_not_speak_frames_fails_calls_as_lost() -> None:
    async def http_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    plain = await asyncio.start_server(http_only, "127.0.0.1", 0)
    port = plain.sockets[0].getsockname()[1]
    transport = MuxTransport("127.0.0.1", port, connect_timeout=1.0)
    try:
        with pytest.raises(ConnectionLost, match="does not speak"):
            async with asyncio.timeout(5.0):
                await transport.call("work", "echo", encode(["x"]), {})
    finally:
        await transport.close()
        plain.close()


async def test_idle_connections_close_on_both_sides_and_calls_reconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mux_server, "IDLE_S", 0.2)
    async with (
        herd.serve(WorkService()) as server,
        herd.driver(Work, address=server.address) as work,
    ):
        assert await work.echo("one") == "one"
        await eventually(lambda: server.connections, lambda n: n == 0, what="idle closed")
        assert await work.echo("two") == "two"
    monkeypatch.setattr(mux_client, "IDLE_S", 0.2)
    async with herd.serve(WorkService()) as server:
        transport = MuxTransport(server.host, server.port, connect_timeout=1.0)
        try:
            assert (await transport.call("work", "echo", encode(["x"]), {}))[0] == 200
            await eventually(lambda: server.connections, lambda n: n == 0, what="closed")
        finally:
            await transport.close()


async def test_a_slow_preface_and_a_stalled_frame_are_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listener.http_server, "HEADER_TIMEOUT_S", 0.2)
    monkeypatch.setattr(mux_server, "FRAME_TIMEOUT_S", 0.2)
    async with herd.serve(WorkService()) as server:
        for opening in (frames.PREFACE[:4], frames.PREFACE + frames.HEADER.pack(100, 1, 1)):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(opening)
            started = time.monotonic()
            async with asyncio.timeout(5.0):
                while await reader.read(1024):
                    pass
            assert time.monotonic() - started < 3.0
            writer.close()
        await eventually(lambda: server.connections, lambda n: n == 0, what="all closed")


async def test_the_connection_cap_counts_frame_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listener.http_server, "MAX_CONNECTIONS", 2)
    async with herd.serve(WorkService()) as server:
        transports = [MuxTransport(server.host, server.port, connect_timeout=1.0) for _ in "abc"]
        try:
            for transport in transports[:2]:
                assert (await transport.call("work", "echo", encode(["x"]), {}))[0] == 200
            # Refused at once: as a lost connection, or as a failed connect if the refusal came
            # before the call was written.
            with pytest.raises(herd.Unavailable):
                await transports[2].call("work", "echo", encode(["x"]), {})
        finally:
            for transport in transports:
                await transport.close()


async def test_a_call_frame_over_the_size_limit_is_answered_too_large() -> None:
    async with herd.serve(WorkService(), max_body=1024) as server:
        transport = MuxTransport(server.host, server.port, connect_timeout=1.0)
        try:
            big = encode(["x" * (mux_server.HEAD_ROOM + 2048)])
            status, body = await transport.call("work", "echo", big, {})
            assert (status, decode_error(body).kind) == (413, "too_large")
            status, body = await transport.call("work", "echo", encode(["y" * 2000]), {})
            assert (status, decode_error(body).kind) == (413, "too_large")
            # The connection survived both: the skipped payload did not desynchronise it.
            assert await transport.call("work", "echo", encode(["ok"]), {}) == (200, encode("ok"))
            assert server.connections == 1
        finally:
            await transport.close()
