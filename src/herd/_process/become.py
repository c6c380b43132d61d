"""How a launcher becomes the server it runs (memcached, an etcd member, a nats-server) and
tells the control plane when it is ready.

The launcher execs the program in its own process (same pid: the control plane's signals, and a
chaos test's SIGKILL, reach the program itself) after forking a child that prints the herd ready
line once the program answers. Both die with the control plane: `die_with_parent` survives exec.
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
    """Have the kernel SIGKILL this process when its parent dies (on Linux; elsewhere nothing),
    so no child outlives a control plane that was killed with SIGKILL. Survives exec."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def become(
    binary: str,
    command: Sequence[str],
    *,
    address: str,
    ready: Callable[[], bool],
    timeout_s: float = 60.0,
    poll_s: float = 0.05,
) -> NoReturn:
    """Exec `command` (`binary` is its path) in this process; a forked child polls `ready()`
    every `poll_s` and prints the ready line with `address` once it is true (or gives up after
    `timeout_s`: the control plane's start timeout then says the slot failed)."""
    sys.stdout.flush()
    parent = os.getpid()
    if os.fork() == 0:
        try:
            # The child holds the output pipe open: it must not outlive the program, or whoever
            # reads that pipe to its end (the control plane, before it restarts the slot) waits.
            die_with_parent()
            if os.getppid() == parent:
                _announce_when_ready(address, ready, timeout_s, poll_s)
        finally:
            os._exit(0)
    os.execv(binary, list(command))


def _announce_when_ready(
    address: str, ready: Callable[[], bool], timeout_s: float, poll_s: float
) -> None:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if ready():
            print(READY_PREFIX + json.dumps({"address": address}), flush=True)
            return
        time.sleep(poll_s)
