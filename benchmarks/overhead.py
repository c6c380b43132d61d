"""Overhead of one trivial RPC: herd side by side with raw aiohttp, FastAPI, grpcio and the limit.

The same method (echo a small msgspec struct) is served and called many ways, client and server in
separate processes, at 1 and 32 calls in flight:

    python benchmarks/overhead.py                  # full run, ~3 minutes on 2 cores
    python benchmarks/overhead.py --quick          # ~1 minute
    python benchmarks/overhead.py --only herd,aiohttp --json /tmp/overhead.json
    python benchmarks/overhead.py --rounds 7 --only herd,herd_secure   # the cost of identity
    python benchmarks/overhead.py --only herd,herd_full --baseline ../main/src   # A/B in one run
    python benchmarks/overhead.py --rounds 7 --only herd,herd_fixed    # the adaptive limit's

Each round starts, for every variant in turn (the order rotates between rounds, so drift on a
noisy machine spreads over all variants), a server process and a client process. The client warms
up, then runs each concurrency for a fixed duration, timing every call and reading the CPU time of
both processes (its own through `time.process_time`, the server's from /proc). The report is the
median over rounds of each figure. Adding a variant is one function decorated with `@variant`.

This module deliberately does not use ``from __future__ import annotations``: FastAPI resolves a
handler's annotations against the module's globals, and the variants define their models locally
so that each process imports only its own stack.
"""

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgspec
import uvloop

HOST = "127.0.0.1"
CONCURRENCIES = (1, 32)
DEFAULT_JSON = Path(__file__).parent / "results" / "overhead.json"
MSGPACK = "application/x-msgpack"
JSON = "application/json"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Item(msgspec.Struct):
    """What every variant echoes."""

    name: str
    n: int
    tags: list[str]


ITEM = Item(name="benchmark", n=42, tags=["alpha", "beta", "gamma"])

Call = Callable[[Item], Awaitable[Item]]
"""One call of the echo method through a variant's client."""

Ready = Callable[[int], None]
"""What a server calls once it listens, with its port."""


@dataclass(frozen=True)
class Variant:
    """One way to serve and to call the echo method."""

    serve: Callable[[int, Ready], Awaitable[None]]
    """Listen on loopback at the port (0: any), call `ready(port)`, then serve until killed."""
    connect: Callable[[int], contextlib.AbstractAsyncContextManager[Call]]
    """A client of the server at the port, as a context manager yielding the call."""


VariantFactory = Callable[[], Variant]
VARIANTS: dict[str, VariantFactory] = {}


def variant(name: str) -> Callable[[VariantFactory], VariantFactory]:
    """Register a variant under `name`; the factory's docstring describes it in the report.

    Factories import their own stack, so a process loads only the libraries of its variant.
    """

    def register(factory: VariantFactory) -> VariantFactory:
        VARIANTS[name] = factory
        return factory

    return register


def describe(name: str) -> str:
    """The first line of a variant's docstring."""
    return (VARIANTS[name].__doc__ or name).strip().splitlines()[0]


async def _forever() -> None:
    """Wait until cancelled (or until the process is killed)."""
    await asyncio.get_running_loop().create_future()


_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_encode = _msgpack_encoder.encode
_msgpack_decode = msgspec.msgpack.Decoder(Item).decode
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder(Item).decode


@contextlib.asynccontextmanager
async def _aiohttp_client(
    port: int,
    content_type: str,
    encode: Callable[[Item], bytes],
    decode: Callable[[bytes], Item],
) -> AsyncIterator[Call]:
    """An aiohttp client POSTing to /echo over keep-alive connections, no pool limit."""
    import aiohttp
    from yarl import URL

    url = URL.build(scheme="http", host=HOST, port=port, path="/echo")
    headers = {"Content-Type": content_type}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def call(item: Item) -> Item:
            async with session.post(url, data=encode(item), headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"echo answered {response.status}")
                return decode(await response.read())

        yield call


