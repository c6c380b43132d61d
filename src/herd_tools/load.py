"""`herd load`: an open-model HTTP load generator.

Requests go out on a fixed `Schedule`, however slowly the target answers: a stalled server does
not slow the schedule down. Each latency is measured from the request's *intended* send time, so
time the generator itself spent behind schedule (a blocked event loop, a burst of catch-up
sends) counts against the target instead of vanishing; this is what keeps coordinated omission
from hiding stalls.

The outstanding requests are capped (`concurrency_cap`); a request due while the cap is reached
is not delayed but counted as failed with kind `client_overloaded`, so the schedule and the
figures stay honest even when the client is the bottleneck.

`run_load` is the reusable core (`herd demo --load` calls it in-process); `load_command` is the
body of the `herd load` command.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import uvloop
import yarl
from rich.console import Console
from rich.live import Live
from rich.text import Text

from herd._model.clock import MONOTONIC, Clock
from herd._model.stats import percentile
from herd_tools.output import err, out, usage
from herd_tools.schedule import Schedule, open_model

CLIENT_OVERLOADED = "client_overloaded"
"""Failure kind of a request that was due while `concurrency_cap` requests were outstanding."""

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CONCURRENCY_CAP = 10_000
PROGRESS_INTERVAL_S = 0.25
"""How often the live progress line is redrawn."""
PROGRESS_WINDOW_TICKS = 4
"""The progress line's p99 covers the requests finished in the last this-many intervals (~1 s)."""


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a load run measured; `herd load --json` writes exactly these fields.

    `sent` counts every request whose intended send time came, so `sent == ok + failed`.
    Latencies are in milliseconds from the intended send time to the end of the response body
    (or to the failure), over every request actually attempted, failed ones included; requests
    refused as `client_overloaded` never went out and have no latency. With no latency at all,
    the percentiles are 0.
    """

    sent: int
    ok: int
    failed: int
    failed_by_kind: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    rate: float
    duration_s: float
    url: str

    @property
    def success_ratio(self) -> float:
        """`ok / sent`; 0.0 when nothing was sent."""
        return self.ok / self.sent if self.sent else 0.0


def failure_kind(error: BaseException) -> str:
    """Name the kind of a failed request for the report."""
    if isinstance(error, TimeoutError):  # aiohttp's own timeouts subclass it too
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connect_error"
    if isinstance(error, aiohttp.ServerDisconnectedError | OSError):
        return "disconnected"
    return "client_error"


_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


class UrlPattern:
    """A URL whose `{a..b}` placeholders take a different integer in [a, b] for each request.

    ``/api/home?visitor={1..10000}`` spreads requests over ten thousand visitors, so a page's
    caches see misses as well as hits. Values are spread deterministically (a multiplicative
    hash of the request number), so two runs send the same sequence.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._parts = _RANGE.split(url)
        self._ranges = [(int(low), int(high)) for low, high in _RANGE.findall(url)]
        for low, high in self._ranges:
            if high < low:
                raise ValueError(f"empty range {{{low}..{high}}} in {url!r}")

    def first(self) -> str:
        """The URL with every placeholder at its low bound (for validation)."""
        return self._fill([low for low, _ in self._ranges])

    def at(self, index: int) -> str:
        """The URL of request number `index`."""
        if not self._ranges:
            return self.url
        spread = index * 2654435761
        return self._fill([low + spread % (high - low + 1) for low, high in self._ranges])

    def _fill(self, values: list[int]) -> str:
        pieces = self._parts[::3]
        out = [pieces[0]]
        for value, piece in zip(values, pieces[1:], strict=True):
            out.append(str(value))
            out.append(piece)
        return "".join(out)


def check_options(
    url: str, rate: float, duration: float, timeout: float, concurrency_cap: int
) -> Schedule:
    """Validate a run's settings and return its schedule.

    Raises `ValueError` unless `url` is an absolute http:// or https:// address and rate,
    duration, timeout and cap are positive.
    """
    try:
        parsed = yarl.URL(UrlPattern(url).first())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid URL: {url!r} ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"URL must be an absolute http:// or https:// address, got {url!r}")
    schedule = Schedule(rate, duration)
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 s, got {timeout}")
    if concurrency_cap < 1:
        raise ValueError(f"concurrency cap must be >= 1, got {concurrency_cap}")
    return schedule


#: Called once per finished request: its intended send time, its latency (seconds) and its
#: failure kind (None for a success).
Record = Callable[[float, float, str | None], None]


class Tally:
    """Running counts and latencies (seconds, in completion order) of one run."""

    def __init__(self, record: Record | None = None) -> None:
        self.record = record
        self.sent = 0
        self.ok = 0
        self.in_flight = 0
        self.failed_by_kind: Counter[str] = Counter()
        self.latencies: list[float] = []

    @property
    def failed(self) -> int:
        """Requests that failed, of any kind."""
        return self.failed_by_kind.total()

    def succeeded(self, latency: float) -> None:
        """Count a success that took `latency` seconds from its intended send time."""
        self.ok += 1
        self.latencies.append(latency)

    def fail(self, kind: str, latency: float | None) -> None:
        """Count a failure of `kind`; `latency` is None when the request never went out."""
        self.failed_by_kind[kind] += 1
        if latency is not None:
            self.latencies.append(latency)

    def report(self, schedule: Schedule, url: str) -> LoadReport:
        """The final figures."""
        ordered = sorted(self.latencies)

        def ms(fraction: float) -> float:
            return round(percentile(ordered, fraction) * 1000, 3)

        return LoadReport(
            sent=self.sent,
            ok=self.ok,
            failed=self.failed,
            failed_by_kind=dict(sorted(self.failed_by_kind.items())),
            p50_ms=ms(0.50),
            p90_ms=ms(0.90),
            p99_ms=ms(0.99),
            max_ms=ms(1.0),
            rate=schedule.rate,
            duration_s=schedule.duration,
            url=url,
        )


