"""Helpers for tests: services as real OS processes, a clean environment for them, free ports,
raw HTTP requests and bounded polling. One of each: the other test modules import these."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import io
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from herd._cloud.launch.process import Process
from herd._trace import setup as trace_setup
from herd._trace.sampling import HerdSampler

ROOT = Path(__file__).resolve().parent.parent
MSGPACK = "application/x-msgpack"

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port nobody holds right now, chosen below the kernel's ephemeral range.

    A port the kernel handed out for `bind(0)` is one it may hand out again: a test that passes
    it to `herd up` lost it once to a memcached or an instance of the same cloud binding port 0
    first. Below the range only a fixed bind can take it."""
    low, _high = _ephemeral_range()
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return 32768, 60999
    return int(low), int(high)


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without herd's and the examples' settings (registry, port,
    zone, faults, addresses), so a developer's shell cannot change what a test starts; plus
    `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HERD_", "CHAIN_", "FLIX_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    done: Callable[[T], object] = bool,
    *,
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.02,
) -> T:
    """Call `probe` (sync or async) until `done(value)` holds, and return that value; fail
    after `timeout` seconds, with `what` and the last value in the message."""
    give_up = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if done(value):
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"not within {timeout} s: {what}; last value: {value!r}")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------------ processes


@functools.cache
def _process_loop() -> asyncio.AbstractEventLoop:
    """The event loop that copies every test process's output, in a thread of its own for the
    whole session: output keeps flowing whichever loop a test runs (or none), and the children,
    which die with the thread that started them (PR_SET_PDEATHSIG), live until the session ends
    and no longer."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="test-processes", daemon=True).start()
    return loop


def _on_process_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, _process_loop()).result()


async def _call(function: Callable[[], T]) -> T:
    return function()


class ServiceProcess:
    """A service as a real OS process: herd's process wrapper (the local cloud's), driven from
    tests of any kind. Its output goes to `log`; `env` is laid over `clean_environment()`.

    Every method blocks until done; async tests await the long ones through `asyncio.to_thread`.
    """

    def __init__(
        self, name: str, command: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.process = Process(name, command, env or {}, ROOT, log, base_env=clean_environment())
        _on_process_loop(self.process.start())

    @property
    def address(self) -> str:
        """The `host:port` from its ready line."""
        assert self.process.address is not None, f"{self.name} is not ready"
        return self.process.address

    @property
    def announced(self) -> dict[str, Any]:
        """Its ready line's JSON."""
        assert self.process.announced is not None, f"{self.name} is not ready"
        return self.process.announced

    @property
    def ready_at(self) -> float:
        """`time.monotonic()` when its ready line was read."""
        assert self.process.ready_at is not None, f"{self.name} is not ready"
        return self.process.ready_at

    @property
    def pid(self) -> int:
        """Its process id."""
        assert self.process.pid is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.alive

    @property
    def returncode(self) -> int | None:
        """Its exit code (negative: killed by that signal); None while it runs."""
        return self.process.returncode

    def output(self) -> str:
        """Everything it printed so far."""
        return self.process.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> str:
        """Wait for its ready line; its address. Kills it and fails with its output if it exits
        or stays silent for `timeout` seconds."""
        if not _on_process_loop(self.process.wait_ready(timeout)):
            self.kill()
            self.wait()
            raise AssertionError(
                f"{self.name} not ready within {timeout} s (exit {self.returncode}):\n"
                + self.process.tail()
            )
        return self.address

    def terminate(self) -> None:
        """SIGTERM: the graceful path (deregister, drain, exit 0)."""
        _on_process_loop(_call(lambda: self.process.signal(signal.SIGTERM)))

    def kill(self) -> None:
        """SIGKILL: it dies at once, without deregistering or draining."""
        _on_process_loop(_call(lambda: self.process.signal(signal.SIGKILL)))

    def wait(self, timeout: float = 20.0) -> int:
        """Wait until it has exited (raises `TimeoutError` after `timeout` s); its exit code."""
        return _on_process_loop(asyncio.wait_for(self.process.wait(), timeout))

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, SIGKILL if it still runs `grace_s` later; its exit code."""
        return _on_process_loop(self.process.stop(grace_s))


class ZoneServers:
    """A server process per zone (a cache's memcached, a NATS cluster's members)."""

    def __init__(self) -> None:
        self.processes: dict[str, ServiceProcess] = {}

    def kill(self, zone: str) -> None:
        """SIGKILL one zone's server and wait until it is gone."""
        self.processes[zone].kill()
        self.processes[zone].wait()

    def stop(self) -> None:
        """SIGKILL every server still running."""
        for running in self.processes.values():
            if running.alive:
                running.kill()
                running.wait()


@contextlib.contextmanager
def service_process(
    service: str,
    log_dir: Path,
    downstream: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[ServiceProcess]:
    """Run one service of `examples.chain` as a process for the duration of the block, with
    `env` laid over a clean environment."""
    command = [sys.executable, "-m", "examples.chain.service", service]
    if downstream is not None:
        command += ["--downstream", downstream]
    running = ServiceProcess(service, command, log_dir / f"{service}.log", env)
    try:
        running.wait_ready()
        assert running.announced["service"] == service, running.announced
        yield running
    finally:
        running.stop()


# ------------------------------------------------------------------------------------ raw HTTP


class RawAnswer(msgspec.Struct):
    """A raw HTTP answer."""

    status: int
    body: bytes
    content_type: str

    def error(self) -> dict[str, Any]:
        """The body decoded as herd's msgpack error answer."""
        assert self.content_type == MSGPACK, (self.status, self.content_type, self.body[:200])
        decoded = msgspec.msgpack.decode(self.body)
        assert isinstance(decoded, dict), decoded
        return decoded


async def raw_request(
    session: aiohttp.ClientSession,
    address: str,
    path: str,
    *,
    method: str = "POST",
    body: Any = b"",
    headers: dict[str, str] | None = None,
) -> RawAnswer:
    """Send one HTTP request by hand, bypassing the driver."""
    async with session.request(
        method, f"http://{address}{path}", data=body, headers=headers or {}
    ) as response:
        return RawAnswer(response.status, await response.read(), response.content_type)


@dataclasses.dataclass(frozen=True)
class Ran:
    """What a `herd` command run in this process did: its exit code, stdout and stderr."""

    code: int
    stdout: str
    stderr: str


def herd_cli(*args: str) -> Ran:
    """Run `herd ARGS` in this process through the command's one error path."""
    from herd_tools.cli import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return Ran(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """herd's hooks record every span (a new trace for every untraced request) into the SDK's
    in-memory exporter, until the block ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=HerdSampler())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_setup.install(provider, share=1.0)
    try:
        yield exporter
    finally:
        trace_setup.uninstall()