@variant("herd")
def _herd() -> Variant:
    """herd: herd.serve and herd.driver with a static address (herd's frames, msgpack)."""
    return _herd_driver(None)


@variant("herd_http")
def _herd_http() -> Variant:
    """herd over its previous wire: the same driver and server, calls over HTTP/1.1 (aiohttp)."""
    from herd._client.driver import http_transport

    return _herd_driver(http_transport)


@variant("herd_traced")
def _herd_traced() -> Variant:
    """herd with tracing set up as `herd.run` does, default sampling (no collector)."""
    return _herd_driver(None, trace_share=None, traced=True)


@variant("herd_traced_all")
def _herd_traced_all() -> Variant:
    """herd with tracing set up as `herd.run` does, every call recorded (100 % sampling)."""
    return _herd_driver(None, trace_share=1.0, traced=True)


@variant("herd_fixed")
def _herd_fixed() -> Variant:
    """herd with the fixed in-flight cap alone (`limit="fixed"`): `herd` beside it is what the
    adaptive limit and its queue cost when nothing is overloaded (docs/overload.md)."""
    return _herd_driver(None, limit="fixed")


def _herd_driver(
    transport: Any, trace_share: float | None = None, *, traced: bool = False, **server_options: Any
) -> Variant:
    """herd.serve (with `server_options`), and a driver with a static address over `transport`
    (None: the default); `traced`, both processes trace as an instance of the local cloud
    does, a new trace for `trace_share` of the calls (None: the default)."""
    import herd
    from herd._client.driver import static_driver

    bench_interface, service = _bench_interface()

    def trace(side: str) -> None:
        if traced:
            from herd._trace.setup import process_provider

            process_provider({"service.name": f"bench-{side}"}, share=trace_share)

    async def serve(port: int, ready: Ready) -> None:
        trace("server")
        async with herd.serve(service(), host=HOST, port=port, **server_options) as server:
            ready(server.port)
            await _forever()

    @contextlib.asynccontextmanager
    async def connect(port: int) -> AsyncIterator[Call]:
        # A generous deadline for calls made without one: a stall of the (shared, noisy) machine
        # must not fail the run. The per-call work is the same whatever the timeout.
        policy = herd.CallPolicy(timeout=10.0)
        trace("client")
        options = {} if transport is None else {"transport": transport}
        bench = static_driver(bench_interface, f"{HOST}:{port}", policy=policy, **options)
        try:
            yield bench.echo
        finally:
            await bench.aclose()

    return Variant(serve, connect)


@variant("herd_secure")
def _herd_secure() -> Variant:
    """herd with identities: `herd` over mutual TLS, certificates from a local authority."""
    import shutil
    import tempfile

    import herd
    from herd._cloud.launch.ca import CertificateAuthority
    from herd._model.identity import Identity
    from herd._wire import tls

    bench_interface, service = _bench_interface()

    def published(port: int) -> Path:
        """Where the server leaves the client's identity, by its port."""
        return Path(tempfile.gettempdir()) / f"herd-bench-tls-{port}"

    async def serve(port: int, ready: Ready) -> None:
        # The server process makes the authority and both identities, then publishes the
        # client's under its port: the client process finds it there.
        authority = CertificateAuthority("bench")
        made = Path(tempfile.mkdtemp(prefix="herd-bench-tls-"))
        own = authority.write(Identity("bench", "bench", "bench-v001", "bench-1"), made / "server")
        authority.write(Identity("bench", "caller", "caller-v001", "caller-1"), made / "client")
        context = tls.server_context(own)
        async with herd.serve(service(), host=HOST, port=port, tls=context) as server:
            shutil.rmtree(published(server.port), ignore_errors=True)
            await asyncio.to_thread(made.rename, published(server.port))
            ready(server.port)
            await _forever()

    @contextlib.asynccontextmanager
    async def connect(port: int) -> AsyncIterator[Call]:
        tls.set_client_context(tls.client_context(published(port) / "client"))
        policy = herd.CallPolicy(timeout=10.0)
        bench = herd.driver(bench_interface, address=f"{HOST}:{port}", policy=policy)
        try:
            yield bench.echo
        finally:
            await bench.aclose()
            shutil.rmtree(published(port), ignore_errors=True)

    return Variant(serve, connect)


