"""Server operations: /health, /metrics in Prometheus format, and the in-flight limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import herd
from tests.helpers import MSGPACK, raw_request

pytestmark = pytest.mark.timeout(60)

ONE_ATTEMPT = herd.CallPolicy(attempts=1, timeout=10.0)


class Odd(herd.ServiceError):
    number: int


class Ops(herd.Interface, name="ops"):
    async def add(self, a: int, b: int) -> int: ...

    async def even(self, number: int) -> int: ...

    async def hold(self, tag: int) -> int: ...


class OpsService(Ops):
    """`hold` stays in flight until the test releases it."""

    def __init__(self, holders: int = 0) -> None:
        self.release = asyncio.Event()
        self.held = 0
        self.all_held = asyncio.Event()
        self.holders = holders

    async def add(self, a: int, b: int) -> int:
        return a + b

    async def even(self, number: int) -> int:
        if number % 2:
            raise Odd(f"{number} is odd", number=number)
        return number

    async def hold(self, tag: int) -> int:
        self.held += 1
        if self.held >= self.holders:
            self.all_held.set()
        await self.release.wait()
        return tag


@dataclass
class Running:
    impl: OpsService
    server: herd.Server
    ops: Ops
    session: aiohttp.ClientSession


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    impl = OpsService(holders=1)
    async with herd.serve(impl) as server, aiohttp.ClientSession() as session:
        ops = herd.driver(Ops, address=server.address, policy=ONE_ATTEMPT)
        try:
            yield Running(impl, server, ops, session)
        finally:
            impl.release.set()
            await ops.aclose()


def samples(exposition: str, name: str, **labels: str) -> list[float]:
    """Values of the samples called `name` whose labels include `labels`."""
    return [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


async def metrics(running: Running) -> str:
    answer = await raw_request(running.session, running.server.address, "/metrics", method="GET")
    assert answer.status == 200
    assert answer.content_type == "text/plain"
    return answer.body.decode()


async def test_health_answers_live_and_ready_until_draining(running: Running) -> None:
    answer = await raw_request(running.session, running.server.address, "/health", method="GET")
    assert answer.status == 200
    assert json.loads(answer.body) == {"service": "ops", "live": True, "ready": True, "inflight": 0}

    assert await running.server.drain(timeout=5.0) is True
    answer = await raw_request(running.session, running.server.address, "/health", method="GET")
    assert answer.status == 503
    health = json.loads(answer.body)
    assert (health["live"], health["ready"]) == (True, False)


async def test_metrics_count_requests_by_method_and_outcome(running: Running) -> None:
    with herd.deadline(5.0):
        for n in range(3):
            assert await running.ops.add(n, 1) == n + 1
        assert await running.ops.even(4) == 4
        with pytest.raises(Odd):
            await running.ops.even(5)
    refused = await raw_request(
        running.session,
        running.server.address,
        "/rpc/ops/add",
        body=b"\xc1",
        headers={"Content-Type": MSGPACK},
    )
    assert refused.status == 400

    text = await metrics(running)
    total = "herd_server_requests_total"
    assert samples(text, total, service="ops", method="add", outcome="ok") == [3.0]
    assert samples(text, total, method="add", outcome="bad_request") == [1.0]
    assert samples(text, total, method="even", outcome="ok") == [1.0]
    assert samples(text, total, method="even", outcome="service_error") == [1.0]
    assert samples(text, total, method="hold") == []

    # The latency histogram counts what ran: a refused request never reached a handler.
    latency = "herd_server_latency_seconds"
    assert samples(text, f"{latency}_count", service="ops", method="add") == [3.0]
    assert samples(text, f"{latency}_count", method="even") == [2.0]
    buckets = samples(text, f"{latency}_bucket", method="add")
    assert len(buckets) > 5 and buckets == sorted(buckets) and buckets[-1] == 3.0
    assert samples(text, "herd_server_inflight", service="ops") == [0.0]


async def test_metrics_show_requests_in_flight(running: Running) -> None:
    async def hold() -> int:
        with herd.deadline(10.0):
            return await running.ops.hold(1)

    held = asyncio.create_task(hold())
    await asyncio.wait_for(running.impl.all_held.wait(), 5.0)
    assert samples(await metrics(running), "herd_server_inflight", service="ops") == [1.0]
    running.impl.release.set()
    assert await held == 1
    assert samples(await metrics(running), "herd_server_inflight", service="ops") == [0.0]


async def test_requests_above_the_in_flight_limit_are_refused_as_overloaded() -> None:
    impl = OpsService(holders=2)
    fixed = herd.serve(impl, max_inflight=2, limit="fixed")
    async with fixed as server, aiohttp.ClientSession() as session:
        ops = herd.driver(Ops, address=server.address, policy=ONE_ATTEMPT)
        try:

            async def hold(tag: int) -> int:
                with herd.deadline(10.0):
                    return await ops.hold(tag)

            calls = [asyncio.create_task(hold(tag)) for tag in range(4)]
            async with asyncio.timeout(5.0):
                await impl.all_held.wait()
                # The two calls over the limit are answered at once, while two are held.
                pending, answered = set(calls), 0
                while answered < 2:
                    finished, pending = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED
                    )
                    answered += len(finished)
            assert server.inflight == 2
            assert impl.held == 2
            refused = [call for call in calls if call.done()]
            assert len(refused) == 2
            for call in refused:
                error = call.exception()
                assert isinstance(error, herd.Overloaded), error
                assert (error.service, error.method) == ("ops", "hold")

            impl.release.set()
            held = [call for call in calls if call not in refused]
            assert sorted(await asyncio.gather(*held)) == sorted(calls.index(call) for call in held)

            # Below the limit again, calls go through.
            with herd.deadline(5.0):
                assert await ops.add(1, 1) == 2
            answer = await raw_request(session, server.address, "/metrics", method="GET")
            text = answer.body.decode()
            total = "herd_server_requests_total"
            assert samples(text, total, method="hold", outcome="overloaded") == [2.0]
            assert samples(text, total, method="hold", outcome="ok") == [2.0]
        finally:
            impl.release.set()
            await ops.aclose()


async def test_a_taken_port_is_a_configuration_error_naming_it(running: Running) -> None:
    port = running.server.address.rsplit(":", 1)[1]
    second = herd.Server(OpsService(), port=int(port))
    with pytest.raises(herd.ConfigurationError, match=f"127.0.0.1:{port} is taken"):
        await second.start()
