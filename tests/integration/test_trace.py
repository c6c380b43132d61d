"""Traces across real servers and drivers over loopback: a three-hop call with a retry and a
hedge has the right parent/child structure and attributes (checked through the SDK's in-memory
exporter), and a malformed trace context from a caller only starts a new trace."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import herd
from herd._trace import setup as trace_setup
from herd._trace.recent import PROCESS_SPANS, TRACES_PATH
from herd._trace.sampling import HerdSampler
from tests.helpers import eventually, free_port, recorded_spans

pytestmark = pytest.mark.timeout(60)


class Back(herd.Interface, name="back"):
    @herd.method(idempotent=True)
    async def title(self, video: int) -> str: ...


class Middle(herd.Interface, name="middle"):
    @herd.method(idempotent=True)
    async def row(self, video: int) -> str: ...


class Edge(herd.Interface, name="edge"):
    async def page(self, video: int) -> str: ...


class BackService(Back):
    """The first call stalls (until its hedge wins and cancels it); the others answer."""

    stalled = False

    async def title(self, video: int) -> str:
        if not BackService.stalled:
            BackService.stalled = True
            await asyncio.sleep(30)
        return f"title {video}"


class MiddleService(Middle):
    def __init__(self, back: Back) -> None:
        self.back = back

    async def row(self, video: int) -> str:
        return f"row of {await self.back.title(video)}"


class EdgeService(Edge):
    def __init__(self, middle: Middle) -> None:
        self.middle = middle

    async def page(self, video: int) -> str:
        return f"page with {await self.middle.row(video)}"

    @herd.route("GET", "/")
    async def home(self, request: herd.WebRequest) -> herd.WebResponse:
        return herd.WebResponse(body=b"home")


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exporter:
        yield exporter


def _instance(service: str, name: str, port: int, zone: str) -> herd.Instance:
    return herd.Instance(
        id=name,
        service=service,
        group=f"{service}-v002",
        version="v002",
        zone=zone,
        host="127.0.0.1",
        port=port,
        status=herd.Status.UP,
    )


async def test_three_hops_with_a_retry_and_a_hedge_make_one_trace(
    exported: InMemorySpanExporter,
) -> None:
    hedged = herd.CallPolicy(hedge=herd.HedgePolicy(delay=0.05))
    async with herd.serve(BackService()) as back_a, herd.serve(BackService()) as back_b:
        backs = [
            _instance("back", "back-a", back_a.port, "a"),
            _instance("back", "back-b", back_b.port, "b"),
        ]
        async with (
            herd.driver(Back, address=backs, policy=hedged) as back,
            herd.serve(MiddleService(back)) as middle_server,
        ):
            middles = [
                _instance("middle", "middle-dead", free_port(), "a"),
                _instance("middle", "middle-live", middle_server.port, "b"),
            ]
            async with herd.driver(Middle, address=middles) as middle:
                # The live instance looks busy: the first attempt goes to the dead one.
                for _ in range(3):
                    middle._herd_caller.balancer.started("middle-live")  # type: ignore[attr-defined]
                async with (
                    herd.serve(EdgeService(middle)) as edge_server,
                    herd.driver(Edge, address=edge_server.address) as edge,
                ):
                    with herd.deadline(5.0):
                        assert await edge.page(7) == "page with row of title 7"
                    # The hedge's loser ends at its server once cancelled there.
                    await eventually(
                        lambda: [
                            s for s in exported.get_finished_spans() if s.name == "back title"
                        ],
                        lambda spans: len(spans) == 2,
                        what="both back handlings ended",
                    )
    spans = exported.get_finished_spans()
    assert len({s.context.trace_id for s in spans if s.context}) == 1
    by_id = {s.context.span_id: s for s in spans if s.context}

    def parent(span: ReadableSpan) -> ReadableSpan | None:
        return by_id.get(span.parent.span_id) if span.parent else None

    def named(name: str) -> list[ReadableSpan]:
        return [s for s in spans if s.name == name]

    (root,) = named("edge.page")
    assert root.parent is None
    (edge_attempt,) = named("edge attempt 1")
    assert parent(edge_attempt) is root
    (edge_served,) = named("edge page")
    assert parent(edge_served) is edge_attempt
    (middle_call,) = named("middle.row")
    assert parent(middle_call) is edge_served
    # The retry: the dead instance first, then another instance.
    (dead,) = named("middle attempt 1")
    (retried,) = named("middle attempt 2")
    assert parent(dead) is middle_call and parent(retried) is middle_call
    assert dead.attributes is not None and retried.attributes is not None
    assert dead.attributes["herd.instance"] == "middle-dead"
    assert dead.attributes["herd.outcome"] == "ConnectFailed"
    assert retried.attributes["herd.instance"] == "middle-live"
    assert retried.attributes["herd.zone"] == "b"
    assert retried.attributes["herd.group"] == "middle-v002"
    assert retried.attributes["herd.version"] == "v002"
    assert 0 < float(retried.attributes["herd.deadline_remaining_ms"]) <= 5000  # type: ignore[arg-type]
    (middle_served,) = named("middle row")
    assert parent(middle_served) is retried
    # The hedge: the first attempt stalls and is cancelled, the hedge wins.
    (back_call,) = named("back.title")
    assert parent(back_call) is middle_served
    (loser,) = named("back attempt 1")
    (winner,) = named("back attempt 2 (hedge)")
    assert parent(loser) is back_call and parent(winner) is back_call
    assert loser.attributes is not None and winner.attributes is not None
    assert loser.attributes["herd.outcome"] == "cancelled"
    assert winner.attributes["herd.hedge"] is True
    assert "herd.outcome" not in winner.attributes
    served = {parent(s) for s in named("back title")}
    assert served == {loser, winner}


async def test_a_malformed_traceparent_starts_a_new_trace(exported: InMemorySpanExporter) -> None:
    bad = "00-zzzz0000000000000000000000000000-00f067aa0ba902b7-01"
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with (
        herd.serve(EdgeService(MiddleService(BackService()))) as server,
        aiohttp.ClientSession() as session,
    ):
        for value in (bad, "garbage", good):
            async with session.get(
                f"http://{server.address}/", headers={"traceparent": value}
            ) as r:
                assert r.status == 200
    spans = exported.get_finished_spans()
    assert len(spans) == 3
    traces = [span.context.trace_id for span in spans if span.context]
    assert traces[2] == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert [span.parent is None for span in spans] == [True, True, False]
    assert len(set(traces)) == 3


async def test_an_instances_spans_are_the_control_planes_to_read() -> None:
    # As `herd.run` sets up a process: its spans kept for the control plane.
    provider = TracerProvider(sampler=HerdSampler())
    provider.add_span_processor(PROCESS_SPANS)
    trace_setup.install(provider, share=0.0)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    sampled = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    impl = EdgeService(MiddleService(BackService()))
    try:
        async with (
            herd.serve(impl, admin_token="secret") as server,
            aiohttp.ClientSession() as session,
        ):
            async with session.get(f"http://{server.address}/", headers=sampled) as answer:
                assert answer.status == 200
            url = f"http://{server.address}{TRACES_PATH}{trace_id}"
            async with session.get(url) as refused:
                assert refused.status == 403
            async with session.get(url, headers={"x-herd-token": "secret"}) as answer:
                spans = (await answer.json())["spans"]
    finally:
        trace_setup.uninstall()
    assert [(s["name"], s["parent"]) for s in spans] == [("edge GET /", "00f067aa0ba902b7")]
