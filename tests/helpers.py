"""Helpers for tests: services as real OS processes, raw HTTP requests, bounded polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec

from herd._process.run import READY_PREFIX

ROOT = Path(__file__).resolve().parent.parent
MSGPACK = "application/x-msgpack"

T = TypeVar("T")


def _clean_environment() -> dict[str, str]:
    """This process's environment without herd's and the chain's settings (registry, port, faults),
    so a developer's shell cannot change what a test starts."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HERD_", "CHAIN_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServiceProcess:
    """One service of `examples.chain` running as its own OS process.

    A reader thread keeps draining the process's output (so a chatty service never blocks on a
    full pipe) and notices the ``HERD_READY`` line that tells the port.
    """

    def __init__(self, service: str, downstream: str | None = None) -> None:
        command = [sys.executable, "-m", "examples.chain.service", service]
        if downstream is not None:
            command += ["--downstream", downstream]
        self.service = service
        self.lines: list[str] = []
        self.address = ""
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_clean_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{service}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith(READY_PREFIX) and not self._ready.is_set():
                announced = json.loads(line[len(READY_PREFIX) :])
                assert announced["service"] == self.service, announced
                self.address = str(announced["address"])
                self._ready.set()
        self._ready.set()  # the process ended: wake a waiter, which then sees no address

    def wait_ready(self, timeout: float = 20.0) -> str:
        """Block until the service announced its address; fail with its output if it did not."""
        if not self._ready.wait(timeout) or not self.address:
            self.stop()
            raise RuntimeError(
                f"{self.service} did not become ready (exit code {self.process.poll()}):\n"
                + self.output
            )
        return self.address

    @property
    def output(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.lines)

    def terminate(self) -> None:
        """Send SIGTERM (the graceful drain signal)."""
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit; returns its exit code."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        """Terminate (then kill, if it lingers) and reap the process."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(10.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10.0)
        self._reader.join(10.0)


@contextlib.contextmanager
def service_process(service: str, downstream: str | None = None) -> Iterator[ServiceProcess]:
    """Run one chain service as a process for the duration of the block."""
    running = ServiceProcess(service, downstream)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> T:
    """Poll `probe` until `done(value)`; return the value, or fail after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


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
