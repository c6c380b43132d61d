"""The registry is no soft target: an unfit entry, or a write about an instance from another one,
gets a typed answer and changes nothing, huge ids cannot freeze it, its table has a limit, and
drivers skip an unfit entry that slips through. A real registry process wherever the caller is
hostile.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

import herd
from examples.chain.interface import Deep
from examples.chain.service import DeepService
from herd._cloud.launch.ca import CertificateAuthority
from herd._model.identity import Identity
from herd._model.instance import Instance, Status
from herd._process.config import TLS_DIR
from herd._process.registry_api import InvalidInstance, NotAuthorized, RegistryApi, RegistryFull
from herd._process.registry_client import Registrar, registry_resolver
from herd._registry.service import MAX_INSTANCES, RegistryService
from herd._wire import tls
from tests.helpers import ServiceProcess, eventually, free_port
from tests.integration.cloud_helpers import herd_command
from tests.integration.cluster import Cluster
from tests.integration.test_registry import instance


def entry(instance_id: str = "deep-a-1", **changes: Any) -> Instance:
    """A fit UP entry of the deep service, with `changes`."""
    return msgspec.structs.replace(instance(instance_id), **changes)


@contextlib.asynccontextmanager
async def registry_process(log_dir: Path, lease_s: float = 3.0) -> AsyncIterator[Cluster]:
    """A registry process without an identity (dev mode: anyone local may write)."""
    cluster = Cluster(log_dir, lease_s=lease_s)
    try:
        await cluster.start_registry()
        yield cluster
    finally:
        await cluster.aclose()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with registry_process(tmp_path) as made:
        yield made


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[RegistryApi]:
    """A driver of the registry with the default policy, circuit breaker included."""
    async with herd.driver(RegistryApi, address=cluster.registry_address) as driver:
        yield driver


UNFIT = [
    ("id", entry("a b")),
    ("id", entry("x" * 129)),
    ("id", entry("")),
    ("id", entry("deep\n2024-01-01 [info] forged log line")),
    ("service", entry(service="my.svc")),
    ("group", entry(group="g" * 129)),
    ("version", entry(version="v1;rm -rf")),
    ("zone", entry(zone="a/b")),
    ("host", entry(host="no such host")),
    ("host", entry(host="evil.example/x")),
    ("host", entry(host="999.1.1.1")),
    ("port", entry(port=0)),
    ("port", entry(port=70000)),
]


@pytest.mark.timeout(60)
async def test_unfit_writes_get_a_typed_answer_and_the_registry_keeps_serving(
    cluster: Cluster, api: RegistryApi
) -> None:
    metrics = herd.client_metrics.of("registry")
    failures_before = metrics.failure + metrics.short_circuited
    refusals = 0
    # More refusals than the breaker's volume threshold: an answer must never open it.
    while refusals < 2 * herd.BreakerPolicy().volume_threshold:
        for field, unfit in UNFIT:
            with herd.deadline(1.0), pytest.raises(InvalidInstance) as refused:
                await api.register(unfit)
            assert refused.value.problems[0].startswith(field), refused.value.problems
            refusals += 1
    unfit_ids: list[Callable[[], Awaitable[object]]] = [
        lambda: api.renew("a b"),
        lambda: api.set_status("x" * 129, Status.UP),
        lambda: api.deregister(""),
    ]
    for write in unfit_ids:
        with herd.deadline(1.0), pytest.raises(InvalidInstance):
            await write()
    assert metrics.failure + metrics.short_circuited == failures_before

    assert await cluster.listed() == {}
    fit = entry()
    with herd.deadline(1.0):
        await api.register(fit)
    assert await cluster.listed() == {fit.id: fit}
    assert cluster.registry is not None and cluster.registry.alive


Identities = Callable[..., ssl.SSLContext]


@contextlib.asynccontextmanager
async def registry_with_identities(directory: Path) -> AsyncIterator[tuple[str, Identities]]:
    """A registry process with an identity from a fresh authority, as `herd up` runs it; its
    address, and a maker of client contexts for identities of the same authority."""
    authority = CertificateAuthority("test")

    def identity(
        instance_id: str, service: str = "deep", group: str = "deep-v001"
    ) -> ssl.SSLContext:
        who = Identity("test", service, group, instance_id)
        return tls.client_context(authority.write(who, directory / f"{service}-{instance_id}"))

    own = authority.write(Identity("test", "herd-registry", "r", "r"), directory / "registry")
    port = free_port()
    argv = [sys.executable, "-m", "herd._registry.service", "--port", str(port)]
    registry = ServiceProcess("registry", argv, directory / "registry.log", {TLS_DIR: str(own)})
    try:
        registry.wait_ready()
        assert "writes only from the instance they are about" in registry.output()
        yield f"127.0.0.1:{port}", identity
    finally:
        registry.stop()


@contextlib.asynccontextmanager
async def registry_as(address: str, context: ssl.SSLContext) -> AsyncIterator[RegistryApi]:
    """A registry driver that presents the identity in `context`."""
    previous = tls.set_client_context(context)
    try:
        async with herd.driver(RegistryApi, address=address) as api:
            yield api
    finally:
        tls.set_client_context(previous)


async def test_with_identities_only_the_instance_itself_writes_its_entry(tmp_path: Path) -> None:
    mine, theirs = entry("deep-a-1"), entry("deep-b-2", zone="b", port=2)
    async with registry_with_identities(tmp_path) as (address, identity):
        for own in (mine, theirs):
            async with registry_as(address, identity(own.id)) as api:
                await api.register(own)
        hijack = msgspec.structs.replace(mine, host="10.9.9.9", port=9)
        posing = {
            "another instance": identity(theirs.id),
            "another service's instance of the same name": identity(mine.id, "edge", "edge-v001"),
        }
        for what, context in posing.items():
            async with registry_as(address, context) as api:
                writes: list[Callable[[], Awaitable[object]]] = [lambda: api.register(hijack)]
                if what == "another instance":
                    # (Ids are unique in a cloud: the other case can only offer itself under
                    # another service's name, which `register` checks.)
                    writes += [
                        lambda: api.renew(mine.id),
                        lambda: api.set_status(mine.id, Status.DOWN),
                        lambda: api.deregister(mine.id),
                    ]
                for write in writes:
                    with herd.deadline(1.0), pytest.raises(NotAuthorized):
                        await write()
                        pytest.fail(f"a write from {what} was accepted")
        async with registry_as(address, identity(mine.id)) as api:
            # Nothing changed: the entry keeps its address and status; its owner still writes.
            with herd.deadline(1.0):
                snapshot = await api.watch("", -1)
            assert {i.id: i for i in snapshot.instances} == {mine.id: mine, theirs.id: theirs}
            assert await api.renew(mine.id)
            assert await api.deregister(mine.id)


async def test_a_registrar_registers_and_renews(tmp_path: Path) -> None:
    async with registry_process(tmp_path, lease_s=1.0) as cluster:
        mine, once = entry("deep-a-1"), entry("deep-b-2", port=2)
        registrar = Registrar(cluster.registry_address, mine, renew_s=0.2)
        await registrar.start(Status.UP)
        try:
            async with herd.driver(RegistryApi, address=cluster.registry_address) as api:
                await api.register(once)
            # Registered later, `once` expires later: once it is evicted, `mine` would have been
            # too, had its lease not been renewed.
            await cluster.wait_listed([mine.id, once.id], timeout=2.0)
            await cluster.wait_listed(absent=[once.id], timeout=5.0)
            assert set(await cluster.listed()) == {mine.id}
        finally:
            await registrar.stop()
        await cluster.wait_listed(absent=[mine.id], timeout=2.0)


@pytest.mark.timeout(30)
async def test_huge_ids_are_refused_at_once_and_never_logged(
    cluster: Cluster, api: RegistryApi
) -> None:
    """Three registrations with 70 KB ids once froze the registry (it logged them whole)."""
    began = time.monotonic()
    for n in range(3):
        huge = entry(f"{n}" + "x" * 70_000)
        with herd.deadline(1.0), pytest.raises(InvalidInstance) as refused:
            await api.register(huge)
        assert len(str(refused.value)) < 200
        with herd.deadline(1.0), pytest.raises(InvalidInstance):
            await api.renew(huge.id)
    assert time.monotonic() - began < 1.0

    fit = entry()
    began = time.monotonic()
    with herd.deadline(1.0):
        await api.register(fit)
    await cluster.wait_listed([fit.id], timeout=1.0)
    assert time.monotonic() - began < 1.0

    registry = cluster.registry
    assert registry is not None and registry.alive
    output = await eventually(
        registry.output, lambda text: "registered" in text, what="the registration logged"
    )
    assert max(len(line) for line in output.splitlines()) < 1_000


async def test_the_table_has_a_limit_and_new_instances_beyond_it_are_refused() -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"

    registry = RegistryService(identities=False, max_instances=3)
    assert RegistryService(identities=False).max_instances == MAX_INSTANCES == 10_000
    async with (
        herd.serve(registry, port=port),
        herd.driver(RegistryApi, address=address) as api,
    ):
        for n in range(3):
            await api.register(entry(f"deep-{n}"))
        with pytest.raises(RegistryFull) as full:
            await api.register(entry("deep-3"))
        assert full.value.limit == 3
        # Those it holds still register again, and one that leaves makes room.
        await api.register(entry("deep-0", port=2))
        assert await api.deregister("deep-1")
        await api.register(entry("deep-3"))
        _, held = registry.backend.snapshot()
        assert sorted(i.id for i in held) == ["deep-0", "deep-2", "deep-3"]


async def test_drivers_skip_and_count_an_unfit_entry_that_slips_into_the_table() -> None:
    """Put straight into the backend (as a bug or another writer might), an entry with an
    impossible port or host never reaches a driver's balancer; the fit one answers every call."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    registry = RegistryService(identities=False)
    async with (
        herd.serve(registry, port=port),
        herd.serve(DeepService(fault="")) as deep_server,
    ):
        fit = entry("deep-fit", port=deep_server.port)
        unfit = [
            entry("deep-port", port=70000),
            entry("deep-host", host="no such/host"),
            entry("y" * 70_000, port=deep_server.port),
        ]
        async with herd.driver(RegistryApi, address=address) as api:
            await api.register(fit)
        for bad in unfit:
            assert await registry.backend.register(bad, limit=MAX_INSTANCES)

        resolver = registry_resolver(address)
        try:
            with capture_logs() as logs:
                await resolver.start()
                await eventually(lambda: resolver.skipped, lambda n: n == 3, what="3 skipped")
            assert list(resolver.instances("deep")) == [fit]
            warnings = [e for e in logs if e["event"] == "skipped an unfit registry entry"]
            assert len(warnings) == 3, logs
            assert all(len(repr(w)) < 500 for w in warnings), warnings

            async with herd.driver(Deep, resolver=resolver) as deep:
                for n in range(50):
                    with herd.deadline(1.0):
                        assert (await deep.echo(f"call {n}")).text == f"call {n}"

            # A later change brings the same unfit entries again: counted, not logged again.
            with capture_logs() as logs:
                await registry.backend.register(entry("deep-fit-2", port=deep_server.port), limit=9)
                await eventually(
                    lambda: {i.id for i in resolver.instances("deep")},
                    lambda ids: ids == {"deep-fit", "deep-fit-2"},
                    what="the second fit entry seen",
                )
            assert resolver.skipped == 3
            assert not [e for e in logs if e["event"] == "skipped an unfit registry entry"]
        finally:
            await resolver.close()


async def test_herd_registry_without_an_identity_says_it_runs_in_dev_mode(tmp_path: Path) -> None:
    port = free_port()
    command = [*herd_command(), "registry", "--port", str(port)]
    registry = ServiceProcess("registry", command, tmp_path / "registry.log")
    try:
        registry.wait_ready()
        assert "dev mode, any local process may write any entry" in registry.output()
        async with herd.driver(RegistryApi, address=f"127.0.0.1:{port}") as api:
            await api.register(entry())
            assert await api.renew(entry().id)
    finally:
        registry.stop()
