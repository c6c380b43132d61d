"""One suite, two backends: the registry keeps the same promises in memory and on a real etcd.

Every test in the first part runs once on `MemoryBackend` and once on `EtcdBackend` over a
one-member etcd started from the system's binary for this module. The second part is about
what only etcd has: a table that outlives etcd's loss and the registry's restart, and keys that
anyone with access to etcd could write.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aetcd  # type: ignore[import-untyped]
import msgspec
import pytest

import herd
from herd._model.instance import Instance, Status
from herd._process.registry_api import RegistryApi
from herd._process.registry_client import RegistryResolver
from herd._registry.backend import Backend, MemoryBackend
from herd._registry.etcd import EtcdBackend
from herd._registry.service import RegistryService
from tests.helpers import eventually, free_port
from tests.integration import test_registry
from tests.integration.etcd import EtcdCluster

#: Short, so expiry tests are quick; etcd counts whole seconds.
LEASE_S = 1.0


def instance(name: str, status: Status = Status.UP, port: int = 1) -> Instance:
    return msgspec.structs.replace(test_registry.instance(name, port=port), status=status)


def ids(backend: Backend) -> list[str]:
    return sorted(i.id for i in backend.snapshot()[1])


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=1)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["memory", "etcd"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend(LEASE_S)
        return
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    # A prefix of its own per test: the module shares one etcd.
    made = EtcdBackend(cluster.endpoints, LEASE_S, prefix=f"/test-{secrets.token_hex(4)}/")
    await made.start()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def service(backend: Backend) -> AsyncIterator[RegistryService]:
    made = RegistryService(backend, identities=False, lease_s=LEASE_S)
    made.start_evicting(every_s=0.05)
    try:
        yield made
    finally:
        await made.stop_evicting()


# -- the same promises on both backends --------------------------------------------------------


async def test_register_renew_set_status_deregister(backend: Backend) -> None:
    version, instances = backend.snapshot()
    assert instances == []
    assert await backend.register(instance("deep-a-1"), limit=10)
    moved, instances = backend.snapshot()
    assert moved > version and instances == [instance("deep-a-1")]

    assert await backend.renew("deep-a-1")
    assert not await backend.renew("nobody")

    assert await backend.set_status("deep-a-1", Status.OUT_OF_SERVICE)
    assert backend.snapshot()[1] == [instance("deep-a-1", Status.OUT_OF_SERVICE)]
    assert backend.snapshot()[0] > moved
    assert not await backend.set_status("nobody", Status.UP)

    # Registering again replaces the entry (a restarted instance on another port).
    assert await backend.register(instance("deep-a-1", port=2), limit=10)
    assert backend.snapshot()[1] == [instance("deep-a-1", port=2)]

    assert await backend.deregister("deep-a-1")
    assert backend.snapshot()[1] == []
    assert not await backend.deregister("deep-a-1")


async def test_a_full_table_refuses_new_instances_only(backend: Backend) -> None:
    assert await backend.register(instance("deep-a-1"), limit=2)
    assert await backend.register(instance("deep-a-2"), limit=2)
    assert not await backend.register(instance("deep-a-3"), limit=2)
    assert await backend.register(instance("deep-a-2", Status.DOWN), limit=2)
    assert ids(backend) == ["deep-a-1", "deep-a-2"]


async def test_a_lease_runs_out_without_renewal_and_holds_with_it(
    service: RegistryService,
) -> None:
    backend = service.backend
    await backend.register(instance("quiet"), limit=10)
    await backend.register(instance("renewing"), limit=10)
    registered = time.monotonic()

    async def renew() -> None:
        while True:
            assert await backend.renew("renewing")
            await asyncio.sleep(LEASE_S / 4)

    renewer = asyncio.create_task(renew())
    try:
        while "quiet" in ids(backend):
            await backend.wait_change(backend.snapshot()[0], 5.0)
        gone_after = time.monotonic() - registered
        # etcd expires on its own clock, checked every 500 ms: a generous margin either way.
        assert LEASE_S * 0.9 <= gone_after <= LEASE_S + 1.5, gone_after
        await asyncio.sleep(2 * LEASE_S)
        assert ids(backend) == ["renewing"]
        assert not renewer.done()
    finally:
        renewer.cancel()
    assert not await backend.renew("quiet")


async def test_wait_change_wakes_on_a_change_and_times_out_without(backend: Backend) -> None:
    version = backend.snapshot()[0]
    began = time.monotonic()
    await backend.wait_change(version, 0.3)
    assert 0.25 <= time.monotonic() - began < 1.0

    waiter = asyncio.create_task(backend.wait_change(version, 10.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    began = time.monotonic()
    await backend.register(instance("deep-a-1"), limit=10)
    await waiter
    assert time.monotonic() - began < 0.5
    # A version already behind answers at once.
    began = time.monotonic()
    await backend.wait_change(version, 10.0)
    assert time.monotonic() - began < 0.1


async def test_a_change_reaches_every_driver_within_one_second(service: RegistryService) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    api = herd.driver(RegistryApi, address=address, policy=herd.CallPolicy(attempts=1))
    resolvers = [RegistryResolver(address) for _ in range(3)]
    async with herd.serve(service, port=port):
        try:
            for resolver in resolvers:
                await resolver.start()
            for name in ("deep-a-1", "deep-a-2"):
                with herd.deadline(2.0):
                    await api.register(instance(name))
                changed = time.monotonic()
                await eventually(
                    lambda name=name: all(
                        name in {i.id for i in r.instances("deep")} for r in resolvers
                    ),
                    timeout=5.0,
                    what=f"{name} reaches every driver",
                )
                assert time.monotonic() - changed < 1.0
        finally:
            for resolver in resolvers:
                await resolver.close()
            await api.aclose()


# -- what only etcd has -------------------------------------------------------------------------


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path, size=1)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.timeout(60)
async def test_the_table_outlives_etcd_and_follows_it_again(own_etcd: EtcdCluster) -> None:
    backend = EtcdBackend(own_etcd.endpoints, LEASE_S)
    await backend.start()
    try:
        await backend.register(instance("deep-a-1"), limit=10)
        epoch = backend.epoch
        own_etcd.kill(0)
        # Longer than a lease: with etcd gone nothing expires, and nothing is forgotten.
        await asyncio.sleep(3 * LEASE_S)
        assert ids(backend) == ["deep-a-1"]
        with pytest.raises(aetcd.ConnectionFailedError):
            await backend.register(instance("deep-a-2"), limit=10)

        await asyncio.to_thread(own_etcd.start(0).wait_ready)
        back = time.monotonic()
        # Back on its data: the lease was extended when the member led again, and a write after
        # that reaches the mirror through the watch, which followed etcd back by itself.
        assert await backend.register(instance("deep-a-3"), limit=10)
        assert time.monotonic() - back < 1.0
        assert ids(backend) == ["deep-a-1", "deep-a-3"]
        assert backend.epoch == epoch
    finally:
        await backend.close()


async def test_a_second_registry_on_the_same_etcd_continues_the_first(
    etcd: EtcdCluster,
) -> None:
    prefix = f"/test-{secrets.token_hex(4)}/"
    first = EtcdBackend(etcd.endpoints, LEASE_S, prefix=prefix)
    await first.start()
    try:
        await first.register(instance("deep-a-1"), limit=10)
        second = EtcdBackend(etcd.endpoints, LEASE_S, prefix=prefix)
        await second.start()
        try:
            # Same epoch and version: a client moving from one to the other keeps its copy.
            assert (second.epoch, second.snapshot()) == (first.epoch, first.snapshot())
            assert await second.renew("deep-a-1")
            await second.deregister("deep-a-1")
            await eventually(lambda: ids(first) == [], timeout=2.0, what="the first sees it")
        finally:
            await second.close()
    finally:
        await first.close()


async def test_keys_that_hold_no_entry_are_skipped(etcd: EtcdCluster) -> None:
    prefix = f"/test-{secrets.token_hex(4)}/"
    backend = EtcdBackend(etcd.endpoints, LEASE_S, prefix=prefix)
    await backend.start()
    try:
        version = backend.snapshot()[0]
        await etcd.put(f"{prefix}instances/junk".encode(), b"not json")
        await etcd.put(
            f"{prefix}instances/liar".encode(), msgspec.json.encode(instance("someone-else"))
        )
        await etcd.put(
            f"{prefix}instances/deep-a-1".encode(), msgspec.json.encode(instance("deep-a-1"))
        )
        await eventually(lambda: ids(backend), timeout=2.0, what="the good entry arrives")
        assert ids(backend) == ["deep-a-1"]
        assert backend.snapshot()[0] > version
    finally:
        await backend.close()
