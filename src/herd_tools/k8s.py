"""`herd k8s render`: an app file as Kubernetes manifests (docs/kubernetes.md).

Every server group becomes a Deployment of its own, named like the group (``movie-v003``) and
labelled by service, group and version: a new version is a new Deployment beside the old one,
never an edit of it, as herd's groups are immutable. Instances find each other through the
registry, as on one machine, so only the registry and the front door's service get a Service.
The registry runs on etcd (a 3-member StatefulSet, or the cluster named by ``registry =
"etcd://..."``), two replicas behind one Service: both follow the same etcd, so a client moving
from one to the other keeps its copy (same epoch, same versions).

An app with ``[[stores]]`` gets the store engine beside etcd: NATS JetStream as a 3-member
StatefulSet, one member per zone, and every pod ``HERD_STORE_URL`` naming its members (instead
of SQLite files on a pod's own disk, which would split a service's data between its pods).

Manifests are plain dicts written as JSON, which ``kubectl apply -f DIR`` reads like YAML.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herd._cloud.app import App, GroupSpec, load
from herd._cloud.autoscale.policy import initial_count
from herd._cloud.launch import stores
from herd._process.config import (
    GROUP,
    HOST,
    INSTANCE,
    PORT,
    REGISTRY,
    STORE_URL,
    VERSION,
    ZONE,
    StoreAddress,
)
from herd._registry.etcd_cluster import ETCD_SCHEME, etcd_endpoints
from herd_tools.output import say

Manifest = dict[str, Any]

#: The port every instance listens on in its pod (the pod's own address, so no two collide).
INSTANCE_PORT = 8000
REGISTRY_PORT = 8500
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_MEMBERS = 3
ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"
NATS_CLIENT_PORT = 4222
NATS_CLUSTER_PORT = 6222
NATS_MONITOR_PORT = 8222
NATS_MEMBERS = 3
NATS_IMAGE = "nats:2.10.24-alpine"
#: `herd.run`'s drain: deregister, keep serving for the registry's grace, drain in-flight work
#: for up to 30 s. The pod gets that and a margin before Kubernetes sends SIGKILL.
DRAIN_S = 30.0
DEREGISTER_S = 1.5
TERMINATION_GRACE_S = math.ceil(DRAIN_S + DEREGISTER_S) + 5
#: Where `{run}` points in a pod: an emptyDir of its own.
RUN_DIR = "/var/lib/herd/run"
ZONE_LABEL = "topology.kubernetes.io/zone"
HOST_LABEL = "kubernetes.io/hostname"
LABEL = "herd.io"


def _labels(app: App, **herd: str) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/part-of": app.spec.name,
        "app.kubernetes.io/managed-by": "herd",
    }
    labels.update({f"{LABEL}/{key}": value for key, value in herd.items()})
    return labels


def _meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "labels": labels}


def _spread(selector: dict[str, str]) -> list[dict[str, Any]]:
    """Over zones first, then nodes: like the local cloud's zones a/b/c. ScheduleAnyway, so a
    cluster with fewer zones than replicas still runs them all."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
        for key in (ZONE_LABEL, HOST_LABEL)
    ]


def _health(port: str, *, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": port},
        "periodSeconds": period_s,
        "failureThreshold": failures,
        "timeoutSeconds": 1,
    }


def _field(path: str) -> dict[str, Any]:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def image_of(repository: str, group: GroupSpec) -> str:
    """One build per group: `repository:movie-v003`."""
    return f"{repository}:{group.name}"


def _expand(value: str) -> str:
    return value.replace("{run}", RUN_DIR).replace("{root}", "/app")


