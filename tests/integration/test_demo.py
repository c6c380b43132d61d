"""The README's main command as CI runs it: `herd demo --duration 12 --load 50` starts flix on the
local cloud, loads it through the front door for 12 s and exits 0 only if >= 99.9 % succeeded.

It runs on free ports (`--port`, `--control-port`, `--registry-port`), so it never has to skip:
a broken demo fails here whatever else runs on the machine. It uses its own `HERD_HOME`, so a
developer's `~/.herd` is left alone.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port
from tests.integration.cloud_helpers import cloud_env, herd_command, port_taken

pytestmark = pytest.mark.timeout(180)

DURATION_S, RATE = 12, 50


def test_herd_demo_under_load_passes(tmp_path: Path) -> None:
    ports = {"--port": free_port(), "--control-port": free_port(), "--registry-port": free_port()}
    started = time.monotonic()
    done = subprocess.run(
        [
            *herd_command(),
            "demo",
            "--duration",
            str(DURATION_S),
            "--load",
            str(RATE),
            *(word for option, port in ports.items() for word in (option, str(port))),
        ],
        cwd=ROOT,
        env=cloud_env(tmp_path / "herd-home"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=150,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert took >= DURATION_S
    # Where to open it, and progress, on stderr; the load report (data) on stdout.
    assert f"flix is up: open http://127.0.0.1:{ports['--port']}/" in done.stderr, done.stderr
    assert f"dashboard:  http://127.0.0.1:{ports['--control-port']}/" in done.stderr
    assert re.search(rf"^  sent\s+{DURATION_S * RATE}$", done.stdout, re.M), done.stdout
    verdict = re.search(r"([\d.]+) % succeeded \(needs ≥ 99\.9 %\)", done.stderr)
    assert verdict is not None, done.stderr
    assert float(verdict.group(1)) >= 99.9
    assert re.search(r"latency\s+p50 [\d.]+ ms\s+p90 [\d.]+ ms\s+p99 [\d.]+ ms", done.stdout)
    # it stopped everything it started: nothing holds its ports any more
    assert not [port for port in ports.values() if port_taken(port)]
