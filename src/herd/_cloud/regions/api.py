# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""The global control plane's API, for an app with regions: what `herd ps`, `herd chaos kong`
and `herd down` drive when the running cloud has regions."""

from __future__ import annotations

import msgspec

from herd._cloud.history.store import Event, HistoryQuery
from herd._cloud.interface import GroupView, InstanceView
from herd._model.interface import Interface, ServiceError, method


class RegionView(msgspec.Struct, frozen=True):
    """One region: `status` UP (its cloud runs), STARTING, DOWN (killed, or exited);
    `healthy` as the global front door's checks say; `weight` now and in the app file;
    `served` the requests it answered through the global front door."""

    name: str
    status: str
    healthy: bool
    weight: int
    base_weight: int
    served: int
    front_door: str
    control: str
    dashboard: str
    pid: int


class KongStep(msgspec.Struct, frozen=True):
    """One step of an evacuation or a return: `at` wall-clock seconds."""

    at: float
    kind: str
    message: str


class KongView(msgspec.Struct, frozen=True):
    """An evacuation (`back` False) or a return of a region, once done.

    `evacuated_s` is the time from the start until no visitor was steered to the region any
    more (the last step of its weight); `scaled` the other regions' groups and the counts they
    were scaled to (out before the shift, or back to where they were after a return).
    """

    region: str
    back: bool
    started_at: float
    took_s: float
    evacuated_s: float | None
    scaled: dict[str, int]
    steps: list[KongStep]


class KongRefused(ServiceError):
    """The evacuation or return cannot be done now: the message says why."""


class RegionsApi(Interface, name="regions"):
    """The regions of the running cloud. Changes need the admin token."""

    @method(idempotent=True)
    async def regions(self) -> list[RegionView]: ...

    @method(idempotent=True)
    async def ps(self) -> list[InstanceView]:
        """Every instance of every region that runs."""

    @method(idempotent=True)
    async def groups(self) -> list[GroupView]:
        """Every server group of every region that runs."""

    @method(idempotent=True)
    async def history_events(self, query: HistoryQuery) -> list[Event]:
        """The global control plane's recorded events (regions, weights, Chaos Kong)."""

    @method(admin=True)
    async def kong(self, region: str, back: bool = False, step_s: float = -1.0) -> KongView:
        """Evacuate `region` (scale the others out, shift its traffic in steps, kill it whole)
        or, `back`, start it again and return its traffic; `step_s` < 0: the app file's."""

    @method(admin=True)
    async def down(self) -> bool: ...
