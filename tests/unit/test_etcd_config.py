"""Where the registry finds etcd: the app file's `registry`, endpoints, the gRPC target, and the
command line of a local member."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd._cloud.app import load
from herd._cloud.launch.etcd import member_command
from herd._model.errors import ConfigurationError
from herd._registry.etcd import grpc_target
from herd._registry.etcd_cluster import etcd_endpoints, local_members

APP = """
name = "demo"
registry = {registry!r}
[[groups]]
service = "movie"
module = "examples.flix.movie.service"
"""


@pytest.mark.parametrize(
    "registry", ["embedded", "etcd", "etcd://10.0.0.5:2379", "etcd://a.example:2379,b:2380"]
)
def test_the_app_file_takes_every_kind_of_registry(tmp_path: Path, registry: str) -> None:
    path = tmp_path / "app.toml"
    path.write_text(APP.format(registry=registry))
    assert load(path).spec.registry == registry


@pytest.mark.parametrize(
    "registry", ["etcd3", "etcd://", "etcd://host", "etcd://host:0", "etcd://h:99999", "zk://h:1"]
)
def test_the_app_file_refuses_what_is_no_registry(tmp_path: Path, registry: str) -> None:
    path = tmp_path / "app.toml"
    path.write_text(APP.format(registry=registry))
    with pytest.raises(ConfigurationError, match="registry is"):
        load(path)


def test_endpoints_and_the_grpc_target() -> None:
    endpoints = etcd_endpoints("etcd://10.0.0.5:2379, 10.0.0.6:2379")
    assert endpoints == ["10.0.0.5:2379", "10.0.0.6:2379"]
    # Addresses: gRPC's static list, which fails over between members.
    assert grpc_target(endpoints) == "ipv4:10.0.0.5:2379,10.0.0.6:2379"
    # One name (a Service in front of the members): gRPC resolves it to every member.
    assert grpc_target(["flix-etcd:2379"]) == "flix-etcd:2379"
    with pytest.raises(ConfigurationError, match="IPv4"):
        grpc_target(["a.example:2379", "b.example:2379"])


def test_a_local_member_knows_the_whole_cluster(tmp_path: Path) -> None:
    members = local_members(23790)
    assert [(m.client_port, m.peer_port) for m in members] == [
        (23790, 23791),
        (23792, 23793),
        (23794, 23795),
    ]
    command = member_command(members, 1, tmp_path, token="t")
    assert command[0] == "etcd"
    assert "--name=m1" in command
    assert f"--data-dir={tmp_path / 'm1'}" in command
    assert "--listen-client-urls=http://127.0.0.1:23792" in command
    cluster = next(part for part in command if part.startswith("--initial-cluster="))
    assert cluster.count("=http://127.0.0.1:") == 3
