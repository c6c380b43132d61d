"""Deploys: a new version is a new, immutable server group beside the old one; traffic moves to
it, and back in seconds.

Red/black (Asgard): the new group starts with no traffic; once every instance is UP the route
gives it all new requests and the old group is *disabled*: its instances are OUT_OF_SERVICE in
the registry, alive and finishing what they have, for the rollback window. A rollback turns them
UP and the route back: no process starts. The old group is destroyed when the deploy is
confirmed or the window ends.

Canary (Kayenta): the new group and a *baseline* (the old version, started fresh at the same
size) get the same share of traffic, step by step; between steps the judge (`canary.py`)
compares them on what their instances report (`analysis.py`). A step that fails rolls the
deploy back by itself; the last step promotes the canary as red/black does.

The controller owns processes and groups; this module decides, through the small `Fleet`
surface the controller offers. `plan.py` works out each deploy, and `registry_hold.py` publishes
its routes and statuses through the registry and holds them there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import aiohttp
import structlog

from herd._cloud.app import App, DeploySpec, GroupSpec
from herd._cloud.deploy import canary, canary_steps
from herd._cloud.deploy.analysis import Counts, Sampler
from herd._cloud.deploy.plan import (
    ABORTED,
    FAILED,
    PROMOTED,
    RED_BLACK,
    ROLLED_BACK,
    RUNNING,
    STRATEGIES,
    WINDOW,
    Deploy,
    active,
    plan,
)
from herd._cloud.deploy.registry_hold import RECONCILE_S, RegistryHold
from herd._cloud.history.recorder import Recorder
from herd._cloud.interface import DeployEvent, DeployRefused, DeployView
from herd._model.instance import Status
from herd._model.route import Route, Split
from herd._process.registry_client import RegistryResolver
from herd._wire.http_client import InstanceSession

log = structlog.get_logger("herd.deploy")

_POLL_S = 0.05


class Fleet(Recorder, Protocol):
    """What deploys need of the controller (which records their steps in the history)."""

    app: App

    @property
    def resolver(self) -> RegistryResolver | None:
        """The control plane's own copy of the registry."""
        ...

    @property
    def registry_address(self) -> str:
        """The registry's `host:port`."""
        ...

    def group_specs(self) -> list[GroupSpec]:
        """Every group the control plane runs now."""
        ...

    def add_group(self, spec: GroupSpec, count: int) -> None:
        """Start a new group of `count` instances."""
        ...

    def set_count(self, group: str, count: int) -> None:
        """Change a group's desired count."""
        ...

    def remove_group(self, group: str) -> None:
        """Stop a group's instances (they deregister and drain) and forget the group."""
        ...

    def addresses(self, group: str) -> list[str]:
        """The addresses of the group's running, ready instances."""
        ...


