"""`regions` in the app file: what `herd up` accepts and refuses, and what each region runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd._cloud.app import load, region_app
from herd._model.errors import ConfigurationError

APP = """name = "t"
regions = ["us", "eu"]
zones = ["a"]
control_port = 9400
registry_port = 9500
store_port = 14000
{extra}
[[groups]]
service = "edge"
module = "m"

[[caches]]
name = "c"
port = 11300
"""
DOORS = '[front_door]\nservice = "edge"\nport = 9080\n[global_front_door]\nport = 9070\n'


def _load(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "app.toml"
    path.write_text(APP.format(extra=extra))
    return path


def test_each_region_runs_on_its_own_ports_run_directory_and_region_name(tmp_path: Path) -> None:
    app = load(_load(tmp_path, DOORS))
    us, eu = region_app(app, "us"), region_app(app, "eu")
    for regional, shift in ((us, 10), (eu, 20)):
        spec = regional.spec
        assert spec.regions == [] and spec.global_front_door is None
        assert spec.front_door is not None and spec.front_door.port == 9080 + shift
        assert (spec.control_port, spec.registry_port) == (9400 + shift, 9500 + shift)
        assert spec.store_port == 14000 + shift and spec.caches[0].port == 11300 + shift
    assert us.run_dir == app.run_dir / "us" and eu.run_dir == app.run_dir / "eu"
    assert eu.spec.env["HERD_REGION"] == "eu" and eu.spec.region == "eu"
    with pytest.raises(ConfigurationError, match="no region 'ap'"):
        region_app(app, "ap")


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("", "needs \\[front_door\\]"),
        ('[front_door]\nservice = "edge"\n', "needs \\[front_door\\]"),
        (DOORS + "weights = { mars = 10 }\n", "names no region"),
        (DOORS + "weights = { us = 101 }\n", "0 to 100"),
        (DOORS + "kong_steps = [50, 25]\n", "kong_steps"),
        (DOORS + "kong_steps = [100, 0]\n", "kong_steps"),
        (DOORS + "kong_steps = [25, 50, 0]\n", "kong_steps"),
        ('registry = "etcd"\n' + DOORS, "embedded registry"),
    ],
)
def test_settings_that_cannot_work_are_refused(tmp_path: Path, extra: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        load(_load(tmp_path, extra))


def test_a_global_front_door_without_regions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('name = "t"\n[global_front_door]\n[[groups]]\nservice = "edge"\nmodule = "m"\n')
    with pytest.raises(ConfigurationError, match="needs regions"):
        load(path)


def test_regions_are_distinct_names(tmp_path: Path) -> None:
    path = _load(tmp_path, DOORS)
    path.write_text(path.read_text().replace('["us", "eu"]', '["us", "us"]'))
    with pytest.raises(ConfigurationError, match="distinct"):
        load(path)
