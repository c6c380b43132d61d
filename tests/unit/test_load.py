"""Load generator: the fixed schedule, exact percentiles, the tally, and option checking."""

from __future__ import annotations

import math

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from herd._model.clock import ManualClock
from herd_tools.cli import app
from herd_tools.load import (
    CLIENT_OVERLOADED,
    Schedule,
    Tally,
    check_options,
    drive,
    failure_kind,
    format_report,
    percentile,
    progress_line,
)


@pytest.mark.parametrize(
    ("rate", "duration", "count"),
    [(50, 20, 1000), (0.1, 30, 3), (3, 1, 3), (7, 0.5, 4), (1000, 0.001, 1), (0.5, 1, 1)],
)
def test_schedule_holds_rate_times_duration(rate: float, duration: float, count: int) -> None:
    schedule = Schedule(rate, duration)
    assert schedule.count == count
    assert schedule.offset(count - 1) < duration


def test_offsets_are_computed_not_summed() -> None:
    schedule = Schedule(rate=3, duration=1000)
    assert schedule.offset(2999) == pytest.approx(2999 / 3, abs=1e-12)


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (-5, 1), (1, 0), (1, -1), (math.nan, 1)])
def test_schedule_rejects_nonsense(rate: float, duration: float) -> None:
    with pytest.raises(ValueError):
        Schedule(rate, duration)


