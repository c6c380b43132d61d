"""Instances as OS processes: started with their identity in the environment, tied to the
control plane's life, and watched for their ready line."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from herd._process.run import READY_PREFIX

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it when the control plane dies, so no
    instance outlives a control plane that was killed with SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Process:
    """One child process: its command, its log, its ready line."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path
    ):
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log
        self.proc: asyncio.subprocess.Process | None = None
        self.address: str | None = None
        self.started_at = 0.0
        self.ready = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id once started."""
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        """Started and not exited."""
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Start the process; its output goes to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            # Its own session: a Ctrl-C in the terminal reaches the control plane only, which
            # then stops instances in order.
            start_new_session=True,
        )
        self.started_at = time.time()
        self._pump = asyncio.create_task(self._read_output())

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self._log is not None
        async for line in self.proc.stdout:
            if not self.ready.is_set() and line.startswith(READY_PREFIX.encode()):
                with contextlib.suppress(ValueError, KeyError):
                    self.address = str(json.loads(line[len(READY_PREFIX) :])["address"])
                    self.ready.set()
            self._log.write(line)
            self._log.flush()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait for the ready line; False if the process exits or the time runs out first."""
        assert self.proc is not None
        ready = asyncio.ensure_future(self.ready.wait())
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            await asyncio.wait(
                {ready, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            exited.cancel()
        return self.ready.is_set() and self.alive

    def signal(self, sig: int) -> None:
        """Send a signal if the process runs."""
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM (the instance deregisters and drains), then SIGKILL after `grace_s`."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                await self.proc.wait()
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.proc.wait()
        await self.closed()
        return self.proc.returncode

    async def closed(self) -> None:
        """Finish copying output once the process has exited."""
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._log is not None:
            self._log.close()
            self._log = None
