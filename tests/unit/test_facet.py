"""Ids and facets: two facets of one id type, each filled with one batched call per kind."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NewType

import msgspec
import pytest

import herd

VideoId = NewType("VideoId", int)


class PresentationVideo(herd.Facet, of=VideoId):
    title: str
    year: int


class MerchableVideo(herd.Facet, of=VideoId):
    row: str
    score: float


class Catalog(herd.Interface, name="catalog"):
    @herd.method(idempotent=True)
    async def presentation(self, videos: list[VideoId]) -> list[PresentationVideo]: ...

    @herd.method(idempotent=True)
    async def merchable(self, videos: list[VideoId]) -> list[MerchableVideo]: ...


KNOWN = range(1, 1000)  # video 0 and everything from 1000 on do not exist


class CatalogService(Catalog):
    """Answers only for known videos, in reverse order, so `fill` must put them back in place."""

    def __init__(self) -> None:
        self.calls: dict[str, list[list[int]]] = {"presentation": [], "merchable": []}

    async def presentation(self, videos: list[VideoId]) -> list[PresentationVideo]:
        self.calls["presentation"].append(list(videos))
        return [
            PresentationVideo(id=v, title=f"video {v}", year=1900 + v % 100)
            for v in reversed(videos)
            if v in KNOWN
        ]

    async def merchable(self, videos: list[VideoId]) -> list[MerchableVideo]:
        self.calls["merchable"].append(list(videos))
        return [
            MerchableVideo(id=v, row="top picks", score=v / 10)
            for v in reversed(videos)
            if v in KNOWN
        ]


@dataclass
class Served:
    impl: CatalogService
    catalog: Catalog


# With no deadline in force, calls get this much time.
PATIENT = herd.CallPolicy(timeout=10.0)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    impl = CatalogService()
    async with herd.serve(impl) as server:
        catalog = herd.driver(Catalog, address=server.address, policy=PATIENT)
        try:
            yield Served(impl, catalog)
        finally:
            await catalog.aclose()


def test_a_facet_names_its_id_type_and_gets_an_id_field() -> None:
    assert PresentationVideo.__herd_of__ is VideoId
    assert MerchableVideo.__herd_of__ is VideoId
    assert "id" in PresentationVideo.__struct_fields__
    assert typing.get_type_hints(PresentationVideo)["id"] is VideoId
    shown = PresentationVideo(id=VideoId(7), title="x", year=2001)
    # A facet is a msgspec struct: the id travels as a plain int.
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(shown)) == {
        "id": 7,
        "title": "x",
        "year": 2001,
    }


def test_a_facet_without_an_id_type_is_a_configuration_error() -> None:
    with pytest.raises(herd.ConfigurationError, match="of=VideoId"):

        class Orphan(herd.Facet):
            title: str


def test_a_facet_may_extend_another_of_the_same_id() -> None:
    class DetailedVideo(PresentationVideo):
        synopsis: str

    assert DetailedVideo.__herd_of__ is VideoId
    assert DetailedVideo(id=VideoId(1), title="t", year=1, synopsis="s").id == 1


async def test_two_facets_of_one_id_are_each_filled_with_one_batched_call(
    served: Served,
) -> None:
    ids = [VideoId(v) for v in (5, 3, 5, 0, 998, 3, 1000, 1)]
    shown, merch = await asyncio.gather(
        herd.fill(ids, served.catalog.presentation),
        herd.fill(ids, served.catalog.merchable),
    )
    # One call per facet kind; each id asked for once, in the order first seen.
    unique = [5, 3, 0, 998, 1000, 1]
    assert served.impl.calls == {"presentation": [unique], "merchable": [unique]}

    # The answers line up with the ids asked for, duplicates included; unknown ids are None.
    assert [p.id if p else None for p in shown] == [5, 3, 5, None, 998, 3, None, 1]
    assert [m.id if m else None for m in merch] == [5, 3, 5, None, 998, 3, None, 1]
    assert all(type(p) is PresentationVideo for p in shown if p)
    assert all(type(m) is MerchableVideo for m in merch if m)
    assert shown[0] == PresentationVideo(id=VideoId(5), title="video 5", year=1905)
    assert merch[4] == MerchableVideo(id=VideoId(998), row="top picks", score=99.8)
    assert shown[0] == shown[2]


async def test_a_hundred_ids_take_one_call_and_more_are_batched(served: Served) -> None:
    hundred = [VideoId(v) for v in range(1, 101)]
    filled = await herd.fill(hundred, served.catalog.presentation)
    assert [p.id for p in filled if p] == hundred
    assert served.impl.calls["presentation"] == [hundred]

    many = [VideoId(v) for v in range(1, 251)]
    filled = await herd.fill(many, served.catalog.merchable, batch=100)
    assert [m.id for m in filled if m] == many
    assert [len(call) for call in served.impl.calls["merchable"]] == [100, 100, 50]
    assert [v for call in served.impl.calls["merchable"] for v in call] == many


async def test_no_ids_means_no_call(served: Served) -> None:
    assert await herd.fill([], served.catalog.presentation) == []
    assert served.impl.calls["presentation"] == []


async def test_a_batch_must_hold_at_least_one_id(served: Served) -> None:
    with pytest.raises(herd.ConfigurationError):
        await herd.fill([VideoId(1)], served.catalog.presentation, batch=0)
    assert served.impl.calls["presentation"] == []