def _bench_interface() -> tuple[type[Any], type[Any]]:
    """The echo interface and its implementation, declared once per process."""
    import herd

    class Bench(herd.Interface, name="bench"):
        @herd.method(idempotent=True)
        async def echo(self, item: Item) -> Item: ...

    class BenchService(Bench):
        async def echo(self, item: Item) -> Item:
            return item

    return Bench, BenchService


@variant("herd_wire")
def _herd_wire() -> Variant:
    """herd's wire alone: its transport (frames) and codec with no call path (the bare driver)."""
    import herd
    from herd._wire.mux_client import MuxTransport
    from herd._wire.protocol import H_DEADLINE

    _, service = _bench_interface()

    async def serve(port: int, ready: Ready) -> None:
        async with herd.serve(service(), host=HOST, port=port) as server:
            ready(server.port)
            await _forever()

    @contextlib.asynccontextmanager
    async def connect(port: int) -> AsyncIterator[Call]:
        transport = MuxTransport(HOST, port, connect_timeout=0.25)

        async def call(item: Item) -> Item:
            status, body = await transport.call(
                "bench", "echo", _msgpack_encode((item,)), {H_DEADLINE: "10000"}
            )
            assert status == 200
            return _msgpack_decode(body)

        try:
            yield call
        finally:
            await transport.close()

    return Variant(serve, connect)


@variant("herd_full")
def _herd_full() -> Variant:
    """herd's full call path: instances from a registry, balancer, breaker, budget, metrics."""
    return _herd_registered(1)


@variant("herd_hedge")
def _herd_hedge() -> Variant:
    """herd_full over two instances: balancing between them and hedges at the recent p95."""
    return _herd_registered(2)


def _herd_registered(instances: int) -> Variant:
    """`instances` servers of the echo in one process, found by the driver through a registry.

    With two or more, every call is balanced (P2C) and the idempotent echo is hedged once its
    first attempt is slower than the recent p95 (herd's default `HedgePolicy`): about one call
    in twenty pays a second attempt, which is what hedging costs.
    """
    import logging

    import structlog

    import herd
    from herd._model.instance import Status
    from herd._process.registry_client import Registrar, RegistryResolver, instance_from_env
    from herd._registry.service import RegistryService

    bench, service = _bench_interface()

    async def serve(port: int, ready: Ready) -> None:
        # The registry logs to stdout, where the parent reads the port: keep it to warnings.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        # The announced port is the registry's: the client finds the instances through it.
        registry = RegistryService(identities=False)
        registry.start_evicting()
        async with contextlib.AsyncExitStack() as stack:
            registry_server = await stack.enter_async_context(
                herd.serve(registry, host=HOST, port=port)
            )
            for _ in range(instances):
                server = await stack.enter_async_context(herd.serve(service(), host=HOST))
                instance = instance_from_env("bench", HOST, server.port)
                # One id per server: the registry keeps one entry per id.
                instance = msgspec.structs.replace(instance, id=f"bench-{server.port}")
                registrar = Registrar(registry_server.address, instance)
                await registrar.start(Status.UP)
            ready(registry_server.port)
            await _forever()

    @contextlib.asynccontextmanager
    async def connect(port: int) -> AsyncIterator[Call]:
        policy = herd.CallPolicy(timeout=10.0)
        resolver = RegistryResolver(f"{HOST}:{port}")
        driver = herd.driver(bench, resolver=resolver, policy=policy)
        try:
            # The first call starts following the registry; calls go on until it lists all.
            for _ in range(10_000):
                await driver.echo(ITEM)
                if len(resolver.instances("bench")) >= instances:
                    break
            yield driver.echo
        finally:
            await driver.aclose()

    return Variant(serve, connect)


