# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""The control plane's API, which the `herd` command drives. It is one more herd service."""

from __future__ import annotations

import msgspec

from herd._cloud.history.store import CloudState, Diff, Event, HistoryQuery
from herd._cloud.network.faults import NetFault
from herd._cloud.traces.flow import AddressView, ServedView
from herd._cloud.traces.store import TraceSummary, TraceView
from herd._model.interface import Interface, ServiceError, method
from herd._server.injection import Fault


class InstanceView(msgspec.Struct, frozen=True):
    """One instance as `herd ps` shows it.

    `status` is the registry's (STARTING, UP, OUT_OF_SERVICE) while the process runs; DOWN once it
    exited, until its replacement starts; CRASHLOOP while its slot waits out a back-off after
    crashing again soon after a restart (`pid` 0, no address).
    """

    id: str
    group: str
    service: str
    version: str
    zone: str
    status: str
    address: str
    pid: int
    uptime_s: float
    region: str = ""
    """The region it runs in, in an app with regions (docs/regions.md)."""


class GroupView(msgspec.Struct, frozen=True):
    """One server group: how many instances it should have and has.

    `status` is READY when every desired instance is UP, CRASHLOOP while one of its instances
    keeps crashing and waits out a back-off before its next start, DISABLED while a deploy keeps
    it out of rotation for a rollback (every instance OUT_OF_SERVICE), PENDING otherwise.
    `autoscale` is the group's autoscaling policy ("" when it has none) and `autoscale_reason`
    the autoscaler's latest verdict, which set `desired` when it changed it.
    """

    name: str
    service: str
    version: str
    desired: int
    running: int
    up: int
    status: str
    autoscale: str = ""
    autoscale_reason: str = ""
    region: str = ""


class DeployEvent(msgspec.Struct, frozen=True):
    """One step or decision of a deploy: `at` is wall-clock time (seconds since the epoch)."""

    at: float
    kind: str
    message: str
    score: float | None = None


class MetricJudged(msgspec.Struct, frozen=True):
    """One metric at the judge's latest look: `classification` pass, high, low or nodata;
    `ratio` the canary's rate over the control's (None when the control has no events and the
    canary has some); `e_value` the evidence that the canary is worse."""

    name: str
    classification: str
    ratio: float | None
    e_value: float


class JudgeView(msgspec.Struct, frozen=True):
    """The judge's latest look at a canary: its score, decision and metrics."""

    score: float
    decision: str
    metrics: list[MetricJudged]


class DeployView(msgspec.Struct, frozen=True):
    """A deploy of one service, as `herd deploy status` shows it.

    `state` is where it is: starting, analysing (a canary step), promoting, window (the new
    group serves; the old one is disabled and kept for a rollback until `window_ends_at`), or
    one of the ends: promoted, rolled_back, aborted, failed. `shares` is the traffic split now
    (group -> percent); `judge` is a canary judge's latest look.
    """

    service: str
    version: str
    strategy: str
    old_group: str
    new_group: str
    state: str
    decision: str
    shares: dict[str, int]
    started_at: float
    window_ends_at: float | None = None
    canary_score: float | None = None
    rollback_s: float | None = None
    events: list[DeployEvent] = msgspec.field(default_factory=list)
    step: int | None = None
    """The canary's share now, while a step is analysed."""
    judge: JudgeView | None = None


class DeployRefused(ServiceError):
    """The deploy, confirm, abort or rollback cannot be done now: the message says why."""


class CacheView(msgspec.Struct, frozen=True):
    """One memcached server of a cache (one per cache and zone), as `herd ps` shows it.

    `status` is UP while it answers, DOWN between an exit and its restart, CRASHLOOP while its
    restarts back off.
    """

    id: str
    cache: str
    zone: str
    status: str
    address: str
    pid: int
    uptime_s: float
    memory_mb: int
    log: str


class StoreView(msgspec.Struct, frozen=True):
    """One nats-server of the app's store cluster (one per zone), as `herd ps` shows it.

    `status` is UP while it runs and said it was healthy, DOWN between an exit and its restart,
    CRASHLOOP while its restarts back off; `monitor` is its monitoring address (``/jsz``).
    """

    id: str
    zone: str
    status: str
    address: str
    monitor: str
    pid: int
    uptime_s: float
    log: str


class UnknownTrace(ServiceError):
    """No kept trace has that id."""


class UnknownGroup(ServiceError):
    """No server group has that name."""

    group: str


class UnknownInstance(ServiceError):
    """No running instance has that id."""

    instance: str


class InvalidCount(ServiceError):
    """A group cannot have a negative number of instances."""

    count: int


class MonkeyView(msgspec.Struct, frozen=True):
    """One group Chaos Monkey watches: its settings, and when it strikes next (`waiting` says
    why it holds back: the last victim not yet replaced, too few UP)."""

    group: str
    mean_interval_s: float
    min_healthy: int
    leashed: bool
    next_in_s: float
    waiting: str = ""


