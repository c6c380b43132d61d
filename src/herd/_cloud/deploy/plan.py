"""One deploy as planned and as it goes: the new group worked out from the old one, the version's
declaration and `--set`, and the state `herd deploy status` shows."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import time
from collections.abc import Mapping

import msgspec

from herd._cloud.app import App, GroupSpec
from herd._cloud.deploy import canary
from herd._cloud.interface import DeployEvent, DeployRefused, DeployView, JudgeView, MetricJudged

RED_BLACK = "red-black"
CANARY = "canary"
STRATEGIES = (RED_BLACK, CANARY)
#: The states a deploy is still working in, and those it ends in.
RUNNING = ("starting", "analysing", "promoting")
WINDOW = "window"
PROMOTED, ROLLED_BACK, ABORTED, FAILED = "promoted", "rolled_back", "aborted", "failed"
_VERSION = re.compile(r"v\d{3}")


@dataclasses.dataclass(eq=False)
class Deploy:
    service: str
    version: str
    strategy: str
    old: GroupSpec
    new: GroupSpec
    count: int
    """The new group's size once promoted."""
    baseline: GroupSpec | None = None
    state: str = "starting"
    decision: str = ""
    shares: dict[str, int] = dataclasses.field(default_factory=dict)
    started_at: float = dataclasses.field(default_factory=time.time)
    window_ends_at: float | None = None
    canary_score: float | None = None
    rollback_s: float | None = None
    events: list[DeployEvent] = dataclasses.field(default_factory=list)
    step: int | None = None
    verdict: canary.Verdict | None = None
    """The judge's latest look."""
    task: asyncio.Task[None] | None = None
    confirmed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @property
    def undoable(self) -> bool:
        """Still running or in its rollback window: the old group is there to go back to."""
        return self.state in RUNNING or self.state == WINDOW

    def view(self) -> DeployView:
        return DeployView(
            service=self.service,
            version=self.version,
            strategy=self.strategy,
            old_group=self.old.name,
            new_group=self.new.name,
            state=self.state,
            decision=self.decision,
            shares=dict(self.shares),
            started_at=self.started_at,
            window_ends_at=self.window_ends_at,
            canary_score=self.canary_score,
            rollback_s=self.rollback_s,
            events=list(self.events),
            step=self.step,
            judge=judged(self.verdict),
        )


def judged(verdict: canary.Verdict | None) -> JudgeView | None:
    """The judge's look as the deploys panel and `herd deploy status` show it."""
    if verdict is None:
        return None
    metrics = [
        MetricJudged(m.name, m.classification, None if math.isinf(m.ratio) else m.ratio, m.e_high)
        for m in verdict.metrics
    ]
    return JudgeView(verdict.score, verdict.decision, metrics)


def active(groups: list[GroupSpec], service: str) -> GroupSpec:
    """The one group of `service` a deploy goes beside."""
    serving = [g for g in groups if g.service == service and not g.detail]
    if not serving:
        raise DeployRefused(f"no server group of {service!r} runs: nothing to deploy beside")
    if len(serving) > 1:
        names = ", ".join(g.name for g in serving)
        raise DeployRefused(f"{service} runs several groups ({names}): one must go first")
    return serving[0]


def plan(
    app: App,
    service: str,
    version: str,
    strategy: str,
    old: GroupSpec,
    settings: Mapping[str, str],
) -> Deploy:
    """The deploy of `version` beside `old`: the app file's declaration of the version, then
    `--set`, over the old group's spec."""
    if not _VERSION.fullmatch(version):
        raise DeployRefused(f"a version looks like v002, not {version[:40]!r}")
    if version == old.version:
        raise DeployRefused(f"{old.name} already runs: a version is deployed once, whole")
    declared = next(
        (v for v in app.spec.versions if (v.service, v.version) == (service, version)),
        None,
    )
    env = {**old.env, **(declared.env if declared else {})}
    module, args = old.module, old.args
    count = old.instances if declared is None or declared.instances is None else declared.instances
    if declared is not None:
        module = declared.module or module
        args = declared.args if declared.args is not None else args
    for key, value in settings.items():
        if key == "module":
            module = value
        elif key == "instances":
            if not value.isdigit() or int(value) < 1:
                raise DeployRefused(f"instances must be a whole number >= 1, not {value!r}")
            count = int(value)
        elif key.isupper():
            env[key] = value
        else:
            raise DeployRefused(
                f"--set {key}: say module=, instances= or an environment variable (UPPER_CASE)"
            )
    # A canary grows to its full count when promoted; red/black keeps the old autoscaling.
    autoscale = old.autoscale if strategy == RED_BLACK else None
    new = msgspec.structs.replace(
        old, version=version, module=module, args=args, env=env, autoscale=autoscale
    )
    deploy = Deploy(service, version, strategy, old, new, count)
    deploy.shares = {old.name: 100}
    if strategy == CANARY:
        deploy.baseline = msgspec.structs.replace(old, detail="baseline", autoscale=None)
    return deploy