def group_manifests(app: App, group: GroupSpec, repository: str) -> list[Manifest]:
    """A group's Deployment (and its PodDisruptionBudget)."""
    selector = _labels(app, group=group.name)
    labels = {
        **_labels(app, service=group.service, group=group.name, version=group.version),
        "app.kubernetes.io/name": group.service,
        "app.kubernetes.io/version": group.version,
    }
    image = image_of(repository, group)
    env = {
        **{k: _expand(v) for k, v in app.spec.env.items()},
        **{k: _expand(v) for k, v in group.env.items()},
        **store_environment(app, group.service),
        REGISTRY: f"{registry_name(app)}:{REGISTRY_PORT}",
        PORT: str(INSTANCE_PORT),
        GROUP: group.name,
        VERSION: group.version,
    }
    container_env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    container_env += [
        # The pod's own address: it binds there and registers it, so callers reach it.
        {"name": HOST, **_field("status.podIP")},
        {"name": INSTANCE, **_field("metadata.name")},
        # Copied onto the pod by clusters that label pods with their node's zone; else empty,
        # and the instance registers in zone "local".
        {"name": ZONE, **_field(f"metadata.labels['{ZONE_LABEL}']")},
    ]
    run_volume = {"name": "run", "mountPath": RUN_DIR}
    setup = [
        {
            "name": f"setup-{index}",
            "image": image,
            "command": [_expand(part) for part in command],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "volumeMounts": [run_volume],
        }
        for index, command in enumerate(app.spec.setup)
    ]
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "topologySpreadConstraints": _spread(selector),
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "containers": [
            {
                "name": group.service,
                "image": image,
                "command": ["python", "-m", group.module, *(_expand(a) for a in group.args)],
                "ports": [{"name": "http", "containerPort": INSTANCE_PORT}],
                "env": container_env,
                # Ready only once it serves and until it starts to drain.
                "readinessProbe": _health("http", period_s=2, failures=1),
                # Patient: longer than a drain, so a draining instance is never killed early.
                "livenessProbe": _health("http", period_s=10, failures=6),
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [run_volume],
            }
        ],
        "volumes": [{"name": "run", "emptyDir": {}}],
    }
    if setup:
        pod["initContainers"] = setup
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_meta(group.name, labels),
            # A group is replaced, never changed: a new build is a new group beside it.
            "annotations": {f"{LABEL}/immutable": "true"},
        },
        "spec": {
            # What `herd up` starts with; the autoscaler is not rendered (docs/kubernetes.md).
            "replicas": initial_count(group),
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(group.name, labels),
        # One at a time: callers retry elsewhere while it drains.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    return [deployment, budget]


def registry_name(app: App) -> str:
    """The registry's Service (and Deployment)."""
    return f"{app.spec.name}-registry"


def etcd_name(app: App) -> str:
    """The etcd StatefulSet and its headless Service."""
    return f"{app.spec.name}-etcd"


def etcd_manifests(app: App) -> list[Manifest]:
    """Three etcd members (a StatefulSet on persistent volumes), their headless Service and a
    PodDisruptionBudget that keeps a quorum through voluntary disruptions."""
    name = etcd_name(app)
    selector = _labels(app, component="etcd")
    peers = ",".join(
        f"{name}-{i}=http://{name}-{i}.{name}:{ETCD_PEER_PORT}" for i in range(ETCD_MEMBERS)
    )
    command = [
        "etcd",
        "--name=$(POD_NAME)",
        "--data-dir=/var/lib/etcd",
        f"--listen-client-urls=http://0.0.0.0:{ETCD_CLIENT_PORT}",
        f"--advertise-client-urls=http://$(POD_NAME).{name}:{ETCD_CLIENT_PORT}",
        f"--listen-peer-urls=http://0.0.0.0:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://$(POD_NAME).{name}:{ETCD_PEER_PORT}",
        f"--initial-cluster={peers}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={name}",
    ]
    ports = [("client", ETCD_CLIENT_PORT), ("peer", ETCD_PEER_PORT)]
    container = {
        "name": "etcd",
        "image": ETCD_IMAGE,
        "command": command,
        "env": [{"name": "POD_NAME", **_field("metadata.name")}],
        "ports": [{"name": port, "containerPort": number} for port, number in ports],
        # Ready while part of a quorum. No liveness probe: a member that lost its quorum is
        # waiting for the others, and killing it helps no one.
        "readinessProbe": _health("client", period_s=5, failures=2),
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}],
    }
    return _quorum_cluster(
        name, selector, ports, ETCD_MEMBERS, _spread(selector), container, storage="1Gi"
    )


