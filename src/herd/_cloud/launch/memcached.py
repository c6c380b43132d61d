"""One memcached server of a cache, as `herd up` runs it:
``python -m herd._cloud.launch.memcached``.

Like an etcd member, this process becomes the system's ``memcached`` (same pid, so the control
plane's signals and a chaos test's SIGKILL reach memcached itself), and a forked child prints
the herd ready line once memcached answers ``version`` on its port. memcached comes from the
system package (Debian's ``memcached``; `make system` installs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket

from herd._model.errors import ConfigurationError
from herd._process.become import become

INSTALL = "sudo apt-get install -y memcached"


def memcached_binary() -> str:
    """The system's ``memcached``; ConfigurationError with the install command when missing."""
    found = shutil.which("memcached") or (
        "/usr/bin/memcached" if os.access("/usr/bin/memcached", os.X_OK) else None
    )
    if found is None:
        raise ConfigurationError(f"no memcached binary on PATH: install it with `{INSTALL}`")
    return found


def command(binary: str, port: int, memory_mb: int, host: str = "127.0.0.1") -> list[str]:
    """memcached on `host` only (loopback by default), TCP only, two worker threads (the
    machine is shared)."""
    line = [binary, "-l", host, "-p", str(port), "-U", "0", "-m", str(memory_mb), "-t", "2"]
    if os.geteuid() == 0:
        # memcached refuses to run as root unless told which user to be.
        line += ["-u", "root"]
    return line


def answers(port: int, timeout_s: float = 0.5, host: str = "127.0.0.1") -> bool:
    """Whether a memcached on `host:port` answers ``version``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.sendall(b"version\r\n")
            return conn.recv(64).startswith(b"VERSION")
    except OSError:
        return False


def main() -> None:
    """Become memcached on ``--port`` with ``--memory-mb``; announce readiness from a child."""
    parser = argparse.ArgumentParser(description="Run one memcached server of a herd cache.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--memory-mb", type=int, default=64)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    try:
        binary = memcached_binary()
    except ConfigurationError as exc:
        raise SystemExit(f"herd memcached: {exc}") from None
    become(
        binary,
        command(binary, args.port, args.memory_mb, args.host),
        address=f"{args.host}:{args.port}",
        ready=lambda: answers(args.port, host=args.host),
        timeout_s=30.0,
        poll_s=0.02,
    )


if __name__ == "__main__":
    main()