class InjectionView(msgspec.Struct, frozen=True):
    """One fault injected on one instance, with the seconds it has left."""

    instance: str
    service: str
    fault: Fault
    left_s: float


class OutageView(msgspec.Struct, frozen=True):
    """A zone out of service: its instances stopped, none started there until it ends."""

    zone: str
    left_s: float
    stopped: list[str]


class NetFaultView(msgspec.Struct, frozen=True):
    """A network fault in force (`herd chaos net`) and the seconds it has left."""

    fault: NetFault
    left_s: float


class ChaosView(msgspec.Struct, frozen=True):
    """Everything chaos does now."""

    paused: bool
    monkey: list[MonkeyView]
    injections: list[InjectionView]
    outages: list[OutageView]
    network: list[NetFaultView] = []
    """The network faults in force (a cloud on `--network isolated`)."""


class ChaosRefused(ServiceError):
    """A chaos action that cannot be done as asked (unknown zone or service, a bad fault, a
    zone already out)."""


class BadTimes(ServiceError):
    """A time range that goes backwards."""


class CloudApi(Interface, name="cloud"):
    """Inspect and change the local cloud. Changes need the admin token."""

    @method(idempotent=True)
    async def ps(self) -> list[InstanceView]: ...

    @method(idempotent=True)
    async def groups(self) -> list[GroupView]: ...

    @method(idempotent=True)
    async def caches(self) -> list[CacheView]: ...

    @method(idempotent=True)
    async def stores(self) -> list[StoreView]: ...

    @method(admin=True)
    async def scale(self, group: str, count: int) -> GroupView: ...

    @method(admin=True)
    async def kill(self, instance: str) -> InstanceView: ...

    @method(admin=True)
    async def down(self) -> bool: ...

    @method(idempotent=True)
    async def traces(self, limit: int = 50) -> list[TraceSummary]:
        """The latest kept traces (failed, slow, sampled), newest first."""

    @method(idempotent=True)
    async def trace(self, trace_id: str) -> TraceView:
        """One kept trace with its spans; `UnknownTrace` if it was not kept."""

    @method(idempotent=True)
    async def history_served(
        self, service: str, since: float | None = None, until: float | None = None
    ) -> list[ServedView]:
        """Which instances and versions served `service`'s requests between the times."""

    @method(idempotent=True)
    async def history_address(self, address: str) -> list[AddressView]:
        """Every instance that ever had `address`."""

    @method(idempotent=True)
    async def history_events(self, query: HistoryQuery) -> list[Event]:
        """The recorded events `query` asks for, oldest first."""

    @method(idempotent=True)
    async def history_at(self, at: float) -> CloudState:
        """The groups and instances as of `at`."""

    @method(idempotent=True)
    async def history_diff(self, since: float, until: float) -> Diff:
        """What changed between two times; `BadTimes` if `until < since`."""

    @method(idempotent=True)
    async def chaos_status(self) -> ChaosView:
        """What chaos does now: monkey, injections, zone outages."""

    @method(admin=True)
    async def chaos_monkey(
        self, group: str, mean_interval_s: float, min_healthy: int = 1, leashed: bool = False
    ) -> ChaosView:
        """Let Chaos Monkey loose on `group` (mean_interval_s 0: call it off)."""

    @method(admin=True)
    async def chaos_pause(self, paused: bool) -> ChaosView:
        """Pause (or resume) Chaos Monkey everywhere."""

    @method(admin=True)
    async def chaos_inject(self, target: str, fault: Fault, instances: list[str]) -> ChaosView:
        """Inject `fault` on the running instances of `target` (`service` or
        `service.method`), or on the named ones of them."""

    @method(admin=True)
    async def chaos_zone_outage(self, zone: str, duration_s: float) -> ChaosView:
        """Stop every instance in `zone` (SIGKILL) and start none there for `duration_s`."""

    @method(admin=True)
    async def chaos_net(self, fault: NetFault) -> ChaosView:
        """Put a network fault in force: partition, loss, latency or bandwidth, on a zone or
        one instance, toward a zone, the registry or everything (`--network isolated`)."""

    @method(admin=True)
    async def chaos_halt(self) -> ChaosView:
        """Stop everything chaos does, at once: monkey, injections, zone outages, network
        faults."""

    @method(admin=True)
    async def deploy(
        self, service: str, version: str, strategy: str, settings: dict[str, str]
    ) -> DeployView: ...

    @method(idempotent=True)
    async def deploys(self) -> list[DeployView]: ...

    @method(admin=True)
    async def confirm(self, service: str) -> DeployView: ...

    @method(admin=True)
    async def abort(self, service: str) -> DeployView: ...

    @method(admin=True)
    async def rollback(self, service: str) -> DeployView: ...