def _quorum_cluster(
    name: str,
    selector: dict[str, str],
    ports: list[tuple[str, int]],
    members: int,
    spread: list[dict[str, Any]],
    container: dict[str, Any],
    *,
    storage: str,
    volumes: list[dict[str, Any]] | None = None,
) -> list[Manifest]:
    """A quorum-based cluster: `members` pods of `container` (a StatefulSet, each on its own
    disk of `storage`), their headless Service and a PodDisruptionBudget that keeps a quorum
    through voluntary disruptions."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, selector),
        "spec": {
            "clusterIP": "None",
            # Members must find each other before any of them is ready.
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [{"name": port, "port": number} for port, number in ports],
        },
    }
    pod: dict[str, Any] = {"topologySpreadConstraints": spread, "containers": [container]}
    if volumes:
        pod["volumes"] = volumes
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, selector),
        "spec": {
            "serviceName": name,
            "replicas": members,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector}, "spec": pod},
            "volumeClaimTemplates": [_data_claim(storage)],
        },
    }
    return [service, statefulset, _quorum_budget(name, selector, members)]


def _data_claim(storage: str) -> dict[str, Any]:
    """A cluster member's own disk: its data outlives the pod, and a replacement finds it."""
    return {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": storage}},
        },
    }


def _quorum_budget(name: str, selector: dict[str, str], members: int) -> dict[str, Any]:
    """Evictions may never take a quorum-based cluster below its majority."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, selector),
        "spec": {"minAvailable": members // 2 + 1, "selector": {"matchLabels": selector}},
    }


def nats_name(app: App) -> str:
    """The store engine's StatefulSet and its headless Service."""
    return f"{app.spec.name}-nats"


def store_environment(app: App, service: str) -> dict[str, str]:
    """`HERD_STORE_URL` for a pod of `service`: every member, its store's copies (none
    without `[[stores]]`: the services keep their SQLite default)."""
    if not app.spec.stores:
        return {}
    name = nats_name(app)
    servers = tuple(f"{name}-{i}.{name}:{NATS_CLIENT_PORT}" for i in range(NATS_MEMBERS))
    address = StoreAddress(servers=servers, replicas=stores.replicas(app, service))
    return {STORE_URL: address.url}


def nats_config(app: App) -> str:
    """The members' configuration (nats-server's format; ``$VAR`` is read from the
    environment): JetStream on, the cluster's routes, and a tag per member that JetStream must
    spread each stream's copies over (`unique_tag`), as `herd up` tags its members by zone."""
    name = nats_name(app)
    routes = ", ".join(
        f'"nats-route://{name}-{i}.{name}:{NATS_CLUSTER_PORT}"' for i in range(NATS_MEMBERS)
    )
    return "\n".join(
        [
            "server_name: $POD_NAME",
            f"listen: 0.0.0.0:{NATS_CLIENT_PORT}",
            f"http: 0.0.0.0:{NATS_MONITOR_PORT}",
            "server_tags: [$SERVER_TAG]",
            'jetstream { store_dir: "/data/jetstream", unique_tag: "az" }',
            f'cluster {{ name: "{app.spec.name}", listen: 0.0.0.0:{NATS_CLUSTER_PORT},'
            f" routes: [{routes}] }}",
            "",
        ]
    )


def nats_manifests(app: App) -> list[Manifest]:
    """The store engine: three NATS JetStream members (a StatefulSet on persistent volumes, one
    per zone), their configuration, headless Service and a PodDisruptionBudget that keeps a
    quorum through voluntary disruptions."""
    name = nats_name(app)
    selector = _labels(app, component="nats")
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, selector),
        "data": {"nats.conf": nats_config(app)},
    }
    ports = [
        ("client", NATS_CLIENT_PORT),
        ("cluster", NATS_CLUSTER_PORT),
        ("monitor", NATS_MONITOR_PORT),
    ]
    # One member per zone, or none is scheduled: a stream's three copies are in three zones
    # only if its members are. Then per node, as for every other pod.
    spread = _spread(selector)
    spread[0]["whenUnsatisfiable"] = "DoNotSchedule"
    container = {
        "name": "nats",
        "image": NATS_IMAGE,
        "command": ["nats-server", "--config", "/etc/nats/nats.conf"],
        "env": [
            {"name": "POD_NAME", **_field("metadata.name")},
            # Each member its own failure domain: the zone spread above puts each in its own
            # zone.
            {"name": "SERVER_TAG", "value": "az:$(POD_NAME)"},
        ],
        "ports": [{"name": port, "containerPort": number} for port, number in ports],
        # Ready once JetStream is current with the cluster. No liveness probe: a member
        # without a quorum waits for the others.
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "monitor"},
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 1,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "config", "mountPath": "/etc/nats"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }
    volumes = [{"name": "config", "configMap": {"name": name}}]
    cluster = _quorum_cluster(
        name, selector, ports, NATS_MEMBERS, spread, container, storage="10Gi", volumes=volumes
    )
    return [config, *cluster]


