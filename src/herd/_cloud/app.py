"""The app description: a system's services, server groups and zones, in one TOML file.

::

    name = "flix"
    root = "../.."                  # where `module`s import from, relative to this file
    # run_dir = "/tmp/flix"         # logs, data; relative to this file; default {root}/run/{name}
    zones = ["a", "b", "c"]
    setup = [["python", "-m", "examples.flix.store", "seed", "{run}/flix.db"]]

    [env]                           # for every instance; {run} is the app's run directory
    FLIX_DB = "{run}/flix.db"

    [[groups]]                      # a server group: one build of one service
    service = "movie"
    version = "v001"                # the group is named movie-v001
    module = "examples.flix.movie.service"
    instances = 3
    allow = ["edge"]                # optional: only these services may call it (mutual TLS
                                    # proves who calls); without it, any of the app's processes
    # optional: the autoscaler sets the count between min and max (docs/autoscale.md)
    autoscale = { min = 2, max = 8, target_inflight = 4 }
    # optional: Chaos Monkey kills one of its instances every minute on average (docs/chaos.md)
    chaos = { mean_interval_s = 60, min_healthy = 1 }

    [front_door]                    # one fixed address in front of the edge instances
    service = "edge"
    port = 8080
    # traces_per_s = 10             # requests a second traced at every hop (docs/tracing.md)

    [[caches]]                      # memcached, one server per zone (EVCache; herd.cache)
    name = "flix"
    memory_mb = 64
    # port = 11300                  # zone i listens on port + i; default: free ports

    [[stores]]                      # a service's store on NATS JetStream (herd.store; docs/data.md)
    name = "history"                # the service that owns it
    replicas = 3                    # copies, each in another zone; quorum-acknowledged writes
    # store_port = 14222            # (top level) zone i's nats-server on store_port + 3i .. + 2

    [front_door.cohorts]            # a request's bucket and pin (docs/deploy.md)
    visitor_query = "visitor"       # where the visitor id is, hashed into a bucket 0-99
    pin_header = "x-flix-pin"       # `x-flix-pin: v002` pins the request to v002 at every hop
    cells = [{ name = "beta", version = "v002", visitors = [7, 42] }]

    [front_door.criticality]        # how much a request matters (docs/overload.md)
    default = "critical"            # first matching rule wins, else this
    rules = [{ header = "x-flix-prefetch", level = "best_effort" }]

    [[versions]]                    # what `herd deploy start movie --version v002` changes
    service = "movie"
    version = "v002"
    env = { FLIX_FAIL_RATE = "0.1" }

    [deploy]                        # rollback window, canary steps and judge (docs/deploy.md)
    rollback_window_s = 600

    # regions = ["us", "eu"]        # the whole app once per region (docs/regions.md)
    # [global_front_door]           # the entry users hit: a home region each, steered by weights
    # port = 8070
    # home_header = "x-flix-region"
    # weights = { us = 50, eu = 50 }

    # registry = "etcd"             # instances on a local 3-member etcd cluster
    # registry = "etcd://10.0.0.5:2379,10.0.0.6:2379"   # or on one that runs elsewhere
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec

from herd._model import criticality
from herd._model.errors import ConfigurationError
from herd._model.identity import FRONT_DOOR, RESERVED
from herd._registry.etcd_cluster import ETCD, etcd_endpoints
from herd._server.admission import Mode
from herd._store.store import NAME as STORE_NAME

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


DEFAULT_TARGET_CPU = 50.0
"""Percent of one core per instance, when an autoscaled group names no target."""


class AutoscaleSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How the autoscaler sizes a group: keep each instance's load near one target.

    The target is `target_inflight` (requests in flight per instance) or `target_cpu` (percent
    of one core per instance), not both; with neither, `target_cpu` is 50, the middle of the
    40-50 % utilisation Netflix ran at. Scaling in waits until `scale_in_after_s` of figures
    all said the group is too big, then removes one instance every `scale_in_every_s`.
    """

    min: int = 2
    max: int = 8
    target_inflight: float | None = None
    target_cpu: float | None = None
    scale_in_after_s: float = 60.0
    scale_in_every_s: float = 10.0

    @property
    def metric(self) -> str:
        """`inflight` or `cpu`: what the target counts."""
        return "inflight" if self.target_inflight is not None else "cpu"

    @property
    def target(self) -> float:
        """The target value of `metric` per instance."""
        if self.target_inflight is not None:
            return self.target_inflight
        return DEFAULT_TARGET_CPU if self.target_cpu is None else self.target_cpu

    def problem(self) -> str | None:
        """Why these settings cannot work; None when they can."""
        if self.min < 1:
            return "autoscale.min must be >= 1: the autoscaler measures load on the instances"
        if self.max < self.min:
            return f"autoscale.max ({self.max}) must be >= autoscale.min ({self.min})"
        if self.target_inflight is not None and self.target_cpu is not None:
            return "autoscale takes target_inflight or target_cpu, not both"
        if not self.target > 0:
            return f"autoscale's target must be > 0, got {self.target:g}"
        if self.metric == "cpu" and self.target > 100:
            return f"autoscale.target_cpu is percent of one core: at most 100, got {self.target:g}"
        if not (self.scale_in_after_s > 0 and self.scale_in_every_s > 0):
            return "autoscale.scale_in_after_s and scale_in_every_s must be > 0"
        return None


class ChaosSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A group's opt-in to Chaos Monkey: it kills one of the group's instances at exponentially
    distributed times `mean_interval_s` apart on average, never leaving fewer than
    `min_healthy` UP; `leashed`, it only records what it would kill."""

    mean_interval_s: float = 60.0
    min_healthy: int = 1
    leashed: bool = False

    def problem(self) -> str | None:
        """Why these settings cannot work; None when they can."""
        if not 0 < self.mean_interval_s < float("inf"):
            return "chaos.mean_interval_s must be > 0"
        if self.min_healthy < 0:
            return "chaos.min_healthy must be >= 0"
        return None


class GroupSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One server group: an immutable set of instances of one build of a service.

    With `autoscale`, `instances` is the count it starts with, brought within min..max.
    """

    service: str
    module: str
    args: list[str] = msgspec.field(default_factory=list)
    version: str = "v001"
    instances: int = 1
    env: dict[str, str] = msgspec.field(default_factory=dict)
    autoscale: AutoscaleSpec | None = None
    chaos: ChaosSpec | None = None
    detail: str = ""
    """Set on a group a deploy runs beside the main one of its version (a canary's `baseline`)."""
    allow: list[str] | None = None
    """The services that may call this group's instances (the control plane always may, and
    the front door may call its own service); None: any process of the app."""

    @property
    def name(self) -> str:
        """`service-version`, e.g. `movie-v001` (`movie-baseline-v001` with a detail)."""
        if self.detail:
            return f"{self.service}-{self.detail}-{self.version}"
        return f"{self.service}-{self.version}"


class CellSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A named test cell: its visitors are pinned to `version` at every hop that has it."""

    name: str
    version: str
    visitors: list[str | int]


class CohortSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where the front door finds a request's visitor id (hashed into its bucket) and its pin.

    The visitor id comes from the query parameter, the header or the cookie named (the first
    found); a pin to a version (`v002`) from the header or cookie named, else from the test cell
    the visitor is in.
    """

    visitor_query: str = ""
    visitor_header: str = ""
    visitor_cookie: str = ""
    pin_header: str = ""
    pin_cookie: str = ""
    cells: list[CellSpec] = msgspec.field(default_factory=list)


class CriticalityRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Requests whose path starts with `path` and (when `header` is named) that carry `header`
    (with `value`, when one is given) get `level`: `critical`, `degraded`, `best_effort` or a
    number from 0 to 99."""

    level: str
    path: str = ""
    header: str = ""
    value: str = ""


class CriticalitySpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How much each request from outside matters (docs/overload.md): the first rule that
    matches gives its level, else `default`."""

    default: str = "degraded"
    rules: list[CriticalityRule] = msgspec.field(default_factory=list)

    def problem(self) -> str | None:
        """Why these rules cannot work; None when they can."""
        for level in [self.default, *(rule.level for rule in self.rules)]:
            try:
                criticality.parse(level)
            except ConfigurationError as exc:
                return f"front_door.criticality: {exc}"
        if any(not (rule.path or rule.header) for rule in self.rules):
            return "front_door.criticality: each rule names a path, a header or both"
        return None


class FrontDoorSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The one fixed address users reach: it spreads requests over a service's instances."""

    service: str
    port: int = 8080
    host: str = "127.0.0.1"
    timeout_s: float = 2.0
    cohorts: CohortSpec = msgspec.field(default_factory=CohortSpec)
    criticality: CriticalitySpec = msgspec.field(default_factory=CriticalitySpec)
    limit: str = "fixed"
    """What the front door forwards at once (docs/overload.md): as an instance's `HERD_LIMIT`.
    Fixed by default: the front door's latency is every dependency's, and an adaptive limit
    there sheds users during a blip downstream (a registry losing its quorum) that the
    instances' own limits and the retry budget already contain."""
    max_inflight: int = 1024
    traces_per_s: float = 10.0
    """How many requests a second are recorded at every hop for the tail rule (docs/tracing.md):
    all of them below it, a bounded CPU cost above it."""


class VersionSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a version of a service needs beyond its current group's settings, for
    `herd deploy SERVICE --version V`: another module or arguments, more environment, another
    count."""

    service: str
    version: str
    module: str | None = None
    args: list[str] | None = None
    instances: int | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)


class DeploySpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How deploys run: the rollback window, the canary's steps and its judge."""

    rollback_window_s: float = 600.0
    ready_timeout_s: float = 60.0
    canary_steps: list[int] = msgspec.field(default_factory=lambda: [5, 25, 50, 100])
    canary_instances: int = 1
    analysis_s: float = 60.0
    """How long each step is analysed, unless the judge fails the canary sooner."""
    interval_s: float = 2.0
    """How often the canary's, the baseline's and the production group's instances are read:
    one look of the judge per interval."""
    min_points: int = 10
    """Intervals with requests on each side before a metric has data (NODATA until then)."""
    pass_score: float = 95.0
    marginal_score: float = 75.0
    confidence: float = 0.99
    """Per metric: a canary no worse than the old version is called worse with a chance of at
    most 1 - confidence over the whole deploy, however often the judge looks."""

    def problem(self) -> str | None:
        """Why these settings cannot work; None when they can."""
        steps = self.canary_steps
        if not steps or steps[-1] != 100 or steps != sorted(set(steps)) or steps[0] <= 0:
            return "deploy.canary_steps rise strictly from above 0 and end at 100"
        if any(step > 50 for step in steps[:-1]):
            return "deploy.canary_steps before 100 are at most 50: the baseline gets as much"
        if not 0 <= self.marginal_score <= self.pass_score <= 100:
            return "deploy: 0 <= marginal_score <= pass_score <= 100"
        if not 0.5 < self.confidence < 1:
            return "deploy.confidence is within (0.5, 1)"
        if self.min_points < 3 or self.canary_instances < 1:
            return "deploy.min_points >= 3 and deploy.canary_instances >= 1"
        if not (self.interval_s > 0 and self.analysis_s >= self.interval_s):
            return "deploy: interval_s > 0 and analysis_s >= interval_s"
        return None


class CacheSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A memcached cluster with one server in every zone, which `herd.cache(name, ...)` reads
    from the local zone and writes to every zone (docs/data.md)."""

    name: str
    memory_mb: int = 64
    port: int = 0
    """Zone i's server listens on `port + i`; 0: a free port per zone, chosen at `herd up`."""


class StoreSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A service's store on the app's NATS JetStream cluster (one nats-server per zone), with
    `replicas` copies of its data, each in another zone. Without any, stores stay in SQLite."""

    name: str
    replicas: int = 3


REGION_PORT_STEP = 10
"""Region i (from 0) runs on every fixed port of the app file plus `REGION_PORT_STEP * (i + 1)`;
the app's own control and front door ports are the global control plane's and front door's."""


