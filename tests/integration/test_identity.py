"""Who may call whom, with real processes: `herd up` gives every process a certificate from the
cloud's own authority, instances take calls only over mutual TLS, and allow rules in the app file
say which services may call a group. Here the chain runs with `deep` open to `middle` only and
`middle` to `edge` only; the test holds the control plane's or an instance's certificate, as the
cloud wrote them into its run directory.
"""

from __future__ import annotations

import ssl
import tomllib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import tomli_w

import herd
from examples.chain.interface import Deep, Edge, Middle
from herd._cloud.launch.ca import CertificateAuthority
from herd._model.identity import Identity
from herd._model.instance import Status
from herd._process.registry_api import NotAuthorized, RegistryApi
from herd._wire import tls
from tests.integration.cloud_helpers import Cloud, by_group, settled, write_app

pytestmark = pytest.mark.timeout(180)

ALLOW = {"deep": ["middle"], "middle": ["edge"]}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    directory = tmp_path_factory.mktemp("identity")
    path = write_app(directory, "chain", instances={"deep": 2, "middle": 1, "edge": 1})
    document = tomllib.loads(path.read_text())
    for group in document["groups"]:
        if group["service"] in ALLOW:
            group["allow"] = ALLOW[group["service"]]
    path.write_text(tomli_w.dumps(document))
    cloud = Cloud(path).start()
    yield cloud
    cloud.close()


async def members(chain: Cloud) -> dict[str, list[str]]:
    """Instance ids by service."""
    async with chain.api() as api:
        _, instances = await settled(api, timeout=30)
    return {
        group.split("-")[0]: [v.id for v in views] for group, views in by_group(instances).items()
    }


async def addresses(chain: Cloud) -> dict[str, list[str]]:
    async with chain.api() as api:
        _, instances = await settled(api, timeout=30)
    found: dict[str, list[str]] = {}
    for view in instances:
        found.setdefault(view.service, []).append(view.address)
    return found


async def health(address: str, context: ssl.SSLContext | None) -> int:
    """GET /health at `address`, over TLS with `context`; the status."""
    scheme = "http" if context is None else "https"
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get(f"{scheme}://{address}/health") as answer,
    ):
        return answer.status


def without_certificate(chain: Cloud) -> ssl.SSLContext:
    """TLS that trusts the cloud's authority but presents no certificate of its own."""
    state = chain.state()
    assert state is not None
    context = ssl.create_default_context(cafile=str(Path(state["tls"]) / tls.CA_FILE))
    context.check_hostname = False
    return context


def from_another_authority(chain: Cloud, directory: Path) -> ssl.SSLContext:
    """A certificate naming one of the chain's services, issued by an authority of its own
    (another cloud's, or one made up); the server's certificate is checked as usual."""
    other = CertificateAuthority("chain")
    other.write(Identity("chain", "middle", "middle-v001", "middle-v001-a1"), directory)
    context = without_certificate(chain)
    context.load_cert_chain(directory / tls.CERT_FILE, directory / tls.KEY_FILE)
    return context


async def test_without_the_clouds_certificate_every_service_port_refuses_the_connection(
    chain: Cloud, tmp_path: Path
) -> None:
    ports = await addresses(chain)
    everyone = [address for found in ports.values() for address in found] + [chain.registry]
    refusing = {
        "plain HTTP": None,
        "TLS without a certificate": without_certificate(chain),
        "a certificate from another authority": from_another_authority(chain, tmp_path / "other"),
    }
    for address in everyone:
        for what, context in refusing.items():
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                status = await health(address, context)
                pytest.fail(f"{what} at {address} answered {status}")
        # The same port answers the cloud's own certificate: it is the handshake that refused.
        assert await health(address, chain.tls()) == 200


async def test_a_caller_the_allow_rules_exclude_is_forbidden_not_retried_and_not_counted(
    chain: Cloud,
) -> None:
    ports = await addresses(chain)
    edge = (await members(chain))["edge"][0]
    with chain.identity(edge):
        deep = herd.driver(Deep, address=ports["deep"])
        try:
            caller = deep._herd_caller  # type: ignore[attr-defined]
            for _ in range(3):
                with pytest.raises(herd.Forbidden, match="does not take calls from edge"):
                    await deep.echo("hi")
            # The caller's fault: no retry elsewhere, no breaker failure, no ejection.
            assert caller.metrics.retries == 0 and caller.metrics.hedges == 0
            assert caller.breaker.snapshot().failures == 0
            assert not any(caller.balancer.is_ejected(address) for address in ports["deep"])
        finally:
            await deep.aclose()
    # Each refused call reached one instance once, and ran nothing there.
    refused = 0
    for address in ports["deep"]:
        refused += await forbidden_count(address, chain.tls())
    assert refused == 3


async def forbidden_count(address: str, context: ssl.SSLContext) -> int:
    """How many requests an instance refused as forbidden (its /metrics)."""
    connector = aiohttp.TCPConnector(ssl=context)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"https://{address}/metrics") as answer,
    ):
        text = await answer.text()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("herd_server_requests_total{") and 'outcome="forbidden"' in line
    )


async def test_allowed_callers_are_served(chain: Cloud) -> None:
    ports = await addresses(chain)
    ids = await members(chain)
    with chain.identity(ids["middle"][0]):
        async with herd.driver(Deep, address=ports["deep"]) as deep:
            assert (await deep.echo("from middle")).text == "from middle"
    with chain.identity(ids["edge"][0]):
        async with herd.driver(Middle, address=ports["middle"]) as middle:
            assert (await middle.relay("from edge")).text == "from edge"
    # Anyone of the app may call the edge (no rules); its calls down the chain are allowed.
    with chain.identity(ids["deep"][0]):
        async with herd.driver(Edge, address=ports["edge"]) as edge:
            assert (await edge.greet("down the chain")).text == "hello, down the chain"
    # The control plane may call every service.
    with chain.identity():
        async with herd.driver(Deep, address=ports["deep"]) as deep:
            assert (await deep.echo("from control")).text == "from control"


async def test_the_registry_takes_writes_about_an_instance_from_that_instance_only(
    chain: Cloud,
) -> None:
    ids = await members(chain)
    deep, edge = ids["deep"][0], ids["edge"][0]
    policy = herd.CallPolicy(attempts=1)
    with chain.identity(edge):
        async with herd.driver(RegistryApi, address=chain.registry, policy=policy) as api:
            for write in (
                lambda: api.renew(deep),
                lambda: api.set_status(deep, Status.OUT_OF_SERVICE),
                lambda: api.deregister(deep),
            ):
                with pytest.raises(
                    NotAuthorized, match=f"{edge} may not write the entry of {deep}"
                ):
                    await write()
            assert await api.renew(edge)
    async with chain.api() as api:
        _, instances = await settled(api, timeout=5)
    assert {view.id: view.status for view in instances}[deep] == "UP"