@variant("aiohttp")
def _aiohttp() -> Variant:
    """raw aiohttp: a web.Application route and a ClientSession (HTTP/1.1, msgpack)."""
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        item = _msgpack_decode(await request.read())
        return web.Response(body=_msgpack_encode(item), content_type=MSGPACK)

    async def serve(port: int, ready: Ready) -> None:
        app = web.Application()
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        ready(int(runner.addresses[0][1]))
        await _forever()

    def connect(port: int) -> contextlib.AbstractAsyncContextManager[Call]:
        return _aiohttp_client(port, MSGPACK, _msgpack_encode, _msgpack_decode)

    return Variant(serve, connect)


async def _serve_fastapi(port: int, ready: Ready) -> None:
    """FastAPI as its users write it (a pydantic model, JSON), on uvicorn in this uvloop."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    class ItemModel(BaseModel):
        name: str
        n: int
        tags: list[str]

    app = FastAPI()

    @app.post("/echo")
    async def echo(item: ItemModel) -> ItemModel:
        return item

    # http="auto": httptools when installed (as with `uvicorn[standard]`), else h11.
    config = uvicorn.Config(app, http="auto", lifespan="off", access_log=False, log_level="error")
    listener = socket.create_server((HOST, port))
    ready(listener.getsockname()[1])
    await uvicorn.Server(config).serve(sockets=[listener])


@variant("fastapi_httpx")
def _fastapi_httpx() -> Variant:
    """FastAPI on uvicorn, httpx.AsyncClient (HTTP/1.1, JSON)."""
    import httpx

    @contextlib.asynccontextmanager
    async def connect(port: int) -> AsyncIterator[Call]:
        # Enough keep-alive connections for every call in flight, so none is reopened.
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        headers = {"Content-Type": JSON}
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", limits=limits) as client:

            async def call(item: Item) -> Item:
                response = await client.post("/echo", content=_json_encode(item), headers=headers)
                response.raise_for_status()
                return _json_decode(response.content)

            yield call

    return Variant(_serve_fastapi, connect)


@variant("fastapi_aiohttp")
def _fastapi_aiohttp() -> Variant:
    """FastAPI on uvicorn, aiohttp ClientSession (HTTP/1.1, JSON)."""

    def connect(port: int) -> contextlib.AbstractAsyncContextManager[Call]:
        return _aiohttp_client(port, JSON, _json_encode, _json_decode)

    return Variant(_serve_fastapi, connect)


@variant("grpc")
def _grpc() -> Variant:
    """grpcio asyncio: unary calls, generic handlers, msgpack-serialized messages."""
    import grpc

    path = "/bench.Bench/Echo"

    async def echo(request: Item, context: Any) -> Item:
        return request

    async def serve(port: int, ready: Ready) -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=_msgpack_decode, response_serializer=_msgpack_encode
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bench.Bench", {"Echo": handler}),)
        )
        bound = server.add_insecure_port(f"{HOST}:{port}")
        await server.start()
        ready(bound)
        await server.wait_for_termination()

    @contextlib.asynccontextmanager
    async def connect(port: int) -> AsyncIterator[Call]:
        async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
            yield channel.unary_unary(
                path, request_serializer=_msgpack_encode, response_deserializer=_msgpack_decode
            )

    return Variant(serve, connect)


def _frame(item: Item) -> bytearray:
    """A length-prefixed msgpack message: 4 bytes big-endian length, then the body."""
    out = bytearray(4)
    _msgpack_encoder.encode_into(item, out, 4)
    out[:4] = (len(out) - 4).to_bytes(4, "big")
    return out


def _split_frames(buffer: bytearray) -> list[bytearray]:
    """Remove the complete frames at the start of `buffer` and return their bodies."""
    bodies: list[bytearray] = []
    pos = 0
    while len(buffer) - pos >= 4:
        end = pos + 4 + int.from_bytes(buffer[pos : pos + 4], "big")
        if len(buffer) < end:
            break
        bodies.append(buffer[pos + 4 : end])
        pos = end
    del buffer[:pos]
    return bodies


class _FrameServer(asyncio.Protocol):
    """Answers each frame with the echo; the answers to one read go out in one write."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        answers = [_frame(_msgpack_decode(body)) for body in _split_frames(self._buffer)]
        if answers and self._transport is not None:
            self._transport.write(b"".join(answers))


