"""Interfaces: one declaration gives a server and a driver; mistakes are caught; errors travel."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from typing import ClassVar, NewType

import msgspec
import pytest

import herd
from herd._model.interface import error_from_wire, error_to_wire, methods

VideoId = NewType("VideoId", int)


class Rating(msgspec.Struct, frozen=True):
    video: VideoId
    stars: int
    tags: list[str] = []


class NotFound(herd.ServiceError):
    video: VideoId


class Invalid(herd.ServiceError):
    field: str
    limit: int


class TooMany(Invalid):
    """A declared error that extends another, adding a field."""

    count: int
    kind_of_thing: ClassVar[str] = "a class variable, not a field"


class Ratings(herd.Interface, name="ratings"):
    @herd.method(idempotent=True, attempts=3, timeout=0.5)
    async def get(self, video: VideoId) -> Rating: ...

    async def put(self, rating: Rating, *, replace: bool = False) -> list[VideoId]: ...

    async def top(self, limit: int = 3) -> dict[str, list[Rating]]: ...

    async def check(self, stars: int) -> None: ...

    def helper(self) -> str:
        """Not async: not part of the wire interface."""
        return "local"


class RatingsService(Ratings):
    def __init__(self) -> None:
        self.stored: dict[VideoId, Rating] = {}

    async def get(self, video: VideoId) -> Rating:
        if video not in self.stored:
            raise NotFound(f"no rating for {video}", video=video)
        return self.stored[video]

    async def put(self, rating: Rating, *, replace: bool = False) -> list[VideoId]:
        if rating.video in self.stored and not replace:
            raise Invalid("already rated", field="video", limit=1)
        self.stored[rating.video] = rating
        return sorted(self.stored)

    async def top(self, limit: int = 3) -> dict[str, list[Rating]]:
        best = sorted(self.stored.values(), key=lambda r: -r.stars)[:limit]
        return {"best": best}

    async def check(self, stars: int) -> None:
        if stars > 5:
            raise TooMany("too many stars", field="stars", limit=5, count=stars)


# With no deadline in force, calls get this much time.
PATIENT = herd.CallPolicy(timeout=10.0)


@pytest.fixture
async def ratings() -> AsyncIterator[Ratings]:
    async with herd.serve(RatingsService()) as server:
        driver = herd.driver(Ratings, address=server.address, policy=PATIENT)
        try:
            yield driver
        finally:
            await driver.aclose()


# -- the declaration ------------------------------------------------------------------------


def test_methods_are_derived_from_the_annotations() -> None:
    specs = methods(Ratings)
    assert sorted(specs) == ["check", "get", "put", "top"]  # `helper` is not async: local only
    get = specs["get"]
    assert (get.service, get.name) == ("ratings", "get")
    assert (get.options.idempotent, get.options.attempts, get.options.timeout) == (True, 3, 0.5)
    assert specs["put"].options.idempotent is False
    assert specs["put"].params == ("rating", "replace")
    # An implementation and the interface share one set of specs.
    assert methods(RatingsService()) is specs


def test_ids_are_plain_ints_on_the_wire() -> None:
    videos = [VideoId(i) for i in range(100)]
    assert msgspec.msgpack.encode(videos) == msgspec.msgpack.encode(list(range(100)))


def _declare(body: str) -> type[herd.Interface]:
    namespace: dict[str, object] = {"herd": herd}
    exec(f'class Bad(herd.Interface, name="bad"):\n{body}', namespace)
    cls = namespace["Bad"]
    assert isinstance(cls, type) and issubclass(cls, herd.Interface)
    return cls


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("    async def f(self, x) -> int: ...", "needs a type annotation"),
        ("    async def f(self, x: int): ...", "result needs a type annotation"),
        ("    async def f(self, *xs: int) -> int: ...", "*args"),
        ("    async def f(self, **kw: int) -> int: ...", "*args and **kwargs"),
        ("    async def f(self, x: int, /) -> int: ...", "positional-only parameters"),
        ("    async def f(self, x: 'Missing') -> int: ...", "cannot resolve"),
        ("    async def f(self, x: int) -> int | str | bytes: ...", "cannot cross the wire"),
        ("    def f(self) -> int: ...", "no async methods"),
    ],
    ids=[
        "unannotated parameter",
        "unannotated result",
        "*args",
        "**kwargs",
        "positional-only",
        "unresolvable annotation",
        "result type msgspec cannot decode",
        "no async methods",
    ],
)
def test_interface_mistakes_are_configuration_errors(body: str, complaint: str) -> None:
    bad = _declare(body)
    with pytest.raises(herd.ConfigurationError, match=complaint.replace("*", r"\*")):
        herd.driver(bad, address="127.0.0.1:9")
    with pytest.raises(herd.ConfigurationError, match=complaint.replace("*", r"\*")):
        herd.serve(bad())


@pytest.mark.parametrize("name", ["", "has space", "dots.are.out", "slash/es"])
def test_a_service_name_must_be_usable_in_a_path(name: str) -> None:
    with pytest.raises(herd.ConfigurationError, match="service name"):

        class Named(herd.Interface, name=name):
            async def f(self) -> int: ...


def test_an_interface_must_have_a_name() -> None:
    with pytest.raises(herd.ConfigurationError, match="declare an interface with a name"):

        class Nameless(herd.Interface):
            async def f(self) -> int: ...


def test_a_method_must_be_attempted_at_least_once() -> None:
    with pytest.raises(herd.ConfigurationError, match="attempts"):
        herd.method(attempts=0)


def test_configuration_errors_are_herd_errors() -> None:
    assert issubclass(herd.ConfigurationError, herd.HerdError)
    with pytest.raises(herd.ConfigurationError):
        herd.driver(RatingsService, address="not-an-address")


# -- declared errors ------------------------------------------------------------------------


def test_a_declared_error_needs_exactly_its_fields() -> None:
    error = NotFound("gone", video=VideoId(7))
    assert (error.message, error.video, str(error)) == ("gone", 7, "gone")
    with pytest.raises(TypeError, match=r"missing fields \['video'\]"):
        NotFound("gone")
    with pytest.raises(TypeError, match=r"unknown fields \['title'\]"):
        NotFound("gone", video=VideoId(7), title="x")
    # Fields are inherited along the error hierarchy; class variables are not fields.
    with pytest.raises(TypeError, match=r"missing fields \['count'\]"):
        TooMany("x", field="stars", limit=5)
    assert isinstance(TooMany("x", field="f", limit=1, count=2), Invalid)


def test_a_declared_error_without_a_message_is_named_by_its_type() -> None:
    assert str(NotFound(video=VideoId(1))) == "NotFound"


def test_a_declared_error_survives_the_wire_encoding_and_pickling() -> None:
    error = TooMany("too many", field="stars", limit=5, count=9)
    key, fields = error_to_wire(error)
    assert fields == {"field": "stars", "limit": 5, "count": 9}
    back = error_from_wire(
        key, error.message, msgspec.msgpack.decode(msgspec.msgpack.encode(fields))
    )
    assert type(back) is TooMany
    assert (back.message, back.field, back.limit, back.count) == ("too many", "stars", 5, 9)
    unpickled = pickle.loads(pickle.dumps(error))
    assert type(unpickled) is TooMany
    assert (unpickled.message, unpickled.count) == ("too many", 9)
    assert error_from_wire("nowhere.Unknown", "?", {}) is None


# -- served and called ----------------------------------------------------------------------


async def test_the_driver_has_the_interfaces_methods_and_types(ratings: Ratings) -> None:
    assert isinstance(ratings, Ratings)
    assert ratings.helper() == "local"
    stored = await ratings.put(Rating(VideoId(3), 4, ["funny"]))
    assert stored == [3]
    assert await ratings.put(Rating(VideoId(1), 5), replace=True) == [1, 3]
    got = await ratings.get(VideoId(3))
    assert got == Rating(VideoId(3), 4, ["funny"])
    assert type(got) is Rating
    top = await ratings.top(limit=1)
    assert top == {"best": [Rating(VideoId(1), 5)]}
    assert await ratings.top() == {
        "best": [Rating(VideoId(1), 5), Rating(VideoId(3), 4, ["funny"])]
    }
    assert await ratings.check(3) is None


async def test_declared_errors_are_raised_in_the_caller_as_themselves(ratings: Ratings) -> None:
    with pytest.raises(NotFound) as not_found:
        await ratings.get(VideoId(42))
    assert (type(not_found.value), not_found.value.video) == (NotFound, 42)
    assert not_found.value.message == "no rating for 42"

    await ratings.put(Rating(VideoId(1), 2))
    with pytest.raises(Invalid) as invalid:
        await ratings.put(Rating(VideoId(1), 3))
    assert type(invalid.value) is Invalid
    assert (invalid.value.field, invalid.value.limit) == ("video", 1)

    with pytest.raises(TooMany) as too_many:
        await ratings.check(9)
    assert (too_many.value.field, too_many.value.limit, too_many.value.count) == ("stars", 5, 9)


async def test_arguments_are_checked_before_anything_is_sent(ratings: Ratings) -> None:
    with pytest.raises(TypeError, match=r"ratings\.get"):
        await ratings.get()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"ratings\.get"):
        await ratings.get(VideoId(1), VideoId(2))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"ratings\.put"):
        await ratings.put(Rating(VideoId(1), 1), nonsense=True)  # type: ignore[call-arg]


class Skewed(herd.ServiceError):
    count: int


class Skewing(herd.Interface, name="skewing"):
    async def fail(self) -> int: ...


class SkewingService(Skewing):
    async def fail(self) -> int:
        # What a server built against another version of the error sends: a field of the
        # wrong type. The caller cannot rebuild its `Skewed` from it.
        raise Skewed("skewed", count="many")  # type: ignore[arg-type]


async def test_a_declared_error_whose_fields_do_not_fit_arrives_as_remote_error() -> None:
    async with herd.serve(SkewingService()) as server:
        skewing = herd.driver(Skewing, address=server.address)
        try:
            with pytest.raises(herd.RemoteError) as caught, herd.deadline(5.0):
                await skewing.fail()
        finally:
            await skewing.aclose()
    error = caught.value
    assert (error.service, error.method, error.kind) == ("skewing", "fail", "service_error")
    assert "Skewed" in error.message and "skewed" in error.message


def test_a_service_error_field_cannot_be_named_message() -> None:
    with pytest.raises(herd.ConfigurationError, match="`message`"):

        class Clash(herd.ServiceError):
            message: str


@pytest.mark.parametrize("reserved", ["astart", "aclose"])
def test_an_interface_cannot_declare_a_method_every_implementation_has(reserved: str) -> None:
    async def method(self: herd.Interface) -> None: ...

    with pytest.raises(herd.ConfigurationError, match=f"{reserved}: the name is taken"):
        type("Bad", (herd.Interface,), {reserved: method}, name="bad")