def progress_line(elapsed: float, tally: Tally, recent: Sequence[float]) -> str:
    """The live status line; `recent` holds the latencies (seconds) of about the last second."""
    p99 = f"{percentile(sorted(recent), 0.99) * 1000:.1f} ms" if recent else "-"
    return (
        f"{elapsed:6.1f} s  sent {tally.sent}  ok {tally.ok}  failed {tally.failed}"
        f"  in flight {tally.in_flight}  p99 (last 1 s) {p99}"
    )


async def _show_progress(console: Console, tally: Tally, start: float, clock: Clock) -> None:
    """Redraw the progress line every `PROGRESS_INTERVAL_S` until cancelled."""
    marks: deque[int] = deque(maxlen=PROGRESS_WINDOW_TICKS + 1)

    def render() -> Text:
        marks.append(len(tally.latencies))
        return Text(progress_line(clock.now() - start, tally, tally.latencies[marks[0] :]))

    try:
        with Live(render(), console=console, auto_refresh=False) as live:
            try:
                while True:
                    await asyncio.sleep(PROGRESS_INTERVAL_S)
                    live.update(render(), refresh=True)
            finally:
                live.update(render(), refresh=True)
    finally:
        if not console.is_terminal:
            # Off a terminal, Live leaves the line open: end it, so the report that follows
            # starts on a line of its own.
            console.print()


async def _request(
    session: aiohttp.ClientSession,
    url: str,
    intended: float,
    timeout: float,
    tally: Tally,
    clock: Clock,
) -> None:
    """Send one GET, read the whole body, and count the outcome; never raises (but cancels)."""
    kind: str | None = None
    try:
        async with asyncio.timeout(timeout), session.get(url) as response:
            await response.read()
            if response.status >= 400:
                kind = f"http_{response.status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        kind = failure_kind(exc)
    finally:
        tally.in_flight -= 1
    latency = clock.now() - intended
    if kind is None:
        tally.succeeded(latency)
    else:
        tally.fail(kind, latency)
    if tally.record is not None:
        tally.record(intended, latency, kind)


async def run_load(
    url: str,
    rate: float,
    duration: float,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    concurrency_cap: int = DEFAULT_CONCURRENCY_CAP,
    progress: Console | None = None,
    record: Record | None = None,
) -> LoadReport:
    """Send GET requests to `url` at `rate` per second for `duration` seconds (open model) and
    return what happened once every request has finished.

    A response with status below 400 (after redirects) succeeds; anything else fails under its
    kind: `http_NNN`, `timeout` (each request has `timeout` seconds), `connect_error`,
    `disconnected`, `client_error`, or `client_overloaded` (due while `concurrency_cap`
    requests were outstanding). Connections are kept alive and reused; no cookies are kept.
    `{a..b}` in `url` takes a different integer in [a, b] for each request (`UrlPattern`).
    With `progress` set, a live status line is drawn on that console while the run lasts;
    `record`, if given, sees every finished request (intended time, latency, failure kind).

    Raises `ValueError` for a bad URL or a non-positive rate, duration, timeout or cap.
    """
    schedule = check_options(url, rate, duration, timeout, concurrency_cap)
    pattern = UrlPattern(url)
    clock = MONOTONIC
    tally = Tally(record)
    connector = aiohttp.TCPConnector(limit=0)  # the cap is ours; aiohttp must not queue
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        start = clock.now()
        shown = (
            asyncio.create_task(_show_progress(progress, tally, start, clock))
            if progress is not None
            else None
        )
        try:

            def send(intended: float) -> Coroutine[Any, Any, None] | None:
                tally.sent += 1
                if tally.in_flight >= concurrency_cap:
                    tally.fail(CLIENT_OVERLOADED, None)
                    return None
                tally.in_flight += 1
                target = pattern.at(tally.sent)
                return _request(session, target, intended, timeout, tally, clock)

            await open_model(schedule, start, send, clock=clock)
        finally:
            if shown is not None:
                shown.cancel()
                await asyncio.gather(shown, return_exceptions=True)
    return tally.report(schedule, url)


def format_report(report: LoadReport) -> str:
    """The human-readable final report."""
    return "\n".join(
        [
            f"herd load {report.url}: {report.rate:g} requests/s for {report.duration_s:g} s",
            f"  sent       {report.sent}",
            f"  succeeded  {report.ok} ({report.success_ratio:.3%})",
            f"  failed     {report.failed}",
            *(f"    {kind:<18} {count}" for kind, count in report.failed_by_kind.items()),
            f"  latency    p50 {report.p50_ms:.1f} ms  p90 {report.p90_ms:.1f} ms"
            f"  p99 {report.p99_ms:.1f} ms  max {report.max_ms:.1f} ms",
        ]
    )


def load_command(
    url: str,
    *,
    rate: float,
    duration: float,
    json_path: str | None,
    timeout: float,
    concurrency_cap: int,
) -> None:
    """Body of `herd load`: check the options, run with a live progress line on stderr, print
    the report on stdout and, with `json_path`, write it there as JSON."""
    try:
        check_options(url, rate, duration, timeout, concurrency_cap)
    except ValueError as exc:
        raise usage(str(exc)) from None
    report = uvloop.run(
        run_load(
            url,
            rate,
            duration,
            timeout=timeout,
            concurrency_cap=concurrency_cap,
            progress=err(),
        )
    )
    out().print(format_report(report), markup=False)
    if json_path is not None:
        Path(json_path).write_bytes(
            msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"
        )
