"""The README's main command as CI runs it: `herd demo --duration 20 --load 50` starts flix on the
local cloud, loads it through the front door for 20 s and exits 0 only if >= 99.9 % succeeded.

`herd demo` runs `examples/flix/app.toml` as it is, on its fixed ports (front door 8080, registry
8500, control API 8400), so this test must not run beside anything else that holds them: it takes
a machine-wide lock (two test runs on one machine take turns) and skips, saying which port, when
a developer's cloud holds one. It uses its own `HERD_HOME`, so a developer's `~/.herd` is left
alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd._cloud.app import load
from tests.helpers import ROOT
from tests.integration.cloud_helpers import cloud_env, herd_command, port_taken

pytestmark = pytest.mark.timeout(180)

DURATION_S, RATE = 20, 50
LOCK = Path(tempfile.gettempdir()) / "herd-demo-fixed-ports.lock"


def fixed_ports() -> dict[str, int]:
    spec = load(ROOT / "examples" / "flix" / "app.toml").spec
    assert spec.front_door is not None
    return {
        "front door": spec.front_door.port,
        "registry": spec.registry_port,
        "control API": spec.control_port,
    }


@contextlib.contextmanager
def fixed_ports_to_ourselves(wait_s: float = 120.0) -> Iterator[None]:
    """Hold the machine-wide lock on the demo's fixed ports; skip if they are in use anyway."""
    with LOCK.open("a") as lock:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another test run held {LOCK} for {wait_s:g} s")
                time.sleep(0.2)
        try:
            taken = {name: port for name, port in fixed_ports().items() if port_taken(port)}
            if taken:
                pytest.skip(
                    "herd demo needs its fixed ports, but these are in use (a cloud running?):"
                    f" {', '.join(f'{name} {port}' for name, port in taken.items())}"
                )
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def test_herd_demo_under_load_passes(tmp_path: Path) -> None:
    with fixed_ports_to_ourselves():
        started = time.monotonic()
        done = subprocess.run(
            [*herd_command(), "demo", "--duration", str(DURATION_S), "--load", str(RATE)],
            cwd=ROOT,
            env=cloud_env(tmp_path / "herd-home"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=150,
        )
        took = time.monotonic() - started
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert took >= DURATION_S
        assert "flix is up: open http://127.0.0.1:8080/" in output
        assert re.search(rf"^  sent\s+{DURATION_S * RATE}$", output, re.M), output
        verdict = re.search(r"([\d.]+) % succeeded \(needs ≥ 99\.9 %\)", output)
        assert verdict is not None, output
        assert float(verdict.group(1)) >= 99.9
        assert re.search(r"latency\s+p50 [\d.]+ ms\s+p90 [\d.]+ ms\s+p99 [\d.]+ ms", output)
        # it stopped everything it started: nothing holds the fixed ports any more
        assert not [port for port in fixed_ports().values() if port_taken(port)]