class _FrameClient(asyncio.Protocol):
    """One connection carrying every call; the server answers in order, so a FIFO matches."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiting: deque[asyncio.Future[Item]] = deque()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        for body in _split_frames(self._buffer):
            self._waiting.popleft().set_result(_msgpack_decode(body))

    def connection_lost(self, exc: Exception | None) -> None:
        while self._waiting:
            self._waiting.popleft().set_exception(exc or ConnectionResetError("closed"))

    async def call(self, item: Item) -> Item:
        """Send one frame and wait for its answer."""
        assert self._transport is not None
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        self._transport.write(_frame(item))
        return await answer

    def close(self) -> None:
        """Close the connection."""
        if self._transport is not None:
            self._transport.close()


@variant("limit")
def _limit() -> Variant:
    """the limit: a raw asyncio Protocol on uvloop, length-prefixed msgpack, no HTTP."""

    async def serve(port: int, ready: Ready) -> None:
        server = await asyncio.get_running_loop().create_server(_FrameServer, HOST, port)
        ready(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    @contextlib.asynccontextmanager
    async def connect(port: int) -> AsyncIterator[Call]:
        _, client = await asyncio.get_running_loop().create_connection(_FrameClient, HOST, port)
        try:
            yield client.call
        finally:
            client.close()

    return Variant(serve, connect)


# --- measuring, in the client process --------------------------------------------------------


class Cell(msgspec.Struct):
    """One variant at one concurrency: the figures of one round, or the medians over rounds."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_s_per_1000: float
    client_cpu_s_per_1000: float
    server_cpu_s_per_1000: float
    calls: int