class RegionLinks(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Set by herd on one region's cloud: how its store servers reach the other regions'
    (docs/regions.md). `leaf_ports` are its members' (a zone each), `remotes` the leaf ports
    (`host:port`) of the region all others connect to (none in that region itself)."""

    leaf_ports: list[int]
    remotes: list[str] = msgspec.field(default_factory=list)


class GlobalDoorSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The global front door of an app with `regions` (docs/regions.md): the one address users
    reach. Each visitor has a home region: the one `home_header` names, else the one their
    visitor id (hashed, as the front door's cohorts) falls in by `weights`. A region's
    current weight over its weight here is the share of its home visitors it keeps; the rest
    (and everyone, while it fails its health check) go to the others, by their weights."""

    port: int = 8070
    host: str = "127.0.0.1"
    home_header: str = ""
    visitor_query: str = ""
    visitor_header: str = ""
    visitor_cookie: str = ""
    weights: dict[str, int] = msgspec.field(default_factory=dict)
    """Per region, 0 to 100; a region not named weighs 100 / the number of regions."""
    timeout_s: float = 3.0
    health_path: str = "/"
    """What the door asks each region's front door every `health_every_s`: healthy while it
    answers below 500; two failures in a row make a region unhealthy."""
    health_every_s: float = 0.5
    kong_steps: list[int] = msgspec.field(default_factory=lambda: [75, 50, 25, 0])
    """`herd chaos kong`: the evacuated region's share of its weight after each step."""
    kong_step_s: float = 5.0

    def problem(self, regions: list[str]) -> str | None:
        """Why these settings cannot work with `regions`; None when they can."""
        unknown = sorted(set(self.weights) - set(regions))
        if unknown:
            return f"global_front_door.weights names no region: {unknown}"
        if any(not 0 <= w <= 100 for w in self.weights.values()):
            return "global_front_door.weights are 0 to 100"
        steps = self.kong_steps
        if (
            not steps
            or steps[-1] != 0
            or steps != sorted(set(steps), reverse=True)
            or steps[0] >= 100
        ):
            return "global_front_door.kong_steps fall strictly from below 100 to 0"
        if not (self.timeout_s > 0 and self.health_every_s > 0 and self.kong_step_s >= 0):
            return "global_front_door: timeout_s and health_every_s > 0, kong_step_s >= 0"
        return None


class AppSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A whole system, as `herd up` runs it."""

    name: str
    groups: list[GroupSpec]
    root: str = "."
    zones: list[str] = msgspec.field(default_factory=lambda: ["a", "b", "c"])
    env: dict[str, str] = msgspec.field(default_factory=dict)
    setup: list[list[str]] = msgspec.field(default_factory=list)
    front_door: FrontDoorSpec | None = None
    caches: list[CacheSpec] = msgspec.field(default_factory=list)
    stores: list[StoreSpec] = msgspec.field(default_factory=list)
    store_port: int = 0
    """Zone i's nats-server listens on `store_port + 3i` (clients), the next port (the other
    members) and the one after (monitoring); 0: free ports, chosen at `herd up`."""
    registry_port: int = 8500
    control_port: int = 8400
    run_dir: str | None = None
    registry: str = "embedded"
    """Where the registry keeps instances: "embedded" (its memory), "etcd" (a local 3-member
    cluster `herd up` runs on `etcd_port` and the 5 ports after it), or "etcd://host:port,..."
    (a cluster that runs elsewhere)."""
    etcd_port: int = 23790
    """Not etcd's usual 2379: a system etcd (Debian's etcd-server starts one) may hold it."""
    versions: list[VersionSpec] = msgspec.field(default_factory=list)
    deploy: DeploySpec = msgspec.field(default_factory=DeploySpec)
    network: Literal["loopback", "isolated"] = "loopback"
    """"loopback": every process on 127.0.0.1; "isolated": a network namespace per zone
    (Linux, root: docs/network.md). `herd up --network` overrides it."""
    regions: list[str] = msgspec.field(default_factory=list)
    """The app once per region, each with its own zones, registry, caches, stores and front
    door (docs/regions.md); empty: one region, as before."""
    global_front_door: GlobalDoorSpec | None = None
    region: str = ""
    """Set by herd on one region's cloud (`region_app`): the region it is."""
    region_links: RegionLinks | None = None
    """Set by herd on one region's cloud of an app with `[[stores]]`: its leaf-node links."""


