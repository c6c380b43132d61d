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


_INSTANCE_TLS = """
import asyncio, sys

import herd  # first, as an instance's service module does

import aiohttp
import aiohttp.connector
import uvloop

print("rich:", "rich" in sys.modules)
verified = aiohttp.connector._SSL_CONTEXT_VERIFIED
print("CA at start:", verified.cert_store_stats()["x509_ca"])


async def main():
    async def hang_up(reader, writer):
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        try:
            await session.get(f"https://127.0.0.1:{port}/")
        except aiohttp.ClientError:
            pass
    server.close()
    print("CA after a handshake:", verified.cert_store_stats()["x509_ca"] > 0)


uvloop.run(main())
"""


def test_an_instance_starts_without_rich_or_the_ca_store_and_loads_it_at_its_first_https(
    tmp_path: Path,
) -> None:
    # What a replacement instance does as it starts is CPU taken from the instances serving
    # beside it: no rich (structlog's plain renderer), no CA store until an HTTPS call needs it.
    done = _run_as_instance(tmp_path, _INSTANCE_TLS)
    assert done.stdout.splitlines() == [
        "rich: False",
        "CA at start: 0",
        "CA after a handshake: True",
    ]


def test_an_instance_still_logs_plain_tracebacks(tmp_path: Path) -> None:
    done = _run_as_instance(tmp_path, "import herd\n" + _PROGRAM)
    logged = done.stdout + done.stderr
    assert 'raise RuntimeError("handler failed")' in logged
    assert "s3cr3t-value" not in logged


def _run_as_instance(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    """Run `source` as a process the local cloud started (`HERD_INSTANCE` set)."""
    program = tmp_path / "instance.py"
    program.write_text(source)
    return subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "HERD_INSTANCE": "test-1"},
    )
