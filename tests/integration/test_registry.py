"""The registry: leases, watches, epochs (in process, with a manual clock), then with real
processes: changes reach a driver within 1 s, and calls outlive the registry itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import herd
from herd._model.clock import ManualClock
from herd._model.instance import Instance, Status
from herd._process.registry_api import RegistryApi
from herd._process.registry_client import RegistryResolver
from herd._registry.service import RegistryService
from tests.helpers import eventually, free_port
from tests.integration.cluster import Cluster, Load, describe

LEASE_S = 3.0


def instance(name: str = "deep-a-1", zone: str = "a", port: int = 1) -> Instance:
    return Instance(
        id=name,
        service="deep",
        group="deep-v001",
        version="v001",
        zone=zone,
        host="127.0.0.1",
        port=port,
        status=Status.UP,
    )


async def register(registry: RegistryApi, entry: Instance) -> float:
    """Register `entry`."""
    return await registry.register(entry)


def registry() -> tuple[RegistryService, ManualClock]:
    clock = ManualClock()
    return RegistryService(identities=False, lease_s=LEASE_S, clock=clock), clock


def ids(service: RegistryService) -> list[str]:
    return sorted(i.id for i in service.backend.snapshot()[1])


# -- in process, manual clock ----------------------------------------------------------------------


async def test_lease_expiry_evicts_after_the_lease_without_renewal() -> None:
    service, clock = registry()
    assert await register(service, instance()) == LEASE_S
    clock.advance(LEASE_S - 0.01)
    assert await service.backend.evict_expired() == []
    assert ids(service) == ["deep-a-1"]
    clock.advance(0.02)
    assert [i.id for i in await service.backend.evict_expired()] == ["deep-a-1"]
    assert ids(service) == []
    # A renewal after eviction is refused, which tells the instance to register again.
    assert await service.renew("deep-a-1") is False


async def test_renewals_keep_an_instance_registered() -> None:
    service, clock = registry()
    await register(service, instance())
    for _ in range(10):  # 25 s, far past one lease
        clock.advance(LEASE_S - 0.5)
        assert await service.renew("deep-a-1") is True
        assert await service.backend.evict_expired() == []
    assert ids(service) == ["deep-a-1"]
    clock.advance(LEASE_S)
    assert [i.id for i in await service.backend.evict_expired()] == ["deep-a-1"]


async def test_only_the_instance_that_stopped_renewing_is_evicted() -> None:
    service, clock = registry()
    await register(service, instance("deep-a-1"))
    await register(service, instance("deep-b-2", zone="b"))
    clock.advance(2.0)
    await service.renew("deep-b-2")
    clock.advance(1.5)
    assert [i.id for i in await service.backend.evict_expired()] == ["deep-a-1"]
    assert ids(service) == ["deep-b-2"]


async def test_watch_returns_when_the_table_changes() -> None:
    service, _ = registry()
    first = await service.watch("", -1)  # not this registry's epoch: answers at once

    async def watch() -> object:
        with herd.deadline(5.0):
            return await service.watch(first.epoch, first.version)

    waiting = asyncio.create_task(watch())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done(), "the watch answered without a change"
    await register(service, instance())
    async with asyncio.timeout(1.0):
        changed = await waiting
    assert changed.version > first.version  # type: ignore[attr-defined]
    assert [i.id for i in changed.instances] == ["deep-a-1"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("change", ["status", "deregister", "evict"])
async def test_every_kind_of_change_wakes_a_watch(change: str) -> None:
    service, clock = registry()
    await register(service, instance())
    start = await service.watch("", -1)

    async def watch() -> object:
        with herd.deadline(5.0):
            return await service.watch(start.epoch, start.version)

    waiting = asyncio.create_task(watch())
    await asyncio.sleep(0)
    if change == "status":
        assert await service.set_status("deep-a-1", Status.OUT_OF_SERVICE)
    elif change == "deregister":
        assert await service.deregister("deep-a-1")
    else:
        clock.advance(LEASE_S)
        assert await service.backend.evict_expired()
    async with asyncio.timeout(1.0):
        changed = await waiting
    assert changed.version > start.version  # type: ignore[attr-defined]


async def test_watch_without_change_answers_before_the_callers_deadline() -> None:
    service, _ = registry()
    start = await service.watch("", -1)
    began = time.monotonic()
    with herd.deadline(0.4):
        same = await service.watch(start.epoch, start.version)
    took = time.monotonic() - began
    assert same.version == start.version
    assert 0.2 <= took < 0.4


async def test_epoch_changes_when_the_registry_restarts() -> None:
    before, _ = registry()
    await register(before, instance())
    seen = await before.watch("", -1)
    after, _ = registry()  # a restart: a new process, an empty table
    assert after.backend.epoch != before.backend.epoch
    began = time.monotonic()
    with herd.deadline(5.0):
        fresh = await after.watch(seen.epoch, seen.version)  # the old epoch: answers at once
    assert time.monotonic() - began < 0.5
    assert fresh.epoch == after.backend.epoch
    assert fresh.instances == []


async def test_warm_only_after_a_full_lease() -> None:
    service, clock = registry()
    assert not service.warm()
    assert (await service.watch("", -1)).warm is False
    clock.advance(LEASE_S - 0.01)
    assert not service.warm()
    clock.advance(0.01)
    assert service.warm()
    assert (await service.watch("", -1)).warm is True


async def test_resolver_keeps_its_copy_until_a_restarted_registry_is_warm() -> None:
    """Served in process (real clock, 1 s lease): after a restart the resolver merges what the new
    registry knows into its old copy, and adopts the new table only once the registry is warm."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    api = herd.driver(RegistryApi, address=address, policy=herd.CallPolicy(attempts=1))
    resolver = RegistryResolver(address, poll_s=1.0, retry_s=0.05)
    first = RegistryService(identities=False, lease_s=1.0)
    try:
        async with herd.serve(first, port=port):
            with herd.deadline(1.0):
                await register(api, instance("deep-a-1"))
                await register(api, instance("deep-b-2", zone="b"))
            await resolver.start()
            await eventually(
                lambda: len(resolver.instances("deep")) == 2, timeout=2.0, what="both seen"
            )
        second = RegistryService(identities=False, lease_s=1.0)
        async with herd.serve(second, port=port):
            restarted = time.monotonic()
            with herd.deadline(1.0):
                await register(api, instance("deep-c-3", zone="c"))
            await eventually(
                lambda: (
                    {i.id for i in resolver.instances("deep")}
                    == {"deep-a-1", "deep-b-2", "deep-c-3"}
                ),
                timeout=1.0,
                what="the newcomer merged into the old copy",
            )
            # The others never came back: once the registry is warm, its table is the truth.
            await eventually(
                lambda: {i.id for i in resolver.instances("deep")} == {"deep-c-3"},
                timeout=3.0,
                what="the warm table adopted",
            )
            assert time.monotonic() - restarted >= 1.0 - 0.1
    finally:
        await resolver.close()
        await api.aclose()


