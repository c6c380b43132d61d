# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""Identity with `herd.serve` and drivers in one process over real sockets: what a handler learns
of its caller, admin methods for the control plane's identity or the token, allow rules that
need identities, and app files whose allow rules name no service."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import herd
from herd._cloud.app import load
from herd._cloud.launch.ca import CertificateAuthority
from herd._model.identity import CONTROL, Identity
from herd._wire import tls


class Vault(herd.Interface, name="vault"):
    @herd.method(idempotent=True)
    async def whoami(self) -> str: ...

    @herd.method(admin=True)
    async def rotate(self) -> bool: ...


class VaultService(Vault):
    async def whoami(self) -> str:
        caller = herd.caller()
        return "nobody" if caller is None else caller.uri

    async def rotate(self) -> bool:
        return True


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[tuple[CertificateAuthority, Path]]:
    yield CertificateAuthority("test"), tmp_path


def identity(made: tuple[CertificateAuthority, Path], service: str) -> Path:
    authority, directory = made
    who = Identity("test", service, service, f"{service}-1")
    return authority.write(who, directory / service)


@contextlib.contextmanager
def acting_as(directory: Path) -> Iterator[None]:
    """Drivers connect with the identity in `directory` (transports are made at the first
    call, so the calls go inside too)."""
    previous = tls.set_client_context(tls.client_context(directory))
    try:
        yield
    finally:
        tls.set_client_context(previous)


async def test_the_handler_knows_its_caller_and_admin_needs_the_control_plane_or_the_token(
    authority: tuple[CertificateAuthority, Path],
) -> None:
    server_tls = tls.server_context(identity(authority, "vault"))
    edge, control = identity(authority, "edge"), identity(authority, CONTROL)
    async with herd.serve(VaultService(), tls=server_tls, admin_token="secret") as server:
        with acting_as(edge):
            async with herd.driver(Vault, address=server.address) as vault:
                assert await vault.whoami() == "spiffe://herd.local/test/edge/edge/edge-1"
                with pytest.raises(herd.Forbidden, match="control plane or the admin token"):
                    await vault.rotate()
            async with herd.driver(Vault, address=server.address, token="secret") as vault:
                assert await vault.rotate()
        with acting_as(control):
            async with herd.driver(Vault, address=server.address) as vault:
                assert await vault.rotate()


async def test_allow_rules_name_services_and_the_control_plane_is_always_allowed(
    authority: tuple[CertificateAuthority, Path],
) -> None:
    server_tls = tls.server_context(identity(authority, "vault"))
    async with herd.serve(VaultService(), tls=server_tls, allow=["edge"]) as server:
        for service, allowed in (("edge", True), ("movie", False), (CONTROL, True)):
            with acting_as(identity(authority, service)):
                async with herd.driver(Vault, address=server.address) as vault:
                    if allowed:
                        assert (await vault.whoami()).endswith(f"/{service}-1")
                    else:
                        with pytest.raises(herd.Forbidden, match="take calls from movie"):
                            await vault.whoami()


async def test_without_identities_the_handler_sees_nobody_and_allow_rules_are_refused() -> None:
    async with (
        herd.serve(VaultService()) as server,
        herd.driver(Vault, address=server.address) as vault,
    ):
        assert await vault.whoami() == "nobody"
    with pytest.raises(herd.ConfigurationError, match="allow rules need identities"):
        herd.serve(VaultService(), allow=["edge"])


@pytest.mark.parametrize(
    ("allow", "problem"),
    [('["edgy"]', r"allow names no service of this app: \['edgy'\]")],
)
def test_an_app_whose_allow_rules_name_no_service_is_refused(
    tmp_path: Path, allow: str, problem: str
) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        'name = "t"\n[[groups]]\nservice = "edge"\nmodule = "m"\n'
        f'[[groups]]\nservice = "movie"\nmodule = "m"\nallow = {allow}\n'
    )
    with pytest.raises(herd.ConfigurationError, match=problem):
        load(path)
    path.write_text('name = "t"\n[[groups]]\nservice = "herd-control"\nmodule = "m"\n')
    with pytest.raises(herd.ConfigurationError, match="the control plane's name"):
        load(path)
