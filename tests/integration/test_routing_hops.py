"""The routing context travels with the call through every hop, with no application code, and
a malformed one is the caller's fault."""

from __future__ import annotations

import aiohttp

import herd
from herd._wire.protocol import H_ROUTE, rpc_path


class Inner(herd.Interface, name="inner"):
    """The second hop: tells what routing context it was called with."""

    @herd.method(idempotent=True)
    async def seen(self) -> dict[str, str]: ...  # type: ignore[empty-body]


class Outer(herd.Interface, name="outer"):
    """The first hop: relays to inner without touching the routing context."""

    @herd.method(idempotent=True)
    async def relay(self) -> list[dict[str, str]]: ...  # type: ignore[empty-body]


class InnerService(Inner):
    async def seen(self) -> dict[str, str]:
        return dict(herd.routing_context())


class OuterService(Outer):
    def __init__(self, inner: Inner) -> None:
        self.inner = inner

    async def relay(self) -> list[dict[str, str]]:
        return [dict(herd.routing_context()), await self.inner.seen()]


async def test_routing_context_reaches_the_second_hop() -> None:
    async with (
        herd.serve(InnerService()) as inner_server,
        herd.driver(Inner, address=inner_server.address) as inner,
        herd.serve(OuterService(inner)) as outer_server,
        herd.driver(Outer, address=outer_server.address) as outer,
    ):
        with herd.routing(cohort="v002", cell="tester"):
            pinned = await outer.relay()
        plain = await outer.relay()
    expected = {"cohort": "v002", "cell": "tester"}
    assert pinned == [expected, expected]
    # Nothing leaks from one request into the next on the same connections.
    assert plain == [{}, {}]


class PrefetchingService(OuterService):
    """Relays its own calls as a prefetch: lower than its caller's criticality."""

    async def relay(self) -> list[dict[str, str]]:
        with herd.criticality("best_effort"):
            return await super().relay()


async def test_criticality_is_lowered_by_a_handler_for_the_hops_below_it() -> None:
    async with (
        herd.serve(InnerService()) as inner_server,
        herd.driver(Inner, address=inner_server.address) as inner,
        herd.serve(OuterService(inner)) as plain_server,
        herd.serve(PrefetchingService(inner)) as lowering_server,
        herd.driver(Outer, address=plain_server.address) as plain,
        herd.driver(Outer, address=lowering_server.address) as lowering,
    ):
        with herd.criticality("critical"):
            relayed = await plain.relay()
            lowered = await lowering.relay()
    assert [hop["criticality"] for hop in relayed] == ["90", "90"]
    assert [hop["criticality"] for hop in lowered] == ["10", "10"]


async def test_a_malformed_routing_header_is_a_bad_request() -> None:
    async with herd.serve(InnerService()) as server, aiohttp.ClientSession() as session:
        url = f"http://{server.address}{rpc_path('inner', 'seen')}"
        headers = {H_ROUTE: "cohort=v 2", "Content-Type": "application/x-msgpack"}
        async with session.post(url, data=b"\x90", headers=headers) as answer:
            assert answer.status == 400
            assert b"bad routing value" in await answer.read()
        assert b'outcome="bad_request"' in server.metrics.exposition()