class App:
    """A loaded app description, with its paths resolved."""

    def __init__(self, spec: AppSpec, source: Path) -> None:
        self.spec = spec
        self.source = source
        self.root = (source.parent / spec.root).resolve()
        self.run_dir = (
            (source.parent / spec.run_dir).resolve()
            if spec.run_dir
            else self.root / "run" / spec.name
        )

    def expand(self, value: str) -> str:
        """Replace `{run}` and `{root}` in a setting."""
        return value.replace("{run}", str(self.run_dir)).replace("{root}", str(self.root))


def load(path: str | Path) -> App:
    """Read and check an app description; errors name the file and the problem."""
    source = Path(path)
    if source.is_dir():
        source = source / "app.toml"
    try:
        spec = msgspec.toml.decode(source.read_bytes(), type=AppSpec)
    except FileNotFoundError:
        raise ConfigurationError(f"{source}: no such app description") from None
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
    _check(spec, source)
    return App(spec, source)


def with_network(app: App, network: str) -> App:
    """`app` on `network` ("loopback" or "isolated"), checked again."""
    if network not in ("loopback", "isolated"):
        raise ConfigurationError(f"--network is loopback or isolated, not {network!r}")
    spec = msgspec.structs.replace(app.spec, network=network)
    _check(spec, app.source)
    return App(spec, app.source)


def region_app(app: App, region: str, links: RegionLinks | None = None) -> App:
    """The app as `region` runs it: its own run directory, every fixed port shifted by the
    region's step (docs/regions.md), `HERD_REGION` in every instance's environment, and its
    store servers' `links` to the other regions."""
    spec = app.spec
    if region not in spec.regions:
        raise ConfigurationError(f"{app.source}: no region {region!r} (regions: {spec.regions})")
    shift = REGION_PORT_STEP * (spec.regions.index(region) + 1)
    door = spec.front_door
    regional = msgspec.structs.replace(
        spec,
        regions=[],
        global_front_door=None,
        region=region,
        region_links=links,
        run_dir=str(app.run_dir / region),
        env={**spec.env, "HERD_REGION": region},
        registry_port=spec.registry_port + shift,
        control_port=spec.control_port + shift,
        store_port=spec.store_port + shift if spec.store_port else 0,
        caches=[
            msgspec.structs.replace(c, port=c.port + shift if c.port else 0) for c in spec.caches
        ],
        front_door=None if door is None else msgspec.structs.replace(door, port=door.port + shift),
    )
    return App(regional, app.source)


def _check_regions(spec: AppSpec, source: Path) -> None:
    if (spec.region or spec.region_links) and spec.regions:
        raise ConfigurationError(f"{source}: region is set by herd on one region's cloud")
    if not spec.regions:
        if spec.global_front_door is not None:
            raise ConfigurationError(f"{source}: global_front_door needs regions")
        return
    names = spec.regions
    if len(set(names)) != len(names) or not all(_NAME.match(name) for name in names):
        raise ConfigurationError(
            f"{source}: regions are distinct names of lowercase letters, digits and -"
        )
    if spec.front_door is None or spec.global_front_door is None:
        raise ConfigurationError(
            f"{source}: an app with regions needs [front_door] (each region's) and"
            " [global_front_door] (the one users reach)"
        )
    if spec.registry != "embedded" or spec.network != "loopback":
        raise ConfigurationError(
            f"{source}: regions run on the embedded registry and the loopback network for now"
            " (docs/regions.md)"
        )
    if (problem := spec.global_front_door.problem(names)) is not None:
        raise ConfigurationError(f"{source}: {problem}")