def registry_manifests(app: App, repository: str) -> list[Manifest]:
    """The registry: two replicas on etcd, a Service and a PodDisruptionBudget."""
    name = registry_name(app)
    selector = _labels(app, component="registry")
    if app.spec.registry.startswith(ETCD_SCHEME):
        endpoints = etcd_endpoints(app.spec.registry)
    else:
        # One DNS name for every member: gRPC fails over between the addresses it resolves to.
        endpoints = [f"{etcd_name(app)}:{ETCD_CLIENT_PORT}"]
    command = ["python", "-m", "herd._registry.service", "--host=0.0.0.0"]
    command += [f"--port={REGISTRY_PORT}", f"--etcd={','.join(endpoints)}"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, selector),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "topologySpreadConstraints": _spread(selector),
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [
                        {
                            "name": "registry",
                            "image": f"{repository}:registry",
                            "command": command,
                            "ports": [{"name": "http", "containerPort": REGISTRY_PORT}],
                            "readinessProbe": _health("http", period_s=2, failures=1),
                            "livenessProbe": _health("http", period_s=10, failures=6),
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, selector),
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": REGISTRY_PORT, "targetPort": "http"}],
        },
    }
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, selector),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }
    return [deployment, service, budget]


def front_door_manifests(app: App) -> list[Manifest]:
    """A Service in front of every group of the front door's service (all its versions)."""
    door = app.spec.front_door
    if door is None:
        return []
    selector = _labels(app, service=door.service)
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(door.service, selector),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": door.port, "targetPort": "http"}],
            },
        }
    ]


def render(
    app: App, *, version: str | None = None, repository: str | None = None
) -> list[Manifest]:
    """Every manifest of `app`; with `version`, only the groups of that version (a new build
    deployed beside the running ones)."""
    repository = repository or app.spec.name
    groups = [g for g in app.spec.groups if version is None or g.version == version]
    manifests: list[Manifest] = []
    if version is None:
        if not app.spec.registry.startswith(ETCD_SCHEME):
            manifests += etcd_manifests(app)
        if app.spec.stores:
            manifests += nats_manifests(app)
        manifests += registry_manifests(app, repository)
        manifests += front_door_manifests(app)
    for group in groups:
        manifests += group_manifests(app, group, repository)
    return manifests


def file_name(manifest: Manifest) -> str:
    """`deployment-movie-v001.json`: one file per manifest."""
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.json"


def render_command(
    app_file: Path, version: str | None, out: Path | None, repository: str | None
) -> Sequence[Path]:
    """Write the manifests into `out` (one JSON file each), or print them as one List; the
    files written."""
    app = load(app_file)
    if not app.spec.stores and STORE_URL not in app.spec.env:
        # The render is still right for an app whose services keep no data of their own.
        say(
            f"{app.source}: no [[stores]]: a service's herd.store would be an SQLite file on"
            " each pod's own disk, its data split between pods; add [[stores]] for one store"
            " with a copy per zone, or HERD_STORE_URL in [env] for a cluster of your own"
            " (docs/data.md)"
        )
    manifests = render(app, version=version, repository=repository)
    if version is not None and not any(m["kind"] == "Deployment" for m in manifests):
        raise ValueError(f"{app.source}: no group has version {version}")
    if out is None:
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2))
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for manifest in manifests:
        path = out / file_name(manifest)
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        written.append(path)
    return written
