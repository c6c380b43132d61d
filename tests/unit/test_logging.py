"""herd's entry points log errors with plain tracebacks: no local variables in the log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_PROGRAM = """
import structlog
from herd._process.logging import configure

configure()
log = structlog.get_logger("test")

def handler():
    secret = "s3cr3t-" + "value"
    raise RuntimeError("handler failed")

try:
    handler()
except RuntimeError:
    log.exception("handler failed")
"""


def test_an_error_is_logged_with_its_traceback_but_not_its_locals(tmp_path: Path) -> None:
    program = tmp_path / "failing.py"
    program.write_text(_PROGRAM)
    done = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=60, check=True
    )
    logged = done.stdout + done.stderr
    assert "Traceback (most recent call last)" in logged
    assert 'raise RuntimeError("handler failed")' in logged
    assert "s3cr3t-value" not in logged


def test_an_instance_imports_neither_aiohttp_nor_rich_and_still_logs_tracebacks(
    tmp_path: Path,
) -> None:
    # What a replacement instance imports is CPU taken from the instances serving beside it.
    program = tmp_path / "instance.py"
    program.write_text(
        "import sys\nimport herd\n"
        + _PROGRAM
        + "\nprint('loaded:', [m for m in ('aiohttp', 'rich') if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "HERD_INSTANCE": "test-1"},
    )
    assert done.stdout.splitlines()[-1] == "loaded: []"
    logged = done.stdout + done.stderr
    assert 'raise RuntimeError("handler failed")' in logged
    assert "s3cr3t-value" not in logged