def _check(spec: AppSpec, source: Path) -> None:
    _check_regions(spec, source)
    if not spec.zones or len(set(spec.zones)) != len(spec.zones):
        raise ConfigurationError(f"{source}: zones must be distinct and not empty")
    seen: set[str] = set()
    for group in spec.groups:
        if not _NAME.match(group.service) or not re.match(r"^v\d{3}$", group.version):
            raise ConfigurationError(
                f"{source}: group {group.name!r}: service is lowercase letters, digits and -;"
                " version looks like v001"
            )
        if group.service in RESERVED:
            raise ConfigurationError(
                f"{source}: group {group.name!r}: {group.service!r} is the control plane's name"
            )
        if group.name in seen:
            raise ConfigurationError(f"{source}: group {group.name} is declared twice")
        if group.instances < 0:
            raise ConfigurationError(f"{source}: group {group.name}: instances must be >= 0")
        if group.autoscale is not None and (problem := group.autoscale.problem()) is not None:
            raise ConfigurationError(f"{source}: group {group.name}: {problem}")
        if group.chaos is not None and (problem := group.chaos.problem()) is not None:
            raise ConfigurationError(f"{source}: group {group.name}: {problem}")
        seen.add(group.name)
    if spec.registry not in ("embedded", ETCD):
        try:
            etcd_endpoints(spec.registry)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f'{source}: registry is "embedded", "etcd" or "etcd://host:port,...": {exc}'
            ) from None
    names = [cache.name for cache in spec.caches]
    for cache in spec.caches:
        if not _NAME.match(cache.name) or names.count(cache.name) > 1:
            raise ConfigurationError(
                f"{source}: cache {cache.name!r}: a distinct name of lowercase letters, digits, -"
            )
        if not 1 <= cache.memory_mb <= 65536:
            raise ConfigurationError(f"{source}: cache {cache.name}: memory_mb is 1 to 65536")
        if not (cache.port == 0 or 1024 <= cache.port <= 65535 - len(spec.zones)):
            raise ConfigurationError(
                f"{source}: cache {cache.name}: port is 0 (free ports) or 1024 and up"
            )
    _check_stores(spec, source)
    if spec.network == "isolated" and (spec.stores or spec.registry == ETCD):
        raise ConfigurationError(
            f'{source}: network = "isolated" runs no [[stores]] and no local etcd yet:'
            " use the loopback network for them (docs/network.md)"
        )
    services = {g.service for g in spec.groups}
    for version in spec.versions:
        if version.service not in services or not re.match(r"^v\d{3}$", version.version):
            raise ConfigurationError(
                f"{source}: versions: {version.service}-{version.version}: the service needs a"
                " group and the version looks like v002"
            )
    if (problem := spec.deploy.problem()) is not None:
        raise ConfigurationError(f"{source}: {problem}")
    for group in spec.groups:
        unknown = sorted(set(group.allow or ()) - services - {FRONT_DOOR})
        if unknown:
            raise ConfigurationError(
                f"{source}: group {group.name}: allow names no service of this app: {unknown}"
            )
    if spec.front_door is not None and spec.front_door.service not in services:
        raise ConfigurationError(
            f"{source}: the front door's service {spec.front_door.service!r} has no group"
        )
    if spec.front_door is not None and (problem := spec.front_door.criticality.problem()):
        raise ConfigurationError(f"{source}: {problem}")
    if spec.front_door is not None:
        Mode.parse(spec.front_door.limit)
        if spec.front_door.max_inflight < 1:
            raise ConfigurationError(f"{source}: front_door.max_inflight must be >= 1")
        if spec.front_door.traces_per_s < 0:
            raise ConfigurationError(f"{source}: front_door.traces_per_s must be >= 0")


def _check_stores(spec: AppSpec, source: Path) -> None:
    names = [store.name for store in spec.stores]
    for store in spec.stores:
        if not STORE_NAME.match(store.name) or names.count(store.name) > 1:
            raise ConfigurationError(
                f"{source}: store {store.name!r}: a distinct name of lowercase letters, digits,"
                " - (32 at most)"
            )
        if not 1 <= store.replicas <= min(len(spec.zones), 5):
            raise ConfigurationError(
                f"{source}: store {store.name}: replicas is 1 to the number of zones"
                f" ({len(spec.zones)}), one copy per zone, 5 at most"
            )
    if not (spec.store_port == 0 or 1024 <= spec.store_port <= 65535 - 3 * len(spec.zones)):
        raise ConfigurationError(f"{source}: store_port is 0 (free ports) or 1024 and up")
