"""`[[stores]]` in the app file: what `herd up` accepts, what it refuses, and what its children
are told (`HERD_STORE_URL`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd._cloud.app import load
from herd._cloud.launch import stores
from herd._model.errors import ConfigurationError
from herd._process.config import STORE_URL, parse_store_url
from herd._store import nats_server

GROUP = '[[groups]]\nservice = "history"\nmodule = "m"\n'


def _app(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "app.toml"
    path.write_text(f'name = "t"\n{extra}\n{GROUP}')
    return path


def test_without_stores_children_keep_sqlite(tmp_path: Path) -> None:
    app = load(_app(tmp_path, ""))
    members = stores.plan(app)
    assert members == [] and stores.environment(app, members) == {}


def test_a_member_per_zone_on_kept_ports_and_each_services_copies(tmp_path: Path) -> None:
    app = load(
        _app(
            tmp_path,
            'store_port = 14000\n[[stores]]\nname = "history"\nreplicas = 2\n'
            '[[stores]]\nname = "merch"\n',
        )
    )
    members = stores.plan(app)
    assert [(m.zone, m.port, m.cluster_port, m.http_port) for m in members] == [
        ("a", 14000, 14001, 14002),
        ("b", 14003, 14004, 14005),
        ("c", 14006, 14007, 14008),
    ]
    history = parse_store_url(stores.environment(app, members, "history")[STORE_URL])
    assert history.servers == ("127.0.0.1:14000", "127.0.0.1:14003", "127.0.0.1:14006")
    assert history.replicas == 2
    assert parse_store_url(stores.environment(app, members, "edge")[STORE_URL]).replicas == 3


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('[[stores]]\nname = "History"\n', "lowercase"),
        ('[[stores]]\nname = "a"\n[[stores]]\nname = "a"\n', "distinct"),
        ('[[stores]]\nname = "a"\nreplicas = 4\n', "replicas is 1 to the number of zones"),
        ('[[stores]]\nname = "a"\nreplicas = 0\n', "replicas"),
        ('store_port = 80\n[[stores]]\nname = "a"\n', "store_port"),
    ],
)
def test_the_app_file_refuses_a_store_that_cannot_work(
    tmp_path: Path, extra: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        load(_app(tmp_path, extra))


def test_a_regions_server_is_its_own_domain_and_cluster_linked_by_leaf_nodes() -> None:
    conf = json.loads(
        nats_server.config(
            name="nats-a",
            zone="a",
            port=1,
            cluster_port=2,
            http_port=3,
            routes=["127.0.0.1:12"],
            data_dir=Path("/tmp/x"),
            domain="eu",
            leaf_port=4,
            leaf_remotes=["127.0.0.1:104"],
        )
    )
    assert conf["jetstream"]["domain"] == "eu"
    # Two clusters of one name cannot be linked: each region's is its own.
    assert conf["cluster"]["name"] == "herd-eu"
    assert conf["leafnodes"]["port"] == 4
    (remote,) = conf["leafnodes"]["remotes"]
    assert remote["urls"] == ["nats-leaf://127.0.0.1:104"]
    # The regions' own writes never cross: only JetStream's API does.
    assert remote["deny_imports"] == remote["deny_exports"] == nats_server.REGION_LOCAL
    plain = json.loads(
        nats_server.config(
            name="nats-a", zone="a", port=1, cluster_port=2, http_port=3, routes=[],
            data_dir=Path("/tmp/x"),
        )
    )  # fmt: skip
    assert "domain" not in plain["jetstream"] and "leafnodes" not in plain
