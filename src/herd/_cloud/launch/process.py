"""Instances as OS processes: started with their identity in the environment, tied to the
control plane's life, and watched for their ready line.

This is the project's one process wrapper: the local cloud runs its registry and instances with
it, the retry-storm experiment its chains, and the tests their services.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from herd._cloud.network.isolated import enter
from herd._process.become import die_with_parent
from herd._process.run import READY_PREFIX

_CHUNK = 64 * 1024
_READY_LINE_MAX = 64 * 1024
"""A ready line is a few hundred bytes: a longer line is not one, and is not held in memory."""
_TAIL_BYTES = 64 * 1024


class ReadyLine:
    """Finds the ready line in output that arrives in chunks of any size.

    Only the start of a line can make it the ready line, so at most `_READY_LINE_MAX` bytes of
    one line are held, however long the lines are.
    """

    def __init__(self) -> None:
        self._prefix = READY_PREFIX.encode()
        self._line = bytearray()
        self._skipping = False  # the current line cannot be the ready line: wait for its end

    def feed(self, chunk: bytes) -> dict[str, Any] | None:
        """Read `chunk`; the announcement (the ready line's JSON, which has an ``address``) if
        a ready line ended in it."""
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            if not self._skipping:
                self._line += chunk[start:] if end < 0 else chunk[start:end]
                head = bytes(self._line[: len(self._prefix)])
                if not self._prefix.startswith(head) or len(self._line) > _READY_LINE_MAX:
                    self._line.clear()
                    self._skipping = True
            if end < 0:
                return None
            announced = None if self._skipping else self._parse(bytes(self._line))
            if announced is not None:
                return announced
            self._line.clear()
            self._skipping = False
            start = end + 1
        return None

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        if not line.startswith(self._prefix):
            return None
        try:
            announced = json.loads(line[len(self._prefix) :])
        except ValueError:
            return None
        if not isinstance(announced, dict) or "address" not in announced:
            return None
        return announced


class Process:
    """One child process: its command, its log, its ready line.

    Its output (stdout and stderr, in order) is copied to the log file by a reader on the event
    loop that started it, so the child never blocks on a full pipe.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        log: Path,
        *,
        base_env: Mapping[str, str] | None = None,
        netns: str | None = None,
    ):
        """`env` is laid over `base_env`, which defaults to this process's environment;
        `netns` is the network namespace it runs in (None: this process's)."""
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.cwd = cwd
        self.netns = netns
        self.log_path = log
        self.proc: asyncio.subprocess.Process | None = None
        self.address: str | None = None
        self.announced: dict[str, Any] | None = None
        """The ready line's JSON, once the process printed it."""
        self.started_at = 0.0
        """Wall-clock time of the start."""
        self.ready_at: float | None = None
        """`time.monotonic()` when the ready line was read."""
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

    @property
    def returncode(self) -> int | None:
        """The exit code once it exited (negative: killed by that signal); None before."""
        return self.proc.returncode if self.proc else None

    async def start(self) -> None:
        """Start the process; its output goes to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=self.cwd,
                env={**self.base_env, **self.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Runs in the child before exec: no instance outlives the control plane.
                preexec_fn=self._before_exec,
                # Its own session: a Ctrl-C in the terminal reaches the control plane only,
                # which then stops instances in order.
                start_new_session=True,
            )
        except BaseException:
            # Nothing started: a supervisor that tries again must not leak a file each time.
            self._log.close()
            self._log = None
            raise
        self.started_at = time.time()
        self._pump = asyncio.create_task(self._read_output())

    def _before_exec(self) -> None:
        die_with_parent()
        if self.netns is not None:
            enter(self.netns)

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self._log is not None
        # Chunks, not lines: a stream's line reader gives up on a line longer than its buffer.
        ready_line = ReadyLine()
        while chunk := await self.proc.stdout.read(_CHUNK):
            self._log.write(chunk)
            self._log.flush()
            if not self.ready.is_set() and (announced := ready_line.feed(chunk)) is not None:
                self.announced = announced
                self.address = str(announced["address"])
                self.ready_at = time.monotonic()
                self.ready.set()

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

    async def wait(self) -> int:
        """Wait for the process to exit and its output to be copied; its exit code."""
        assert self.proc is not None
        code = await self.proc.wait()
        await self.closed()
        return code

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

    def tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log (of its last 64 KiB), for error messages."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES))
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
