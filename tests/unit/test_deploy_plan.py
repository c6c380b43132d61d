"""What a deploy checks before it starts anything: the app file's `[[versions]]` and `[deploy]`,
and refusals of `herd deploy` that change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd._cloud.app import App, GroupSpec, load
from herd._cloud.deploy import Deployer
from herd._cloud.interface import DeployRefused
from herd._model.errors import ConfigurationError
from herd._process.registry_client import RegistryResolver

APP = """
name = "t"
[[groups]]
service = "movie"
module = "m"
instances = 2
{extra}
"""


def _app(tmp_path: Path, extra: str = "") -> App:
    path = tmp_path / "app.toml"
    path.write_text(APP.format(extra=extra))
    return load(path)


class _Fleet:
    """The controller's side, for deploys that must be refused before they touch it."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.resolver: RegistryResolver | None = None
        self.registry_address = "127.0.0.1:1"
        self.groups = list(app.spec.groups)
        self.changes: list[str] = []

    def group_specs(self) -> list[GroupSpec]:
        return self.groups

    def add_group(self, spec: GroupSpec, count: int) -> None:
        self.changes.append(f"add {spec.name}")

    def set_count(self, group: str, count: int) -> None:
        self.changes.append(f"count {group}")

    def remove_group(self, group: str) -> None:
        self.changes.append(f"remove {group}")

    def addresses(self, group: str) -> list[str]:
        return []

    def record(self, kind: str, **detail: object) -> None:
        self.changes.append(kind)


def test_versions_and_deploy_settings_are_checked(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        '[[versions]]\nservice = "movie"\nversion = "v002"\ninstances = 3\n'
        'env = { FLIX_FAIL_RATE = "0.1" }\n[deploy]\nanalysis_s = 5\ninterval_s = 1\n',
    )
    (version,) = app.spec.versions
    assert version.instances == 3 and app.spec.deploy.analysis_s == 5
    with pytest.raises(ConfigurationError, match="needs a group"):
        _app(tmp_path, '[[versions]]\nservice = "nope"\nversion = "v002"\n')
    with pytest.raises(ConfigurationError, match="canary_steps"):
        _app(tmp_path, "[deploy]\ncanary_steps = [50, 20, 100]\n")
    with pytest.raises(ConfigurationError, match="at most 50"):
        _app(tmp_path, "[deploy]\ncanary_steps = [60, 100]\n")
    with pytest.raises(ConfigurationError, match="marginal_score"):
        _app(tmp_path, "[deploy]\nmarginal_score = 99\n")


def test_a_baseline_group_is_named_apart() -> None:
    group = GroupSpec(service="movie", module="m", version="v001", detail="baseline")
    assert group.name == "movie-baseline-v001"


@pytest.mark.parametrize(
    ("service", "version", "strategy", "settings", "says"),
    [
        ("movie", "v002", "blue-green", {}, "strategy"),
        ("nope", "v002", "red-black", {}, "no server group"),
        ("movie", "v001", "red-black", {}, "already runs"),
        ("movie", "2", "red-black", {}, "looks like v002"),
        ("movie", "v002", "red-black", {"instances": "zero"}, "whole number"),
        ("movie", "v002", "red-black", {"lowercase": "x"}, "UPPER_CASE"),
    ],
)
async def test_bad_deploys_are_refused_before_anything_starts(
    tmp_path: Path,
    service: str,
    version: str,
    strategy: str,
    settings: dict[str, str],
    says: str,
) -> None:
    fleet = _Fleet(_app(tmp_path))
    deployer = Deployer(fleet, fleet.app.spec.deploy)
    try:
        with pytest.raises(DeployRefused, match=says):
            await deployer.deploy(service, version, strategy, settings)
        assert fleet.changes == [] and deployer.views() == []
        with pytest.raises(DeployRefused, match="no deploy of movie"):
            await deployer.rollback("movie")
        with pytest.raises(DeployRefused, match="rollback window"):
            await deployer.confirm("movie")
    finally:
        await deployer.close()


async def test_an_instance_ending_while_the_control_plane_stops_is_let_go_quietly(
    tmp_path: Path,
) -> None:
    fleet = _Fleet(_app(tmp_path))
    deployer = Deployer(fleet, fleet.app.spec.deploy)
    await deployer.close()
    # `herd down`: instances exit after the deployer closed; forgetting them raises nothing.
    await deployer.forget("movie-v001-a-1")
