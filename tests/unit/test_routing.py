"""The routing context: bounded entries, nesting, isolation between tasks, and its wire form."""

from __future__ import annotations

import asyncio

import pytest

import herd
from herd._model import routing


def test_entries_nest_and_unwind() -> None:
    assert herd.routing_context() == {}
    with herd.routing(cohort="v002", cell="a"):
        with herd.routing(cell="", fit="movie.presentation:error") as inner:
            assert dict(inner) == {"cohort": "v002", "fit": "movie.presentation:error"}
            assert herd.routing_context() is inner
        assert dict(herd.routing_context()) == {"cohort": "v002", "cell": "a"}
    assert herd.routing_context() == {}


def test_header_round_trips_in_a_stable_order() -> None:
    with herd.routing(zeta="1", alpha="x:y/z") as context:
        assert context.header == "alpha=x:y/z,zeta=1"
        assert routing.parse(context.header) == context
    assert routing.parse("") is routing.EMPTY


@pytest.mark.parametrize(
    "header",
    [
        "novalue",
        "a=1,a=2",
        "Upper=1",
        "k=has space",
        "k=semi;colon",
        "k=" + "v" * 129,
        ",".join(f"k{i}=v" for i in range(routing.MAX_ENTRIES + 1)),
        "k=" + "v" * routing.MAX_LENGTH,
        "k=\u00e9",
    ],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(ValueError):
        routing.parse(header)


def test_bad_entries_are_a_configuration_error() -> None:
    with pytest.raises(herd.ConfigurationError), herd.routing(**{"Bad Key": "1"}):
        pass
    assert herd.routing_context() == {}


async def test_each_task_sees_its_own_context() -> None:
    seen: dict[str, str] = {}
    release = asyncio.Event()

    async def request(name: str) -> None:
        with herd.routing(cohort=name):
            await release.wait()
            seen[name] = herd.routing_context()["cohort"]

    tasks = [asyncio.create_task(request(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert seen == {"a": "a", "b": "b"}
