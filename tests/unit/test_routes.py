"""Version-aware routing: routes, the group a call goes to by its bucket or pin, the front
door's cohorts, and routes published through the registry."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from aiohttp.test_utils import make_mocked_request

from herd._client.attempts import Attempt, AttemptLoop, Backoff, Retry
from herd._client.balance import Balancer
from herd._client.budget import RetryBudget
from herd._client.routes import GroupChooser
from herd._cloud.app import CellSpec, CohortSpec
from herd._cloud.deploy.cohorts import Cohorts
from herd._model import identity
from herd._model.errors import Unavailable
from herd._model.identity import CONTROL, Identity
from herd._model.instance import Instance, Status
from herd._model.route import Route, Split, bucket_of
from herd._model.routing import routing
from herd._process.registry_api import InvalidRoute, NotAuthorized
from herd._registry.service import RegistryService

#: Who calls the registry in these tests: the control plane, and one instance.
_CONTROL = Identity("flix", CONTROL, CONTROL, CONTROL)
_INSTANCE = Identity("flix", "movie", "movie-v001", "movie-v001-a1")


def _as(caller: Identity) -> None:
    """Make `caller` the identity the registry sees (as the server does around a handler)."""
    identity.use(caller)


def _instance(group: str, n: int) -> Instance:
    service, _, version = group.rpartition("-")
    service = service.removesuffix("-baseline")
    return Instance(
        id=f"{group}-a{n}",
        service=service,
        group=group,
        version=version,
        zone="a",
        host="127.0.0.1",
        port=9000 + n,
        status=Status.UP,
    )


OLD = [_instance("movie-v001", n) for n in range(3)]
NEW = [_instance("movie-v002", n) for n in range(3, 5)]
BASE = [_instance("movie-baseline-v001", n) for n in range(5, 7)]
ALL = [*OLD, *NEW, *BASE]


def _route(*shares: tuple[str, int]) -> Route:
    return Route("movie", [Split(group, share) for group, share in shares])


def test_a_bucket_picks_the_split_that_covers_it_first_split_first() -> None:
    chooser = GroupChooser()
    route = _route(("movie-v002", 5), ("movie-baseline-v001", 5), ("movie-v001", 90))
    groups = {
        bucket: {i.group for i in chooser.choose(ALL, route, {"bucket": str(bucket)})[0]}
        for bucket in range(100)
    }
    assert all(groups[b] == {"movie-v002"} for b in range(5))
    assert all(groups[b] == {"movie-baseline-v001"} for b in range(5, 10))
    assert all(groups[b] == {"movie-v001"} for b in range(10, 100))
    # Growing the new group's share keeps every visitor it had: nobody moves back.
    wider = _route(("movie-v002", 25), ("movie-baseline-v001", 25), ("movie-v001", 50))
    for bucket in range(5):
        assert {i.group for i in chooser.choose(ALL, wider, {"bucket": str(bucket)})[0]} == {
            "movie-v002"
        }


def test_the_fallback_is_every_group_with_traffic() -> None:
    route = _route(("movie-v002", 100), ("movie-v001", 0))
    group, fallback = GroupChooser().choose(ALL, route, {"bucket": "50"})
    assert set(group) == set(NEW) and set(fallback) == set(NEW)


def test_a_pin_reaches_its_version_where_it_exists() -> None:
    chooser = GroupChooser()
    route = _route(("movie-v001", 100), ("movie-v002", 0))
    assert set(chooser.choose(ALL, route, {"pin": "v002", "bucket": "99"})[0]) == set(NEW)
    # Its own group, not a baseline of the same version.
    assert set(chooser.choose(ALL, route, {"pin": "v001"})[0]) == set(OLD)
    # A version this service lacks: the route decides.
    assert set(chooser.choose(ALL, route, {"pin": "v007", "bucket": "3"})[0]) == set(OLD)


def test_without_a_bucket_calls_spread_by_share() -> None:
    chooser = GroupChooser(random.Random(7))
    route = _route(("movie-v002", 20), ("movie-v001", 80))
    picks = [chooser.choose(ALL, route, {})[0][0].group for _ in range(2000)]
    assert 0.15 < picks.count("movie-v002") / 2000 < 0.25
    # A malformed bucket is no bucket.
    assert chooser.choose(ALL, route, {"bucket": "250"})[0]


def test_a_route_never_makes_a_service_unreachable() -> None:
    route = _route(("movie-v009", 100))
    group, _ = GroupChooser().choose(OLD, route, {"bucket": "1"})
    assert set(group) == set(OLD)
    # The routed group is down: the route's other groups take it.
    route = _route(("movie-v002", 50), ("movie-v001", 50))
    group, _ = GroupChooser().choose(OLD, route, {"bucket": "1"})
    assert set(group) == set(OLD)


def test_route_problems_and_stable_buckets() -> None:
    assert _route(("movie-v001", 100)).problems() == []
    assert _route(("movie-v001", 60)).problems()
    assert _route(("movie-v001", 50), ("movie-v001", 50)).problems()
    assert _route(("movie-v001", 120), ("movie-v002", -20)).problems()
    # crc32: the same in every process and release (Python's hash() is salted per process).
    assert bucket_of("42") == 88  # zlib.crc32(b"42") = 841265288
    assert {bucket_of(str(v)) for v in range(1000)} == set(range(100))


def _request(path: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return make_mocked_request("GET", path, headers=headers or {})


def test_the_front_door_gives_each_request_a_bucket_and_maybe_a_pin() -> None:
    cohorts = Cohorts(
        CohortSpec(
            visitor_query="visitor",
            visitor_cookie="visitor",
            pin_header="x-flix-pin",
            cells=[CellSpec(name="beta", version="v003", visitors=[7, "8"])],
        ),
        rng=random.Random(1),
    )
    assert cohorts.entries(_request("/api/home?visitor=42")) == {"bucket": "88"}
    assert cohorts.entries(_request("/", {"Cookie": "visitor=42"})) == {"bucket": "88"}
    pinned = cohorts.entries(_request("/api/home?visitor=42", {"x-flix-pin": "v002"}))
    assert pinned == {"bucket": "88", "pin": "v002"}
    assert cohorts.entries(_request("/api/home?visitor=7"))["pin"] == "v003"
    assert cohorts.entries(_request("/api/home?visitor=8"))["pin"] == "v003"
    # Anything but a version from outside is ignored, never an error.
    assert "pin" not in cohorts.entries(_request("/?visitor=1", {"x-flix-pin": "v2,x=y"}))
    anonymous = {cohorts.entries(_request("/"))["bucket"] for _ in range(40)}
    assert len(anonymous) > 10  # random buckets: each anonymous request on its own


async def test_routes_travel_in_the_registrys_snapshots() -> None:
    registry = RegistryService(identities=True)
    _as(_CONTROL)
    route = _route(("movie-v002", 10), ("movie-v001", 90))
    first = await registry.watch("", -1)
    assert first.routes == []
    waiting = asyncio.ensure_future(registry.watch(first.epoch, first.version))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert await registry.set_route(route)
    snapshot = await asyncio.wait_for(waiting, 1.0)
    assert snapshot.routes == [route] and snapshot.version > first.version
    # A route with no splits removes the service's route, and counts as a change too.
    await registry.set_route(Route("movie", []))
    after = await registry.watch(snapshot.epoch, snapshot.version)
    assert after.routes == [] and after.version > snapshot.version


async def test_only_the_control_plane_publishes_routes() -> None:
    registry = RegistryService(identities=True)
    route = _route(("movie-v001", 100))
    _as(_INSTANCE)
    with pytest.raises(NotAuthorized):
        await registry.set_route(route)
    _as(_CONTROL)
    with pytest.raises(InvalidRoute):
        await registry.set_route(_route(("movie-v001", 10)))
    assert await registry.set_route(route)


async def test_the_control_plane_sets_other_instances_statuses_and_instances_only_their_own() -> (
    None
):
    registry = RegistryService(identities=True)
    _as(_INSTANCE)
    await registry.register(_instance("movie-v001", 1))
    _as(Identity("flix", "movie", "movie-v001", "movie-v001-a2"))
    with pytest.raises(NotAuthorized):
        await registry.set_status("movie-v001-a1", Status.OUT_OF_SERVICE)
    _as(_CONTROL)
    assert await registry.set_status("movie-v001-a1", Status.OUT_OF_SERVICE)
    # The control plane changes statuses; it does not speak for an instance otherwise.
    with pytest.raises(NotAuthorized):
        await registry.renew("movie-v001-a1")


class _Routed:
    """A resolver with a route, as the registry's is."""

    def __init__(self, instances: list[Instance], route: Route) -> None:
        self._instances = instances
        self._route = route

    def instances(self, service: str) -> list[Instance]:
        return self._instances

    def route(self, service: str) -> Route | None:
        return self._route

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _loop(route: Route) -> AttemptLoop:
    return AttemptLoop(
        "movie",
        _Routed(ALL, route),
        Balancer("a"),
        RetryBudget(),
        Backoff(0.0, 0.0),
        min_useful=0.001,
    )


async def test_every_call_goes_to_its_routed_group_and_a_retry_may_leave_it() -> None:
    route = _route(("movie-v002", 50), ("movie-v001", 50))
    loop = _loop(route)
    seen: list[str] = []

    async def answer(attempt: Attempt) -> str:
        seen.append(attempt.instance.group)
        return attempt.instance.group

    for bucket in range(100):
        with routing(bucket=str(bucket)):
            group = await loop.run(answer, time.monotonic() + 1, 1)
        assert group == ("movie-v002" if bucket < 50 else "movie-v001")
    with routing(pin="v001", bucket="3"):
        assert await loop.run(answer, time.monotonic() + 1, 1) == "movie-v001"

    # Every instance of the routed group refuses: the third attempt goes to the other group.
    async def refuse_new(attempt: Attempt) -> str:
        seen.append(attempt.instance.group)
        if attempt.instance.group == "movie-v002":
            raise Retry(Unavailable("refused"))
        return attempt.instance.group

    seen.clear()
    with routing(bucket="1"):
        assert await loop.run(refuse_new, time.monotonic() + 1, 3) == "movie-v001"
    assert seen == ["movie-v002", "movie-v002", "movie-v001"]
