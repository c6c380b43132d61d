"""Becoming a system server (etcd, nats-server) while telling the launcher when it is ready.

The launching process execs the server, so it keeps the pid: the control plane's signals and a
chaos test's SIGKILL reach the server itself, and it dies with the control plane
(PR_SET_PDEATHSIG survives exec). A forked child prints herd's ready line once `ready()` says
the server answers, and dies with the server.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from herd._process.run import READY_PREFIX

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def become(
    binary: str,
    argv: Sequence[str],
    address: str,
    ready: Callable[[], bool],
    *,
    timeout_s: float = 60.0,
    poll_s: float = 0.05,
) -> NoReturn:
    """Exec `binary` with `argv`; a child announces `address` once `ready()` holds (polled
    every `poll_s` for up to `timeout_s`)."""
    sys.stdout.flush()
    parent = os.getpid()
    if os.fork() == 0:
        try:
            # The child holds the output pipe open: it must not outlive the server, or whoever
            # reads that pipe to its end (the control plane, before a restart) waits.
            die_with_parent()
            if os.getppid() == parent:
                give_up = time.monotonic() + timeout_s
                while time.monotonic() < give_up:
                    if ready():
                        print(READY_PREFIX + json.dumps({"address": address}), flush=True)
                        break
                    time.sleep(poll_s)
        finally:
            os._exit(0)
    os.execv(binary, list(argv))