class Deployer:
    """Runs the deploys of one local cloud: at most one per service at a time."""

    def __init__(self, fleet: Fleet, spec: DeploySpec) -> None:
        self._fleet = fleet
        self.spec = spec
        self._hold = RegistryHold(fleet.registry_address, lambda: fleet.resolver)
        self._deploys: dict[str, Deploy] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        """Begin keeping the registry in line with the routes and statuses deploys set."""
        self._hold.start()

    async def close(self) -> None:
        """Stop every deploy where it is (the processes stop with the control plane)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._hold.close()

    async def forget(self, instance: str) -> None:
        """Drop an instance whose process ended from the registry at once, so callers stop
        picking it now rather than when its lease runs out (the lease still evicts it if this
        write is lost). Once the control plane stops, every instance goes with it: nothing to
        forget, and no registry driver left to do it with."""
        if not self._closed:
            await self._hold.forget(instance)

    # -- the API

    def views(self) -> list[DeployView]:
        """The latest deploy of every service that had one."""
        return [deploy.view() for deploy in self._deploys.values()]

    async def deploy(
        self, service: str, version: str, strategy: str, settings: Mapping[str, str]
    ) -> DeployView:
        """Start deploying `version` of `service`; the deploy goes on in the background."""
        if strategy not in STRATEGIES:
            raise DeployRefused(f"strategy is {' or '.join(STRATEGIES)}, not {strategy!r}")
        current = self._deploys.get(service)
        if current is not None and current.undoable:
            raise DeployRefused(
                f"{service} is being deployed ({current.version}, {current.state}): confirm,"
                " abort or roll it back first"
            )
        old = active(self._fleet.group_specs(), service)
        deploy = plan(self._fleet.app, service, version, strategy, old, settings)
        self._deploys[service] = deploy
        self._event(deploy, "deploy", f"{strategy} of {deploy.new.name} beside {old.name}")
        work = self._red_black(deploy) if strategy == RED_BLACK else self._canary(deploy)
        deploy.task = self._spawn(self._guarded(deploy, work))
        return deploy.view()

    async def confirm(self, service: str) -> DeployView:
        """End the rollback window now: the old group is destroyed."""
        deploy = self._deploys.get(service)
        if deploy is None or deploy.state != WINDOW:
            raise DeployRefused(f"no deploy of {service} waits in its rollback window")
        deploy.confirmed.set()
        self._event(deploy, "confirm", "confirmed: the old group goes now")
        return deploy.view()

    async def abort(self, service: str) -> DeployView:
        """Stop a deploy and put everything back as it was before it."""
        return await self._undo(service, ABORTED)

    async def rollback(self, service: str) -> DeployView:
        """Send the traffic back to the old group (re-enabled, not restarted)."""
        return await self._undo(service, ROLLED_BACK)

    # -- strategies

    async def _red_black(self, deploy: Deploy) -> None:
        await self._route(deploy, [(deploy.old.name, 100)])
        await self._create(deploy, deploy.new, deploy.count)
        await self._promote(deploy)

    async def _canary(self, deploy: Deploy) -> None:
        spec = self.spec
        assert deploy.baseline is not None
        old, new, baseline = deploy.old.name, deploy.new.name, deploy.baseline.name
        size = spec.canary_instances
        await self._route(deploy, [(old, 100)])
        await asyncio.gather(
            self._create(deploy, deploy.new, size), self._create(deploy, deploy.baseline, size)
        )

        async def route(share: int) -> None:
            deploy.state, deploy.step = "analysing", share
            await self._route(deploy, [(new, share), (baseline, share), (old, 100 - 2 * share)])
            self._event(deploy, "canary_step", f"{new} and {baseline} get {share} % each")

        def looked(_share: int, verdict: canary.Verdict) -> None:
            deploy.verdict = verdict

        # Most of an interval: a loaded instance that answers late still gives its counts.
        timeout = aiohttp.ClientTimeout(total=max(1.0, spec.interval_s * 0.8))
        # The control plane's own identity: instances take no call without one.
        async with InstanceSession(timeout) as session:
            samplers = [Sampler(session) for _ in range(3)]

            async def take() -> tuple[Counts, Counts, Counts]:
                tested, base, production = await asyncio.gather(
                    *(
                        sampler.take(self._fleet.addresses(group))
                        for sampler, group in zip(samplers, (new, baseline, old), strict=True)
                    )
                )
                return tested, base, production

            _, verdict = await canary_steps.run(
                spec,
                canary_steps.judge_for(spec),
                take,
                route,
                looked,
                functools.partial(self._analysed, deploy),
            )
        deploy.step = None
        if verdict.decision != canary.PASS:
            self._event(deploy, "decision", f"the canary failed: {verdict.summary()}")
            await self._back(deploy, ROLLED_BACK, cause="canary analysis failed")
            return
        deploy.state = "promoting"
        self._fleet.set_count(new, deploy.count)
        self._event(deploy, "canary_promote", f"{new} grows to {deploy.count} instances")
        await self._until_up(new, deploy.count)
        await self._promote(deploy)

    def _analysed(self, deploy: Deploy, share: int, verdict: canary.Verdict) -> None:
        previous = deploy.canary_score
        deploy.canary_score = verdict.score if previous is None else min(previous, verdict.score)
        self._event(
            deploy,
            "canary_analysis",
            f"at {share} %: {verdict.summary()}",
            score=verdict.score,
            share=share,
            decision=verdict.decision,
            metrics={m.name: m.reason for m in verdict.metrics},
        )

    async def _promote(self, deploy: Deploy) -> None:
        """All new requests to the new group; the old one disabled for the rollback window."""
        new, old = deploy.new.name, deploy.old.name
        await self._route(deploy, [(new, 100), (old, 0)])
        await self._set_status(deploy, old, Status.OUT_OF_SERVICE)
        if deploy.baseline is not None:
            self._destroy(deploy, deploy.baseline.name)
        deploy.state = WINDOW
        window = self.spec.rollback_window_s
        deploy.window_ends_at = time.time() + window
        self._event(deploy, "window", f"{old} kept disabled for {window:g} s for a rollback")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deploy.confirmed.wait(), window)
        self._destroy(deploy, old)
        deploy.state = deploy.decision = PROMOTED
        await self._route(deploy, [])
        deploy.window_ends_at = None
        self._event(deploy, "decision", f"promoted: {new} serves {deploy.service}")

    async def _undo(self, service: str, decision: str) -> DeployView:
        deploy = self._deploys.get(service)
        if deploy is None or not deploy.undoable:
            what = "roll back" if decision == ROLLED_BACK else "abort"
            raise DeployRefused(
                f"no deploy of {service} to {what}: the old group is gone once a deploy is"
                " promoted (deploy the old version again)"
            )
        if deploy.task is not None:
            deploy.task.cancel()
            await asyncio.gather(deploy.task, return_exceptions=True)
        await self._back(deploy, decision, cause=f"herd {decision.replace('_', ' ')}")
        return deploy.view()

    async def _back(self, deploy: Deploy, decision: str, *, cause: str) -> None:
        """The old group serves everything again; the new (and the baseline) go.

        `rollback_s` runs from here until this control plane's own copy of the registry (which
        the front door reads, and which every driver's watch gets the same way) shows the old
        group UP and the route back on it.
        """
        started = time.monotonic()
        old = deploy.old.name
        await asyncio.gather(
            self._set_status(deploy, old, Status.UP, cause=cause),
            self._route(deploy, [(old, 100)]),
        )
        await self._until_seen(deploy)
        deploy.rollback_s = round(time.monotonic() - started, 3)
        for group in (deploy.new, deploy.baseline):
            if group is not None:
                self._destroy(deploy, group.name, cause=cause)
        deploy.state = deploy.decision = decision
        deploy.window_ends_at = None
        self._event(deploy, "decision", f"{decision}: {old} serves again in {deploy.rollback_s} s")
        # Once the new group's instances have drained, the service needs no route any more.
        self._spawn(self._drop_route_later(deploy))

    async def _drop_route_later(self, deploy: Deploy) -> None:
        await asyncio.sleep(RECONCILE_S * 4)
        if self._deploys.get(deploy.service) is deploy:
            await self._route(deploy, [])

    async def _guarded(self, deploy: Deploy, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("deploy failed", service=deploy.service, error=repr(exc))
            self._event(deploy, "error", f"{type(exc).__name__}: {exc}")
            if deploy.state in RUNNING:
                try:
                    await self._back(deploy, FAILED, cause=str(exc))
                finally:
                    # Whatever `_back` managed, the deploy is over: `_reconcile` holds the rest.
                    deploy.state = deploy.decision = FAILED

    # -- steps

    async def _create(self, deploy: Deploy, spec: GroupSpec, count: int) -> None:
        self._fleet.add_group(spec, count)
        self._event(deploy, "group_created", f"{spec.name}: {count} instances", group=spec.name)
        await self._until_up(spec.name, count)
        self._event(deploy, "group_up", f"{spec.name}: every instance UP", group=spec.name)

    def _destroy(self, deploy: Deploy, group: str, *, cause: str = "") -> None:
        self._hold.release(group)
        if any(g.name == group for g in self._fleet.group_specs()):
            self._fleet.remove_group(group)
            self._event(deploy, "group_destroyed", group, group=group, cause=cause)

    async def _until_up(self, group: str, count: int) -> None:
        deadline = time.monotonic() + self.spec.ready_timeout_s
        while self._up(group) < count:
            if time.monotonic() > deadline:
                raise DeployRefused(
                    f"{group}: {self._up(group)} of {count} instances UP after"
                    f" {self.spec.ready_timeout_s:g} s (see its logs)"
                )
            await asyncio.sleep(_POLL_S)

    def _up(self, group: str) -> int:
        resolver = self._fleet.resolver
        assert resolver is not None
        return sum(1 for i in resolver.all() if i.group == group and i.status == Status.UP)

    async def _until_seen(self, deploy: Deploy) -> None:
        resolver = self._fleet.resolver
        assert resolver is not None
        old, wanted = deploy.old.name, self._hold.route(deploy.service)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            members = [i for i in resolver.all() if i.group == old]
            if resolver.route(deploy.service) == wanted and all(
                i.status == Status.UP for i in members
            ):
                return
            await asyncio.sleep(0.005)

    async def _route(self, deploy: Deploy, shares: list[tuple[str, int]]) -> None:
        route = Route(deploy.service, [Split(group, share) for group, share in shares])
        if shares:
            deploy.shares = dict(shares)
        else:
            serving = deploy.new if deploy.state == PROMOTED else deploy.old
            deploy.shares = {serving.name: 100}
        await self._hold.set_route(route)
        split = ", ".join(f"{group} {share} %" for group, share in shares)
        self._event(
            deploy, "route", split or "no route: every UP instance serves", shares=deploy.shares
        )

    async def _set_status(
        self, deploy: Deploy, group: str, status: Status, *, cause: str = ""
    ) -> None:
        members = await self._hold.set_status(group, status)
        kind = "group_enabled" if status == Status.UP else "group_disabled"
        message = f"{group}: {members} instances {status}"
        self._event(deploy, kind, message, group=group, cause=cause, instances=members)
        # The group's own state, beside the deploy's step: what `herd history --at` replays.
        self._fleet.record(kind.replace("_", "."), cause=cause or "deploy", group=group)

    # -- bookkeeping

    def _event(
        self,
        deploy: Deploy,
        kind: str,
        message: str,
        *,
        group: str | None = None,
        cause: str = "",
        score: float | None = None,
        **detail: object,
    ) -> None:
        """Show a step or decision in `herd deploy status`, and keep it in the history."""
        deploy.events.append(DeployEvent(time.time(), kind, message, score))
        if score is not None:
            detail["score"] = score
        # Typed loosely: `detail` holds no `cause`, `group` or `instance`, set here by name.
        record: Callable[..., object] = self._fleet.record
        record(
            f"deploy.{kind}",
            cause=cause,
            group=group or deploy.new.name,
            service=deploy.service,
            version=deploy.version,
            message=message,
            **detail,
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
