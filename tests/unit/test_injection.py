"""Failure injection: server-side faults (token-protected, sampled, expiring) and request-scoped
ones (FIT) that travel in the routing context and fail one request's path at a named hop."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

import herd
from herd._server.injection import FAULTS_PATH, Fault, Injections, parse_fit
from herd._wire.protocol import H_TOKEN


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Chances:
    """Hands out the given uniform numbers in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def test_a_fault_samples_its_percent_fails_its_rate_and_expires() -> None:
    clock = Clock()
    chances = Chances(0.1, 0.05, 0.5, 0.1, 0.5)
    injections = Injections("movie", clock=clock, chance=chances)
    injections.set(
        [Fault(method="presentation", latency_ms=300, error_rate=0.1, percent=20, duration_s=60)]
    )
    assert injections.effect("presentation", {}) == (0.3, True)  # sampled (10 < 20), fails
    assert injections.effect("presentation", {}) == (0.0, False)  # not sampled (50 >= 20)
    assert injections.effect("presentation", {}) == (0.3, False)  # sampled, 0.5 >= 0.1
    assert injections.effect("other", {}) == (0.0, False)  # another method: untouched
    assert chances.values == []
    clock.now += 60
    assert injections.effect("presentation", {}) == (0.0, False)
    assert injections.active() == [] and not injections.armed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("movie.presentation/error", (("movie.presentation", 0.0, True),)),
        ("movie/latency:300", (("movie", 300.0, False),)),
        (
            "merch/error+movie/latency:250:error",
            (("merch", 0.0, True), ("movie", 250.0, True)),
        ),
        ("movie/explode+merch/latency:x+/error+history", ()),
    ],
)
def test_fit_values_parse_and_nonsense_is_ignored(
    value: str, expected: tuple[tuple[str, float, bool], ...]
) -> None:
    assert parse_fit(value) == expected


def test_fit_applies_only_at_its_named_hop_and_method() -> None:
    movie = Injections("movie")
    route = {"fit": "movie.presentation/latency:200:error"}
    assert movie.effect("presentation", route) == (0.2, True)
    assert movie.effect("details", route) == (0.0, False)
    assert Injections("merch").effect("presentation", route) == (0.0, False)


class Inner(herd.Interface, name="inner"):
    @herd.method(idempotent=True)
    async def value(self) -> int: ...  # type: ignore[empty-body]


class Outer(herd.Interface, name="outer"):
    @herd.method(idempotent=True)
    async def relay(self) -> int: ...  # type: ignore[empty-body]


class InnerService(Inner):
    async def value(self) -> int:
        return 7


class OuterService(Outer):
    def __init__(self, inner: Inner) -> None:
        self.inner = inner

    async def relay(self) -> int:
        return await self.inner.value()


async def test_fit_fails_one_requests_path_at_the_named_hop_and_nobody_elses() -> None:
    async with (
        herd.serve(InnerService()) as inner_server,
        herd.driver(Inner, address=inner_server.address) as inner,
        herd.serve(OuterService(inner)) as outer_server,
        herd.driver(Outer, address=outer_server.address) as outer,
    ):
        with herd.routing(fit="inner.value/error"), pytest.raises(herd.RemoteError) as failed:
            await outer.relay()
        # The outer hop answered, with its dependency's failure; the inner one failed.
        assert "injected failure" in str(failed.value)
        assert await outer.relay() == 7
        assert b'outcome="internal"' in inner_server.metrics.exposition()
        with herd.routing(fit="inner/latency:150"):
            began = time.monotonic()
            assert await outer.relay() == 7
            assert time.monotonic() - began >= 0.15


async def test_server_faults_need_the_token_and_fail_like_the_instance() -> None:
    async with (
        herd.serve(InnerService(), admin_token="sesame") as server,
        herd.driver(Inner, address=server.address) as inner,
        aiohttp.ClientSession() as session,
    ):
        url = f"http://{server.address}{FAULTS_PATH}"
        fault = [{"method": "value", "error_rate": 1.0, "duration_s": 30}]
        async with session.post(url, json=fault) as refused:
            assert refused.status == 403
        assert await inner.value() == 7
        headers = {H_TOKEN: "sesame"}
        async with session.post(url, json=[{"error_rate": 2}], headers=headers) as bad:
            assert bad.status == 400
            assert "error_rate" in (await bad.json())["message"]
        async with session.post(url, json=fault, headers=headers) as set_:
            assert set_.status == 200
            assert [f["method"] for f in await set_.json()] == ["value"]
        with pytest.raises(herd.RemoteError, match="injected failure"):
            await inner.value()
        async with session.post(url, json=[], headers=headers) as halted:
            assert json.loads(await halted.read()) == []
        assert await inner.value() == 7
