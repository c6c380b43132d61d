"""The chain edge → middle → deep, each service its own OS process.

Deadlines telescope through the hops, a hanging dependency is cancelled at every hop when the
deadline passes, declared errors cross process boundaries as themselves, and SIGTERM drains.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import pytest

import herd
from examples.chain.interface import Deep, Edge, Middle, Refused
from tests.helpers import MSGPACK, ServiceProcess, eventually, raw_request, service_process

pytestmark = pytest.mark.timeout(90)

ONE_ATTEMPT = herd.CallPolicy(attempts=1, timeout=10.0)


@dataclass
class Chain:
    deep: ServiceProcess
    middle: ServiceProcess
    edge: ServiceProcess


@dataclass
class Drivers:
    edge: Edge
    middle: Middle
    deep: Deep


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    logs = tmp_path_factory.mktemp("chain")
    with (
        service_process("deep", logs) as deep,
        service_process("middle", logs, deep.address) as middle,
        service_process("edge", logs, middle.address) as edge,
    ):
        yield Chain(deep, middle, edge)
    for process in (edge, middle, deep):
        assert process.returncode == 0, process.output()


@pytest.fixture
async def drivers(chain: Chain) -> AsyncIterator[Drivers]:
    made = Drivers(
        edge=herd.driver(Edge, address=chain.edge.address),
        middle=herd.driver(Middle, address=chain.middle.address),
        deep=herd.driver(Deep, address=chain.deep.address),
    )
    yield made
    for one in (made.edge, made.middle, made.deep):
        await one.aclose()


async def stats(driver: Middle | Deep) -> dict[str, int]:
    with herd.deadline(5.0):
        return await driver.stats()


@pytest.mark.parametrize("seconds", [0.5, 1.0, 3.0])
async def test_each_hop_sees_what_is_left_of_the_edge_deadline(
    drivers: Drivers, seconds: float
) -> None:
    started = time.monotonic()
    with herd.deadline(seconds):
        echo = await drivers.edge.greet("budget")
    elapsed_ms = (time.monotonic() - started) * 1000

    assert echo.text == "hello, budget"
    edge_ms, middle_ms, deep_ms = echo.budgets_ms
    full = seconds * 1000
    # Budgets only shrink along the chain, and never exceed what the caller gave.
    assert full >= edge_ms >= middle_ms >= deep_ms
    # The middle saw the caller's deadline minus the time spent so far, not a fresh default:
    # at least what was left when the whole call returned, less what each of the three hops
    # keeps back to answer its own caller (3 ms for rounding to whole ms).
    assert 0.9 * full < middle_ms <= full
    reserved_ms = 3 * herd.CallPolicy().reply_reserve * 1000
    assert deep_ms >= full - elapsed_ms - reserved_ms - 3


async def test_hanging_deep_is_cancelled_at_every_hop_when_the_deadline_passes(
    drivers: Drivers,
) -> None:
    middle_before = await stats(drivers.middle)
    deep_before = await stats(drivers.deep)

    started = time.monotonic()
    with pytest.raises(herd.DeadlineExceeded), herd.deadline(1.0):
        await drivers.edge.greet("hang", hang=True)
    elapsed = time.monotonic() - started
    assert 0.95 <= elapsed < 1.1

    def settled(before: dict[str, int]) -> Callable[[dict[str, int]], bool]:
        return lambda now: now["started"] > before["started"] and now["running"] == 0

    middle_after = await eventually(lambda: stats(drivers.middle), settled(middle_before))
    deep_after = await eventually(lambda: stats(drivers.deep), settled(deep_before))
    for before, after in ((middle_before, middle_after), (deep_before, deep_after)):
        # Exactly one attempt reached each hop (no retry once the deadline had passed), and it
        # never finished (that nothing is left running is what `settled` waited for).
        assert after["started"] == before["started"] + 1
        assert after["finished"] == before["finished"]
    # Deep hangs: only cancellation at its deadline can stop it.
    assert deep_after["cancelled"] == deep_before["cancelled"] + 1
    # The middle stops at its deadline too: cancelled, or ended by deep's deadline answer, which
    # arrives an instant before (deep's share of the budget is a millisecond smaller).
    stopped = ("cancelled", "timed_out")
    assert sum(middle_after[k] - middle_before[k] for k in stopped) == 1


async def test_declared_error_round_trips_across_two_process_boundaries(
    drivers: Drivers,
) -> None:
    with pytest.raises(Refused) as caught, herd.deadline(5.0):
        await drivers.edge.greet("forbidden")
    error = caught.value
    assert type(error) is Refused
    assert error.word == "forbidden"
    assert error.reason == "listed"
    assert error.message == "deep refuses this word"


async def test_unexpected_server_error_arrives_as_remote_error(drivers: Drivers) -> None:
    with pytest.raises(herd.RemoteError) as caught, herd.deadline(5.0):
        await drivers.deep.explode("the flux capacitor melted")
    error = caught.value
    assert type(error) is herd.RemoteError
    assert error.service == "deep"
    assert error.method == "explode"
    assert error.kind == "internal"
    assert "RuntimeError" in error.message
    assert "the flux capacitor melted" in error.message
    # The service survives its handler's failure.
    with herd.deadline(5.0):
        assert (await drivers.deep.echo("still here")).text == "still here"


async def test_a_request_that_arrives_expired_is_refused_before_the_handler_runs(
    chain: Chain, drivers: Drivers
) -> None:
    body = msgspec.msgpack.encode(["late", False])
    before = await stats(drivers.deep)
    async with aiohttp.ClientSession() as session:
        for expired in ("0", "-250"):
            answer = await raw_request(
                session,
                chain.deep.address,
                "/rpc/deep/echo",
                body=body,
                headers={"Content-Type": MSGPACK, "x-herd-deadline-ms": expired},
            )
            assert answer.status == 504
            assert answer.error()["kind"] == "deadline_exceeded"
        assert (await stats(drivers.deep))["started"] == before["started"]

        # The same request with time left does run: the refusal above was the deadline's doing.
        answer = await raw_request(
            session,
            chain.deep.address,
            "/rpc/deep/echo",
            body=body,
            headers={"Content-Type": MSGPACK, "x-herd-deadline-ms": "2000"},
        )
        assert answer.status == 200
        echo = msgspec.msgpack.decode(answer.body)
        assert echo["text"] == "late"
        assert 0 < echo["budgets_ms"][0] <= 2000
    assert (await stats(drivers.deep))["started"] == before["started"] + 1


async def test_sigterm_lets_in_flight_work_finish_refuses_new_work_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    with service_process("deep", tmp_path) as deep:
        driver = herd.driver(Deep, address=deep.address, policy=ONE_ATTEMPT)
        try:

            async def slow_call() -> str:
                with herd.deadline(20.0):
                    return (await driver.slow("drained", 2.0)).text

            in_flight = asyncio.create_task(slow_call())
            await eventually(lambda: stats(driver), lambda now: now["running"] == 1)

            deep.terminate()
            async with aiohttp.ClientSession() as session:
                health = await eventually(
                    lambda: raw_request(session, deep.address, "/health", method="GET"),
                    lambda answer: answer.status == 503,
                )
            assert msgspec.json.decode(health.body)["ready"] is False
            assert not in_flight.done()  # so the server is still draining, not yet closed

            with pytest.raises(herd.Overloaded), herd.deadline(5.0):
                await driver.echo("too late")

            assert await in_flight == "drained"
            assert await asyncio.to_thread(deep.wait, 15.0) == 0
        finally:
            await driver.aclose()
    assert "Traceback" not in deep.output()

    # Once it has exited, nothing listens there any more: a call is refused as Unavailable.
    driver = herd.driver(Deep, address=deep.address, policy=ONE_ATTEMPT)
    try:
        with pytest.raises(herd.Unavailable), herd.deadline(5.0):
            await driver.echo("gone")
    finally:
        await driver.aclose()


async def test_a_hung_dependency_is_blamed_by_the_service_that_calls_it(tmp_path: Path) -> None:
    """deep stopped (SIGSTOP): the middle's own deadline scope ends every relay, and the middle's
    driver still counts each as deep's timeout, so its breaker for deep opens (the blame lands
    where the hang is, not one hop up)."""
    with (
        service_process("deep", tmp_path) as deep,
        # The fixed cap: an adaptive limit would shed some of the 30 relays as the hang raises
        # the middle's latency (docs/overload.md), and this test is about blame, not admission.
        service_process("middle", tmp_path, deep.address, {"HERD_LIMIT": "fixed"}) as middle,
    ):
        middle_driver = herd.driver(Middle, address=middle.address, policy=ONE_ATTEMPT)
        os.kill(deep.pid, signal.SIGSTOP)
        try:

            async def relay(index: int) -> str:
                try:
                    with herd.deadline(0.3):
                        await middle_driver.relay(f"r{index}")
                except herd.HerdError as exc:
                    return type(exc).__name__
                return "answered"

            outcomes = await asyncio.gather(*(relay(i) for i in range(30)))
            assert set(outcomes) == {"DeadlineExceeded"}, outcomes
            async with aiohttp.ClientSession() as session:
                seen = await raw_request(
                    session, middle.address, "/herd/dependencies", method="GET"
                )
            deep_seen = json.loads(seen.body)["deep"]
            assert deep_seen["timeout"] >= 20, (deep_seen, middle.output()[-3000:])
            assert deep_seen["breaker"]["state"] == "open", deep_seen
        finally:
            os.kill(deep.pid, signal.SIGCONT)
            await middle_driver.aclose()
