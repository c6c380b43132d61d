"""`herd k8s render`: every manifest validates offline against the Kubernetes schemas (the ones
kubernetes-validate ships), and has the properties docs/kubernetes.md promises."""

from __future__ import annotations

import inspect
import json
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import tomli_w

import herd
from herd._cloud.app import App, load
from herd_tools.k8s import (
    DRAIN_S,
    INSTANCE_PORT,
    TERMINATION_GRACE_S,
    ZONE_LABEL,
    render,
)
from tests.conftest import ROOT
from tests.helpers import herd_cli

#: The oldest Kubernetes still widely run, and the newest the package knows.
VERSIONS = ["1.29", kubernetes_validate.latest_version()]
FLIX = ROOT / "examples" / "flix" / "app.toml"

Manifest = dict[str, Any]


def flix(tmp_path: Path, **settings: Any) -> App:
    """flix's app file, with a second movie group (v002) and `settings`."""
    document = tomllib.loads(FLIX.read_text())
    document["root"] = str(ROOT)
    document["groups"].append(
        {"service": "movie", "version": "v002", "module": "examples.flix.movie.service"}
    )
    document.update(settings)
    path = tmp_path / "app.toml"
    path.write_text(tomli_w.dumps(document))
    return load(path)


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    tmp_path: Path, version: str
) -> None:
    manifests = render(flix(tmp_path))
    assert len(manifests) >= 17
    for manifest in manifests:
        # strict: an unknown field (a typo) fails as well as a wrong type.
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_validation_catches_a_broken_manifest(tmp_path: Path) -> None:
    deployment = of_kind(render(flix(tmp_path)), "Deployment")["movie-v001"]
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)
    deployment["spec"]["replicas"] = 3
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_a_deployment_per_group_labelled_by_service_group_and_version(tmp_path: Path) -> None:
    app = flix(tmp_path)
    deployments = of_kind(render(app), "Deployment")
    for group in app.spec.groups:
        deployment = deployments[group.name]
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert labels["herd.io/service"] == group.service
        assert labels["herd.io/group"] == group.name
        assert labels["herd.io/version"] == group.version
        assert deployment["metadata"]["labels"] == labels
        assert deployment["metadata"]["annotations"]["herd.io/immutable"] == "true"
        assert spec["replicas"] == group.instances
        assert selects(spec["selector"]["matchLabels"], labels)
        container = spec["template"]["spec"]["containers"][0]
        assert container["image"] == f"flix:{group.name}"
        assert container["command"] == ["python", "-m", group.module, *group.args]
    # Groups side by side never select each other's pods: each is replaced, not changed.
    old, new = deployments["movie-v001"], deployments["movie-v002"]
    assert not selects(
        old["spec"]["selector"]["matchLabels"], new["spec"]["template"]["metadata"]["labels"]
    )
    assert not selects(
        new["spec"]["selector"]["matchLabels"], old["spec"]["template"]["metadata"]["labels"]
    )