def _proc_cpu(pid: int) -> float:
    """User plus system CPU seconds of a process, all threads, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def measure(call: Call, concurrency: int, duration: float, server_pid: int) -> Cell:
    """Keep `concurrency` calls in flight for `duration` seconds; time each, count CPU."""
    # Here, not at the top (see the docstring), and before the clocks start: importing herd
    # costs CPU time that must not count against the variant measured.
    from herd._model.stats import percentile

    latencies: list[int] = []
    clock = time.perf_counter_ns
    server_cpu = _proc_cpu(server_pid)
    client_cpu = time.process_time()
    started = clock()
    end = started + int(duration * 1e9)

    async def worker() -> None:
        record = latencies.append
        while (sent := clock()) < end:
            await call(ITEM)
            record(clock() - sent)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = (clock() - started) / 1e9
    client_cpu = time.process_time() - client_cpu
    server_cpu = _proc_cpu(server_pid) - server_cpu
    latencies.sort()
    calls = len(latencies)

    def percentile_ms(fraction: float) -> float:
        return percentile(latencies, fraction) / 1e6

    per_1000 = 1000 / calls
    return Cell(
        rps=calls / elapsed,
        p50_ms=percentile_ms(0.50),
        p99_ms=percentile_ms(0.99),
        cpu_s_per_1000=(client_cpu + server_cpu) * per_1000,
        client_cpu_s_per_1000=client_cpu * per_1000,
        server_cpu_s_per_1000=server_cpu * per_1000,
        calls=calls,
    )


async def run_client(
    kind: str, port: int, server_pid: int, duration: float, warmup: float
) -> dict[int, Cell]:
    """Check the echo, warm up at the highest concurrency, then measure each concurrency."""
    async with VARIANTS[kind]().connect(port) as call:
        answer = await call(ITEM)
        if answer != ITEM:
            raise RuntimeError(f"{kind} echoed {answer!r}, not {ITEM!r}")
        await measure(call, max(CONCURRENCIES), warmup, server_pid)
        return {c: await measure(call, c, duration, server_pid) for c in CONCURRENCIES}


async def run_server(kind: str, port: int) -> None:
    """Serve a variant, printing the bound port on its own line once listening."""
    await VARIANTS[kind]().serve(port, lambda bound: print(bound, flush=True))


# --- orchestrating, in the parent process ----------------------------------------------------


#: `--baseline DIR`: the `src` of another checkout, which variants named `KIND@base` import herd
#: from, so that one run compares the code before a change with the code after it.
BASELINE_TAG = "@base"
_baseline: Path | None = None


def _round(kind: str, duration: float, warmup: float) -> dict[int, Cell]:
    """One round of one variant: a fresh server process and a fresh client process."""
    me = [sys.executable, __file__]
    env = None
    if kind.endswith(BASELINE_TAG):
        assert _baseline is not None
        kind = kind.removesuffix(BASELINE_TAG)
        env = {**os.environ, "PYTHONPATH": str(_baseline)}
    server = subprocess.Popen([*me, "--serve", kind], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{kind} server did not start (said {line!r})")
        client = subprocess.run(
            [
                *me,
                "--client",
                kind,
                "--port",
                line.strip(),
                "--server-pid",
                str(server.pid),
                "--duration",
                str(duration),
                "--warmup",
                str(warmup),
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            timeout=warmup + len(CONCURRENCIES) * duration + 60,
            env=env,
        )
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return msgspec.json.decode(client.stdout.strip().splitlines()[-1], type=dict[int, Cell])


def _median(cells: list[Cell]) -> Cell:
    """The median of each figure over rounds, figure by figure."""
    figures = {
        field: statistics.median(getattr(cell, field) for cell in cells)
        for field in Cell.__struct_fields__
    }
    figures["calls"] = int(figures["calls"])
    return Cell(**figures)


def _rounded(value: float) -> float:
    """Four decimals below 1, two above: enough for a report."""
    return round(value, 4 if abs(value) < 1 else 2)


def _cell_json(cell: Cell, rounds: list[Cell]) -> dict[str, Any]:
    """A cell of the report: the medians, and calls/s of each round to show the spread."""
    figures: dict[str, Any] = {f: _rounded(getattr(cell, f)) for f in Cell.__struct_fields__}
    figures["calls"] = cell.calls
    figures["rps_rounds"] = [round(r.rps) for r in rounds]
    return figures


def ratios(medians: dict[str, dict[int, Cell]]) -> dict[str, dict[str, dict[str, float]]]:
    """herd's medians over each other variant's.

    calls/s above 1: herd is faster; p50 and CPU per call above 1: herd is slower, dearer.
    """
    if "herd" not in medians:
        return {}
    herd = medians["herd"]
    return (
        {
            f"herd/{other}": {
                f"concurrency_{c}": {
                    "rps": round(herd[c].rps / cells[c].rps, 3),
                    "p50_ms": round(herd[c].p50_ms / cells[c].p50_ms, 3),
                    "cpu_s_per_1000": round(herd[c].cpu_s_per_1000 / cells[c].cpu_s_per_1000, 3),
                }
                for c in CONCURRENCIES
            }
            for other, cells in medians.items()
            if other != "herd"
        }
        | (
            {
                "herd_full/herd_wire": {
                    f"concurrency_{c}": {
                        "rps": round(medians["herd_full"][c].rps / medians["herd_wire"][c].rps, 3),
                        "cpu_s_per_1000": round(
                            medians["herd_full"][c].cpu_s_per_1000
                            / medians["herd_wire"][c].cpu_s_per_1000,
                            3,
                        ),
                    }
                    for c in CONCURRENCIES
                }
            }
            if {"herd_full", "herd_wire"} <= medians.keys()
            else {}
        )
        | {
            # After a change over before it (`--baseline`): each variant over its `@base` twin.
            f"{kind}/{kind}{BASELINE_TAG}": {
                f"concurrency_{c}": {
                    "rps": round(cells[c].rps / medians[kind + BASELINE_TAG][c].rps, 3),
                    "cpu_s_per_1000": round(
                        cells[c].cpu_s_per_1000 / medians[kind + BASELINE_TAG][c].cpu_s_per_1000, 3
                    ),
                }
                for c in CONCURRENCIES
            }
            for kind, cells in medians.items()
            if kind + BASELINE_TAG in medians
        }
    )


def targets(medians: dict[str, dict[int, Cell]]) -> dict[str, bool]:
    """The issues' targets: calls/s and CPU at 32 in flight, p50 at 1."""
    if "herd" not in medians:
        return {}
    top, one = max(CONCURRENCIES), min(CONCURRENCIES)
    herd = medians["herd"]
    checks: dict[str, bool] = {}
    if "limit" in medians:
        limit = medians["limit"]
        checks["herd >= 1/3 of the limit's calls/s"] = herd[top].rps * 3 >= limit[top].rps
        checks[f"herd p50 within 2x of the limit's ({one} in flight)"] = (
            herd[one].p50_ms <= 2 * limit[one].p50_ms
        )
    if "grpc" in medians:
        checks["herd >= 3x grpcio"] = herd[top].rps >= 3 * medians["grpc"][top].rps
    if "herd_http" in medians:
        checks["herd CPU per call <= 0.5x herd over HTTP"] = (
            herd[top].cpu_s_per_1000 <= 0.5 * medians["herd_http"][top].cpu_s_per_1000
        )
    if "aiohttp" in medians:
        checks["herd >= 0.8x aiohttp"] = herd[top].rps >= 0.8 * medians["aiohttp"][top].rps
    for other in ("fastapi_httpx", "fastapi_aiohttp"):
        if other in medians:
            checks[f"herd > {other}"] = herd[top].rps > medians[other][top].rps
    if {"herd_full", "herd_wire"} <= medians.keys():
        checks["herd_full >= 0.85x herd_wire"] = (
            medians["herd_full"][top].rps >= 0.85 * medians["herd_wire"][top].rps
        )
    if "herd_secure" in medians:
        checks["herd_secure >= 0.7x herd"] = medians["herd_secure"][top].rps >= 0.7 * herd[top].rps
    return checks


