"""TransportPool under churn: transports of instances that left are closed after a grace
period, so a long-lived client holds transports only for the instances that exist."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import herd
from herd._client.attempts import Attempt, AttemptLoop, Backoff
from herd._client.balance import Balancer
from herd._client.budget import RetryBudget
from herd._client.pool import TransportPool
from tests.helpers import eventually


class Fake:
    """A transport that only knows whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Churning:
    """A resolver whose instances come and go: a new list on every change, like the registry's."""

    def __init__(self) -> None:
        self.live: list[herd.Instance] = []
        self.made = 0

    def arrive(self) -> herd.Instance:
        self.made += 1
        instance = herd.Instance(
            id=f"i{self.made}",
            service="svc",
            group="svc-v001",
            version="v001",
            zone="a",
            host="10.0.0.1",
            port=self.made,
            status=herd.Status.UP,
        )
        self.live = [*self.live, instance]
        return instance

    def depart(self, victim: herd.Instance) -> None:
        self.live = [i for i in self.live if i is not victim]

    def instances(self, service: str) -> Sequence[herd.Instance]:
        return self.live

    async def start(self) -> None:
        """Nothing to follow."""

    async def close(self) -> None:
        """Nothing to stop."""


async def test_a_thousand_arrivals_and_departures_leave_the_pool_bounded() -> None:
    resolver = Churning()
    made: list[Fake] = []

    def make(instance: herd.Instance) -> Fake:
        made.append(Fake())
        return made[-1]

    pool: TransportPool[Fake] = TransportPool(make, grace_s=0.0)
    loop = AttemptLoop(
        "svc",
        resolver,
        Balancer("a", rng=random.Random(1)),
        RetryBudget(),
        Backoff(0.0, 0.0),
        min_useful=0.001,
        departed=pool.drop,
    )

    async def send(attempt: Attempt) -> None:
        pool.get(attempt.instance)

    for _ in range(5):
        resolver.arrive()
    largest = 0
    for _ in range(1000):
        resolver.arrive()
        resolver.depart(resolver.live[0])
        for _ in range(3):
            await loop.run(send, time.monotonic() + 1.0, 1)
        # Calls to real instances wait for answers, and the event loop turns meanwhile.
        await asyncio.sleep(0)
        largest = max(largest, len(pool))
    assert len(made) > 100
    # Five live instances, and at most the ones that left since the last grace period ended.
    await eventually(lambda: len(pool), lambda size: size <= 5, what="the pool's size")
    assert largest <= 10
    assert sum(not transport.closed for transport in made) <= 5
    await pool.close()
    assert all(transport.closed for transport in made)


async def test_a_departed_instances_transport_stays_open_through_the_grace_period() -> None:
    pool: TransportPool[Fake] = TransportPool(lambda instance: Fake(), grace_s=0.2)
    instance = Churning().arrive()
    transport = pool.get(instance)
    pool.drop(instance.id)
    assert not transport.closed
    assert pool.get(instance) is not transport, "a new transport if it comes back"
    await eventually(lambda: transport.closed, what="the departed transport closed")
    await pool.close()