def test_pods_spread_over_zones_probe_health_and_drain_like_herd(tmp_path: Path) -> None:
    # The grace period is derived from herd.run's drain: it must follow a change there.
    assert inspect.signature(herd.run).parameters["drain_timeout"].default == DRAIN_S
    assert TERMINATION_GRACE_S > DRAIN_S + 1
    for deployment in of_kind(render(flix(tmp_path)), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        zones = [c for c in pod["topologySpreadConstraints"] if c["topologyKey"] == ZONE_LABEL]
        assert len(zones) == 1 and zones[0]["maxSkew"] == 1
        assert selects(zones[0]["labelSelector"]["matchLabels"], labels)
        container = pod["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            check = container[probe]["httpGet"]
            assert check["path"] == "/health" and check["port"] in ports
        # Liveness outlasts a drain: a draining instance answers 503 and must not be killed.
        liveness = container["livenessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] > DRAIN_S
        if labels.get("herd.io/group"):
            assert pod["terminationGracePeriodSeconds"] == TERMINATION_GRACE_S
            env = {e["name"]: e for e in container["env"]}
            assert env["HERD_PORT"]["value"] == str(INSTANCE_PORT) == str(ports["http"])
            assert env["HERD_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            assert env["HERD_REGISTRY"]["value"] == "flix-registry:8500"


def test_a_disruption_budget_per_group_and_for_etcd_a_quorum(tmp_path: Path) -> None:
    manifests = render(flix(tmp_path))
    budgets = of_kind(manifests, "PodDisruptionBudget")
    for name, deployment in of_kind(manifests, "Deployment").items():
        budget = budgets[name]
        assert budget["spec"]["maxUnavailable"] == 1
        assert (
            budget["spec"]["selector"]["matchLabels"]
            == deployment["spec"]["selector"]["matchLabels"]
        )
    assert budgets["flix-etcd"]["spec"]["minAvailable"] == 2


def test_services_only_where_callers_need_one(tmp_path: Path) -> None:
    manifests = render(flix(tmp_path))
    services = of_kind(manifests, "Service")
    # Instances find each other through the registry: the front door's service, the registry
    # and etcd have a Service, the other groups none.
    assert set(services) == {"edge", "flix-registry", "flix-etcd"}
    edge = services["edge"]["spec"]
    deployments = of_kind(manifests, "Deployment")
    assert selects(
        edge["selector"], deployments["edge-v001"]["spec"]["template"]["metadata"]["labels"]
    )
    assert not selects(
        edge["selector"], deployments["movie-v001"]["spec"]["template"]["metadata"]["labels"]
    )
    assert edge["ports"][0]["targetPort"] == "http"


def test_the_registry_runs_on_the_etcd_it_renders(tmp_path: Path) -> None:
    manifests = render(flix(tmp_path))
    etcd = of_kind(manifests, "StatefulSet")["flix-etcd"]
    assert etcd["spec"]["replicas"] == 3
    assert etcd["spec"]["serviceName"] == "flix-etcd"
    assert of_kind(manifests, "Service")["flix-etcd"]["spec"]["clusterIP"] == "None"
    registry = of_kind(manifests, "Deployment")["flix-registry"]
    assert registry["spec"]["replicas"] == 2
    command = registry["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--etcd=flix-etcd:2379" in command


def test_a_registry_on_an_etcd_elsewhere_renders_no_etcd(tmp_path: Path) -> None:
    manifests = render(flix(tmp_path, registry="etcd://10.0.0.5:2379,10.0.0.6:2379"))
    assert of_kind(manifests, "StatefulSet") == {}
    command = of_kind(manifests, "Deployment")["flix-registry"]["spec"]["template"]["spec"][
        "containers"
    ][0]["command"]
    assert "--etcd=10.0.0.5:2379,10.0.0.6:2379" in command


def test_one_version_renders_only_its_groups(tmp_path: Path) -> None:
    manifests = render(flix(tmp_path), version="v002")
    assert sorted((m["kind"], m["metadata"]["name"]) for m in manifests) == [
        ("Deployment", "movie-v002"),
        ("PodDisruptionBudget", "movie-v002"),
    ]


def test_the_command_writes_one_file_per_manifest(tmp_path: Path) -> None:
    app = flix(tmp_path)
    out = tmp_path / "k8s"
    result = herd_cli("k8s", "render", str(app.source), "--out", str(out))
    assert result.code == 0, result
    files = sorted(out.iterdir())
    assert len(files) == len(render(app))
    for path in files:
        kubernetes_validate.validate(json.loads(path.read_text()), VERSIONS[-1], strict=True)
    assert (out / "deployment-movie-v002.json").exists()
    # flix's app.toml keeps its writes in SQLite: on pods that is a file per pod, and it says so.
    assert "no [[stores]]" in result.stderr and "SQLite" in result.stderr

    missing = ["k8s", "render", str(app.source), "--version", "v009"]
    result = herd_cli(*missing)
    assert result.code == 1
    assert "no group has version v009" in result.stderr
    assert result.stdout == ""


def flix_on_nats(tmp_path: Path) -> App:
    """flix's app file with its stores on the engine (`app-nats.toml`)."""
    document = tomllib.loads((FLIX.parent / "app-nats.toml").read_text())
    document["root"] = str(ROOT)
    path = tmp_path / "app-nats.toml"
    path.write_text(tomli_w.dumps(document))
    return load(path)


@pytest.mark.parametrize("version", VERSIONS)
def test_with_stores_the_engine_is_a_statefulset_one_member_per_zone(
    tmp_path: Path, version: str
) -> None:
    manifests = render(flix_on_nats(tmp_path))
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)
    sets = of_kind(manifests, "StatefulSet")
    assert set(sets) == {"flix-etcd", "flix-nats"}  # beside etcd's
    nats = sets["flix-nats"]
    assert nats["spec"]["replicas"] == 3 and nats["spec"]["serviceName"] == "flix-nats"
    template = nats["spec"]["template"]
    pod = template["spec"]
    assert selects(nats["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    spread = pod["topologySpreadConstraints"]
    zone_spread = next(c for c in spread if c["topologyKey"] == ZONE_LABEL)
    assert zone_spread["whenUnsatisfiable"] == "DoNotSchedule" and zone_spread["maxSkew"] == 1
    assert of_kind(manifests, "Service")["flix-nats"]["spec"]["clusterIP"] == "None"
    assert of_kind(manifests, "PodDisruptionBudget")["flix-nats"]["spec"]["minAvailable"] == 2
    config = of_kind(manifests, "ConfigMap")["flix-nats"]["data"]["nats.conf"]
    assert 'unique_tag: "az"' in config and "nats-route://flix-nats-2.flix-nats:6222" in config
    (container,) = pod["containers"]
    assert {"name": "SERVER_TAG", "value": "az:$(POD_NAME)"} in container["env"]


def test_with_stores_every_pod_gets_the_engine_and_no_sqlite_path(tmp_path: Path) -> None:
    url = (
        "nats://flix-nats-0.flix-nats:4222,flix-nats-1.flix-nats:4222,"
        "flix-nats-2.flix-nats:4222?replicas=3"
    )
    for deployment in of_kind(render(flix_on_nats(tmp_path)), "Deployment").values():
        if deployment["metadata"]["name"] == "flix-registry":
            continue
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HERD_STORE_URL"] == url, deployment["metadata"]["name"]
        assert "FLIX_WRITES" not in env
        assert not any(str(value).startswith("sqlite") for value in env.values())
    # Without [[stores]]: no engine, and the services keep SQLite.
    plain = render(flix(tmp_path))
    assert "flix-nats" not in of_kind(plain, "StatefulSet")
    for deployment in of_kind(plain, "Deployment").values():
        env = deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])
        assert "HERD_STORE_URL" not in {e["name"] for e in env}


def test_with_stores_or_a_cluster_of_ones_own_the_command_warns_of_nothing(
    tmp_path: Path,
) -> None:
    result = herd_cli("k8s", "render", str(flix_on_nats(tmp_path).source))
    assert result.code == 0, result
    assert result.stderr == ""
    assert "flix-nats" in result.stdout
    own = tomllib.loads((FLIX.parent / "app-nats.toml").read_text())
    own["root"] = str(ROOT)
    del own["stores"]
    own["env"]["HERD_STORE_URL"] = "nats://n1:4222,n2:4222,n3:4222"
    path = tmp_path / "own.toml"
    path.write_text(tomli_w.dumps(own))
    result = herd_cli("k8s", "render", str(path))
    assert result.code == 0, result
    assert result.stderr == ""
    assert "flix-nats" not in result.stdout and "nats://n1:4222" in result.stdout
