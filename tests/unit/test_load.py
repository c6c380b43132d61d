"""Load generator: the tally, its report, URL patterns and option checking."""

from __future__ import annotations

import aiohttp
import pytest

from herd_tools.load import (
    CLIENT_OVERLOADED,
    Tally,
    check_options,
    failure_kind,
    format_report,
    progress_line,
)
from herd_tools.schedule import Schedule
from tests.helpers import herd_cli


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
    result = herd_cli(*args)
    assert result.code == 2
    assert message in result.stderr
    assert result.stdout == ""


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