async def test_resolver_resumes_at_once_after_a_long_outage() -> None:
    """However many watches failed while the registry was down, the first change after it is back
    reaches the resolver within 1 s (no circuit breaker holds the resolver back)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    api = herd.driver(RegistryApi, address=address, policy=herd.CallPolicy(attempts=1))
    resolver = RegistryResolver(address, poll_s=1.0, retry_s=0.05)
    watches = herd.client_metrics.of("registry")

    def failed() -> int:
        return watches.failure + watches.short_circuited

    try:
        async with herd.serve(RegistryService(identities=False, lease_s=1.0), port=port):
            await resolver.start()
        failed_before = failed()
        # Down long enough for more failed watches than a breaker's volume threshold.
        await eventually(
            lambda: failed() - failed_before >= 2 * herd.BreakerPolicy().volume_threshold,
            timeout=10.0,
            what="the resolver keeps trying",
        )
        async with herd.serve(RegistryService(identities=False, lease_s=1.0), port=port):
            with herd.deadline(1.0):
                await register(api, instance("deep-a-1"))
            registered = time.monotonic()
            await eventually(
                lambda: [i.id for i in resolver.instances("deep")] == ["deep-a-1"],
                timeout=10.0,
                what="the resolver sees the change",
            )
            assert time.monotonic() - registered <= 1.0
    finally:
        await resolver.close()
        await api.aclose()


async def test_closing_one_registry_driver_leaves_the_others_following(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Drivers that follow the registry share one watch; closing one releases its share only."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    monkeypatch.setenv("HERD_REGISTRY", address)
    api = herd.driver(RegistryApi, address=address, policy=herd.CallPolicy(attempts=1))
    async with herd.serve(RegistryService(identities=False, lease_s=5.0), port=port):
        first = herd.driver(RegistryApi)
        async with herd.driver(RegistryApi) as second:
            resolver = second._herd_caller.resolver  # type: ignore[attr-defined]
            await first.aclose()
            with herd.deadline(1.0):
                await register(api, instance("deep-a-1"))
            # A change made after the first driver closed still reaches the second.
            await resolver.start()
            await eventually(
                lambda: [i.id for i in resolver.instances("deep")] == ["deep-a-1"],
                timeout=2.0,
                what="the second driver still follows the registry",
            )
        with pytest.raises(RuntimeError, match="closed"):
            resolver.instances("deep")
    await api.aclose()


# -- real processes --------------------------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(tmp_path, lease_s=LEASE_S)
    try:
        yield made
    finally:
        await made.aclose()


@pytest.mark.timeout(90)
async def test_changes_reach_a_driver_within_one_second(cluster: Cluster) -> None:
    members = await cluster.start(2)
    deep, resolver = cluster.driver(zone="a")
    await cluster.wait_seen(resolver, [m.id for m in members])

    # A new instance UP: registered before it announces itself ready.
    newcomer = await cluster.start_instance("c", wait_up=False)
    await cluster.wait_seen(resolver, [newcomer.id], timeout=5.0)
    assert time.monotonic() - newcomer.process.ready_at <= 1.0
    with herd.deadline(1.0):
        assert (await deep.echo("hello")).text == "hello"

    # An instance leaving gracefully: deregistered as soon as it is signalled.
    leaving = members[1]
    leaving.process.terminate()
    signalled = time.monotonic()
    await cluster.wait_seen(resolver, absent=[leaving.id], timeout=5.0)
    assert time.monotonic() - signalled <= 1.0
    assert await asyncio.to_thread(leaving.process.wait) == 0

    # An instance that dies without a word: evicted once its lease runs out, and pushed at once.
    dead = members[0]
    dead.process.kill()
    killed = time.monotonic()
    await cluster.wait_seen(resolver, absent=[dead.id], timeout=LEASE_S + 5.0)
    assert time.monotonic() - killed <= LEASE_S + 1.0
    assert {i.id for i in resolver.instances("deep")} == {newcomer.id}


@pytest.mark.timeout(180)
async def test_calls_outlive_the_registry_and_instances_reregister_after_restart(
    cluster: Cluster,
) -> None:
    members = await cluster.start(3)
    deep, resolver = cluster.driver(zone="a")
    await cluster.wait_seen(resolver, [m.id for m in members])
    pids = {m.id: m.process.pid for m in members}
    assert cluster.registry is not None
    cluster.registry.kill()
    assert await asyncio.to_thread(cluster.registry.wait) < 0
    with pytest.raises(herd.HerdError):
        await cluster.table()

    # 10 s on the cached copy (three times the 3 s lease the instances can no longer renew), a
    # call every 50 ms.
    load = Load(lambda i: deep.echo(f"call {i}"), rate=20, deadline=1.0).start(duration=10)
    outcomes = await load.wait()
    assert len(outcomes) == 200
    assert not load.errors, describe(load.errors, load.started_at)
    assert all(o.value.text == f"call {o.index}" for o in outcomes)
    assert {i.id for i in resolver.instances("deep")} == set(pids)

    # Restarted on the same port, with an empty table: the instances register again by themselves.
    await cluster.start_registry()
    await cluster.wait_listed(pids, timeout=10.0)
    for member in members:
        assert member.process.alive and member.process.pid == pids[member.id]
    assert {i.port for i in (await cluster.listed()).values()} == {
        int(m.process.address.rpartition(":")[2]) for m in members
    }

    # The driver follows the new registry at once: a change made now reaches it within 1 s.
    newcomer = await cluster.start_instance("b", wait_up=False)
    await cluster.wait_seen(resolver, [newcomer.id], timeout=10.0)
    assert time.monotonic() - newcomer.process.ready_at <= 1.0
    with herd.deadline(1.0):
        assert (await deep.echo("after")).text == "after"
