"""Load generator against a real local aiohttp server: stalls show, the schedule holds, failures
are counted by kind, and `herd load --json` writes the figures."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from herd_tools.load import CLIENT_OVERLOADED, run_load
from tests.helpers import free_port

STALL_EVERY = 50
STALL_S = 0.3


@dataclass
class Target:
    """The server under load: its base URL and what it saw."""

    url: str
    stall_arrivals: list[float] = field(default_factory=list)
    release_hung: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    """A server on 127.0.0.1 with `/stall` (every 50th request takes 300 ms), `/error` (always
    500) and `/hang` (answers only at teardown)."""
    state = Target(url="")

    async def stall(_: web.Request) -> web.Response:
        state.stall_arrivals.append(time.monotonic())
        if len(state.stall_arrivals) % STALL_EVERY == 0:
            await asyncio.sleep(STALL_S)
        return web.Response(text="ok")

    async def error(_: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    async def hang(_: web.Request) -> web.Response:
        await state.release_hung.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/stall", stall)
    app.router.add_get("/error", error)
    app.router.add_get("/hang", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    state.release_hung.set()
    await runner.cleanup()


async def test_stalls_show_and_the_schedule_holds(target: Target) -> None:
    rate, duration = 200.0, 2.0
    report = await run_load(f"{target.url}/stall", rate, duration)

    assert report.sent == rate * duration
    assert report.ok == report.sent == len(target.stall_arrivals)
    assert report.failed == 0 and report.failed_by_kind == {}
    # 2 % of the requests stall for 300 ms: the maximum and the p99 both show it ...
    assert report.max_ms >= STALL_S * 1000 * 0.95
    assert report.p99_ms >= STALL_S * 1000 * 0.95
    # ... while the typical request is quick
    assert report.p50_ms < 100
    # open model: the stalls neither slowed the sending (8 x 300 ms would stretch a closed loop
    # by 2.4 s) nor did catching up compress it
    span = target.stall_arrivals[-1] - target.stall_arrivals[0]
    assert (report.sent - 1) / rate - 0.25 <= span <= (report.sent - 1) / rate + 0.75


async def test_http_errors_are_counted_under_their_status(target: Target) -> None:
    report = await run_load(f"{target.url}/error", 50, 0.5)
    assert report.sent == 25
    assert report.ok == 0
    assert report.failed == 25
    assert report.failed_by_kind == {"http_500": 25}
    assert report.max_ms > 0


async def test_slow_answers_time_out(target: Target) -> None:
    report = await run_load(f"{target.url}/hang", 20, 0.5, timeout=0.2)
    assert report.failed_by_kind == {"timeout": 10}
    assert 190 <= report.max_ms < 2000


async def test_beyond_the_cap_requests_fail_instead_of_waiting(target: Target) -> None:
    """With one request outstanding allowed and the first one hung, the rest of the schedule
    is refused on time as client_overloaded, not queued behind it."""
    report = await run_load(f"{target.url}/hang", 50, 0.2, timeout=1.0, concurrency_cap=1)
    assert report.sent == 10
    assert report.failed_by_kind == {"timeout": 1, CLIENT_OVERLOADED: 9}


async def test_a_closed_port_is_a_connect_error() -> None:
    report = await run_load(f"http://127.0.0.1:{free_port()}/", 20, 0.5, timeout=2.0)
    assert report.failed_by_kind == {"connect_error": 10}


async def test_cli_prints_the_report_and_writes_json(target: Target, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from herd_tools.cli import main; main()",
        "load",
        f"{target.url}/stall",
        "--rate",
        "40",
        "--duration",
        "1",
        "--json",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert "succeeded  40 (100.000%)" in stdout.decode()
    assert "sent 40  ok 40  failed 0" in stderr.decode()  # the progress line's last state
    figures = json.loads(out.read_text())
    assert {"sent", "ok", "failed", "failed_by_kind", "rate", "duration_s"} <= figures.keys()
    assert {"p50_ms", "p90_ms", "p99_ms", "max_ms"} <= figures.keys()
    assert (figures["sent"], figures["ok"], figures["failed"]) == (40, 40, 0)
    assert figures["failed_by_kind"] == {}
    assert (figures["rate"], figures["duration_s"]) == (40.0, 1.0)
