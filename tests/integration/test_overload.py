"""Overload at one instance: requests over the limit wait in its queue, the least critical is
shed first with an `overloaded` answer, the limit is on /metrics, and a refusal is nobody's
failure: retried elsewhere, never ejecting the instance nor opening the breaker."""

from __future__ import annotations

import asyncio

import pytest

import herd
from tests.helpers import eventually
from tests.integration.test_ops import ONE_ATTEMPT, Ops, OpsService, samples

pytestmark = pytest.mark.timeout(60)


async def test_the_least_critical_waiting_request_is_shed_for_a_critical_one() -> None:
    impl = OpsService(holders=2)
    async with (
        herd.serve(impl, max_inflight=2, max_queued=1) as server,
        herd.driver(Ops, address=server.address, policy=ONE_ATTEMPT) as ops,
    ):

        async def hold(tag: int, level: str) -> int:
            with herd.deadline(10.0), herd.routing(criticality=level):
                return await ops.hold(tag)

        held = [asyncio.create_task(hold(tag, "critical")) for tag in range(2)]
        await asyncio.wait_for(impl.all_held.wait(), 5.0)
        prefetch = asyncio.create_task(hold(2, "best_effort"))
        await eventually(lambda: server.admission.queued, what="the prefetch queued")
        click = asyncio.create_task(hold(3, "critical"))
        with pytest.raises(herd.Overloaded, match="more critical"):
            await prefetch
        impl.release.set()
        assert await asyncio.gather(*held, click) == [0, 1, 3]
        text = server.metrics.exposition().decode()
    assert samples(text, "herd_server_limit", service="ops") == [2.0]
    assert samples(text, "herd_server_shed_total", criticality="10") == [1.0]
    assert samples(text, "herd_server_requests_total", outcome="overloaded") == [1.0]


async def test_a_refusal_is_retried_elsewhere_and_counts_against_no_instance() -> None:
    full = OpsService(holders=1)
    policy = herd.CallPolicy(attempts=2, timeout=5.0)
    async with (
        herd.serve(full, max_inflight=1, limit="fixed") as busy,
        herd.serve(OpsService()) as idle,
        herd.driver(Ops, address=busy.address, policy=policy) as holder,
        herd.driver(Ops, address=[busy.address, idle.address], policy=policy) as ops,
    ):
        holding = asyncio.create_task(holder.hold(0))
        await asyncio.wait_for(full.all_held.wait(), 5.0)
        # Together, so that the busy instance (one outstanding) is chosen as often as the other.
        sums = await asyncio.gather(*(ops.add(number, 1) for number in range(40)))
        assert sums == [number + 1 for number in range(40)]
        caller = ops._herd_caller  # type: ignore[attr-defined]
        refused = busy.metrics.exposition().decode()
        assert samples(refused, "herd_server_requests_total", outcome="overloaded")[0] >= 5
        assert not any(caller.balancer.is_ejected(i.id) for i in caller.resolver.instances("ops"))
        assert caller.report()["breaker"]["failures"] == 0
        full.release.set()
        assert await holding == 0