def _meta(
    command: str, rounds: int, duration: float, warmup: float, load_before: float
) -> dict[str, Any]:
    """How the figures were made: settings, versions, machine, load."""
    versions = {}
    for package in ("aiohttp", "msgspec", "uvloop", "fastapi", "uvicorn", "httpx", "grpcio"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "command": command,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "herd_commit": git.stdout.strip() or None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        # Other work on the machine skews everything: the 1-minute load average before and after.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rounds": rounds,
        "duration_s": duration,
        "warmup_s": warmup,
        "concurrencies": list(CONCURRENCIES),
        "uvicorn_http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "versions": versions,
        "variants": {kind: describe(kind) for kind in VARIANTS},
    }


def print_report(medians: dict[str, dict[int, Cell]], report: dict[str, Any]) -> None:
    """The medians, the ratios and the targets as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = 120  # a log or a pipe: do not squeeze the tables into 80 columns
    table = Table(title="RPC overhead: medians over rounds")
    for header in ("variant", "in flight", "calls/s", "p50 ms", "p99 ms", "CPU s/1k calls"):
        table.add_column(header, justify="left" if header == "variant" else "right")
    table.add_column("CPU client / server", justify="right")
    for kind, cells in medians.items():
        for c in CONCURRENCIES:
            cell = cells[c]
            table.add_row(
                kind if c == CONCURRENCIES[0] else "",
                str(c),
                f"{cell.rps:,.0f}",
                f"{cell.p50_ms:.3f}",
                f"{cell.p99_ms:.3f}",
                f"{cell.cpu_s_per_1000:.3f}",
                f"{cell.client_cpu_s_per_1000:.3f} / {cell.server_cpu_s_per_1000:.3f}",
                end_section=c == CONCURRENCIES[-1],
            )
    console.print(table)
    if report["ratios"]:
        ratio_table = Table(title="herd / other: calls/s above 1 is faster, CPU above 1 dearer")
        ratio_table.add_column("pair")
        for c in CONCURRENCIES:
            ratio_table.add_column(f"calls/s, {c} in flight", justify="right")
            ratio_table.add_column(f"CPU, {c} in flight", justify="right")
        for pair, by_concurrency in report["ratios"].items():
            row = [pair]
            for c in CONCURRENCIES:
                figures = by_concurrency[f"concurrency_{c}"]
                row += [f"{figures['rps']:.2f}x", f"{figures['cpu_s_per_1000']:.2f}x"]
            ratio_table.add_row(*row)
        console.print(ratio_table)
    for target, met in report["targets"].items():
        console.print(f"{'[green]met' if met else '[red]missed'}[/]  {target}")


def benchmark(
    kinds: list[str], rounds: int, duration: float, warmup: float, command: str
) -> tuple[dict[str, dict[int, Cell]], dict[str, Any]]:
    """Run every round and reduce to medians; returns them and the JSON report."""
    samples: dict[str, dict[int, list[Cell]]] = {k: {c: [] for c in CONCURRENCIES} for k in kinds}
    load_before = os.getloadavg()[0]
    for number in range(rounds):
        shift = number % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            cells = _round(kind, duration, warmup)
            for c, cell in cells.items():
                samples[kind][c].append(cell)
            summary = ", ".join(f"{cell.rps:,.0f}/s @{c}" for c, cell in cells.items())
            print(f"round {number + 1}/{rounds}  {kind:<16} {summary}", file=sys.stderr)
    medians = {k: {c: _median(samples[k][c]) for c in CONCURRENCIES} for k in kinds}
    report: dict[str, Any] = {
        kind: {
            f"concurrency_{c}": _cell_json(medians[kind][c], samples[kind][c])
            for c in CONCURRENCIES
        }
        for kind in kinds
    }
    report["ratios"] = ratios(medians)
    report["targets"] = targets(medians)
    report["meta"] = _meta(command, rounds, duration, warmup, load_before)
    return medians, report


def main() -> None:
    """Parse the command line: run the benchmark, or play one process's part in it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.7 s cells (~1 min)")
    parser.add_argument("--rounds", type=int, help="rounds per variant (default 5)")
    parser.add_argument("--duration", type=float, help="seconds per cell (default 2)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up (default 0.5)")
    parser.add_argument(
        "--only", help=f"comma-separated variants, of: {','.join(VARIANTS)} (default all)"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"report path (default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC_DIR",
        help="another checkout's src: variants named KIND@base run on it (A/B in one run)",
    )
    # One process's part: a server (`--serve KIND --port 0` prints its port) or a client.
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    duration = args.duration or (0.7 if args.quick else 2.0)
    warmup = args.warmup or (0.3 if args.quick else 0.5)

    if args.serve:
        uvloop.run(run_server(args.serve, args.port))
        return
    if args.client:
        cells = uvloop.run(run_client(args.client, args.port, args.server_pid, duration, warmup))
        print(msgspec.json.encode(cells).decode(), flush=True)
        return

    kinds = args.only.split(",") if args.only else list(VARIANTS)
    if args.baseline is not None:
        global _baseline
        _baseline = args.baseline.resolve()
        kinds += [kind + BASELINE_TAG for kind in kinds if not kind.endswith(BASELINE_TAG)]
    unknown = [kind for kind in kinds if kind.removesuffix(BASELINE_TAG) not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}: choose from {', '.join(VARIANTS)}")
    command = shlex.join(["python", "benchmarks/overhead.py", *sys.argv[1:]])
    medians, report = benchmark(kinds, rounds, duration, warmup, command)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_report(medians, report)
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