class FakeSleeper:
    """`asyncio.sleep` stand-in that advances a manual clock, overshooting when told to."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.overshoot: dict[int, float] = {}
        self.calls = 0

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds + self.overshoot.get(self.calls, 0.0))
        self.calls += 1


async def test_drive_fires_each_request_at_its_intended_time() -> None:
    clock = ManualClock(start=100.0)
    sleeper = FakeSleeper(clock)
    fired: list[tuple[float, float]] = []
    await drive(
        Schedule(rate=10, duration=1),
        clock.now(),
        lambda intended: fired.append((intended, clock.now())),
        clock=clock,
        sleep=sleeper.sleep,
    )
    assert [intended for intended, _ in fired] == pytest.approx([100 + i / 10 for i in range(10)])
    assert all(at == pytest.approx(intended) for intended, at in fired)


async def test_a_stall_neither_shifts_nor_thins_the_schedule() -> None:
    """The generator stalls for 1 s: the overdue requests go out at once, keeping their
    intended times, so the stall shows as latency instead of disappearing (no coordinated
    omission), and the run still sends rate x duration requests."""
    clock = ManualClock(start=0.0)
    sleeper = FakeSleeper(clock)
    sleeper.overshoot[4] = 1.0  # the sleep before request 5 returns 1 s late
    fired: list[tuple[float, float]] = []
    await drive(
        Schedule(rate=10, duration=3),
        clock.now(),
        lambda intended: fired.append((intended, clock.now())),
        clock=clock,
        sleep=sleeper.sleep,
    )
    assert len(fired) == 30
    assert [intended for intended, _ in fired] == pytest.approx([i / 10 for i in range(30)])
    lateness = [at - intended for intended, at in fired]
    assert lateness[5] == pytest.approx(1.0)  # the one stuck behind the stall waited the full 1 s
    assert lateness[6:15] == pytest.approx([0.9 - 0.1 * k for k in range(9)])  # caught up at once
    assert lateness[15:] == pytest.approx([0.0] * 15)  # and back on schedule


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.90) == 90.0
    assert percentile(values, 0.99) == 99.0  # not 100: 0.99 * 100 must not round up
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.5) == 7.0
    assert percentile([], 0.99) == 0.0


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300),
    st.floats(0.001, 1.0),
)
def test_percentile_is_the_smallest_value_covering_the_fraction(
    values: list[float], fraction: float
) -> None:
    ordered = sorted(values)
    result = percentile(ordered, fraction)
    at_or_below = sum(1 for v in ordered if v <= result)
    below = sum(1 for v in ordered if v < result)
    assert at_or_below >= fraction * len(ordered) - 1e-6
    assert below < fraction * len(ordered) + 1e-6


def test_tally_reports_counts_kinds_and_milliseconds() -> None:
    tally = Tally()
    tally.sent = 11
    for latency in (0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008):
        tally.succeeded(latency)
    tally.fail("http_503", 0.010)
    tally.fail("timeout", 5.0)
    tally.fail(CLIENT_OVERLOADED, None)
    report = tally.report(Schedule(rate=5, duration=2), "http://h/")
    assert (report.sent, report.ok, report.failed) == (11, 8, 3)
    assert report.failed_by_kind == {CLIENT_OVERLOADED: 1, "http_503": 1, "timeout": 1}
    assert list(report.failed_by_kind) == sorted(report.failed_by_kind)
    # ten latencies: the overloaded request never went out and has none
    assert (report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms) == (5.0, 10.0, 5000, 5000)
    assert (report.rate, report.duration_s) == (5, 2)
    assert report.success_ratio == pytest.approx(8 / 11)


def test_an_empty_tally_reports_zeros() -> None:
    report = Tally().report(Schedule(rate=1, duration=1), "http://h/")
    assert (report.sent, report.ok, report.failed, report.max_ms) == (0, 0, 0, 0.0)
    assert report.success_ratio == 0.0


def test_failure_kinds() -> None:
    assert failure_kind(TimeoutError()) == "timeout"
    assert failure_kind(aiohttp.ServerTimeoutError()) == "timeout"
    assert failure_kind(aiohttp.ServerDisconnectedError()) == "disconnected"
    assert failure_kind(ConnectionResetError()) == "disconnected"
    assert failure_kind(aiohttp.ClientPayloadError()) == "client_error"


@pytest.mark.parametrize(
    "url", ["", "localhost:8080", "/api/home", "ftp://host/", "http://", "http://[::1"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        check_options(url, 1, 1, 5, 10)


@pytest.mark.parametrize(
    ("rate", "duration", "timeout", "cap", "message"),
    [
        (0, 1, 5, 10, "rate"),
        (-1, 1, 5, 10, "rate"),
        (1, 0, 5, 10, "duration"),
        (1, 1, 0, 10, "timeout"),
        (1, 1, 5, 0, "cap"),
    ],
)
def test_bad_numbers_are_refused(
    rate: float, duration: float, timeout: float, cap: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_options("http://127.0.0.1:8080/", rate, duration, timeout, cap)


def test_good_options_give_the_schedule() -> None:
    assert check_options("https://example.test/x?y=1", 50, 20, 5, 10) == Schedule(50, 20)


def test_progress_line_and_report_text() -> None:
    tally = Tally()
    tally.sent, tally.in_flight = 3, 1
    tally.succeeded(0.0125)
    tally.fail("http_500", 0.002)
    line = progress_line(1.5, tally, tally.latencies)
    assert "1.5 s" in line
    assert "sent 3  ok 1  failed 1  in flight 1" in line
    assert "p99 (last 1 s) 12.5 ms" in line
    assert progress_line(1.5, tally, []).endswith("p99 (last 1 s) -")
    text = format_report(tally.report(Schedule(2, 1.5), "http://h/"))
    assert "sent       3" in text
    assert "http_500" in text
    assert "max 12.5 ms" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["load", "nowhere", "--rate", "1", "--duration", "1"], "URL"),
        (["load", "http://127.0.0.1:9/", "--rate", "0", "--duration", "1"], "rate must be > 0"),
        (["load", "http://127.0.0.1:9/", "--rate", "1", "--duration", "-2"], "duration"),
    ],
)
def test_cli_explains_bad_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_url_pattern_spreads_requests_over_its_range_deterministically() -> None:
    from herd_tools.load import UrlPattern

    pattern = UrlPattern("http://h:1/api/home?visitor={1..100}&x=1")
    urls = [pattern.at(i) for i in range(1000)]
    values = [int(u.split("visitor=")[1].split("&")[0]) for u in urls]
    assert all(1 <= v <= 100 for v in values)
    assert len(set(values)) == 100
    assert urls == [UrlPattern(pattern.url).at(i) for i in range(1000)]
    assert pattern.first() == "http://h:1/api/home?visitor=1&x=1"
    assert UrlPattern("http://h:1/plain").at(7) == "http://h:1/plain"


def test_an_empty_url_range_is_refused() -> None:
    from herd_tools.load import UrlPattern

    with pytest.raises(ValueError, match="empty range"):
        UrlPattern("http://h:1/?v={9..2}")
