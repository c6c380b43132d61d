"""`herd.Events`' subscription rules over a scripted engine: handled ids are not handled again,
a failure holds the rest of the batch back for a retry, acknowledgements follow handling."""

from __future__ import annotations

import asyncio

import msgspec

import herd
from herd._store.events import Delivery


class Scripted:
    """An engine handing out scripted batches, recording acks and retries."""

    def __init__(self, batches: list[list[tuple[str, int]]]) -> None:
        self.batches = batches
        self.acked: list[str] = []
        self.retried: list[tuple[str, float]] = []
        self.drained = asyncio.Event()

    async def publish(self, topic: str, id: str, data: bytes) -> tuple[int, bool]:
        raise AssertionError("not used")

    async def fetch(self, topic: str, group: str, count: int, wait_s: float) -> list[Delivery]:
        if not self.batches:
            self.drained.set()
            await asyncio.Event().wait()
        return [_Delivery(self, id, seq) for id, seq in self.batches.pop(0)]

    async def aclose(self) -> None:
        pass


class _Delivery:
    def __init__(self, engine: Scripted, id: str, seq: int) -> None:
        self.engine = engine
        self.id = id
        self.seq = seq
        self.data = msgspec.msgpack.encode(seq)
        self.published = 0.0

    async def ack(self) -> None:
        self.engine.acked.append(self.id)

    async def retry(self, delay_s: float) -> None:
        self.engine.retried.append((self.id, delay_s))


async def test_an_id_handled_already_is_acknowledged_without_handling() -> None:
    engine = Scripted([[("a", 1), ("b", 2)], [("a", 1), ("c", 3)]])
    seen: list[str] = []

    async def handle(event: herd.Event[int]) -> None:
        seen.append(event.id)

    async with herd.Events(engine) as events:
        subscription = events.subscribe("rated", int, handle, group="merch")
        await engine.drained.wait()
        assert seen == ["a", "b", "c"]
        assert engine.acked == ["a", "b", "a", "c"]
        assert (subscription.handled, subscription.skipped) == (3, 1)


async def test_a_failure_holds_the_rest_of_its_batch_for_a_retry() -> None:
    engine = Scripted([[("a", 1), ("b", 2), ("c", 3)], [("b", 2), ("c", 3)]])
    failures = {"b"}
    seen: list[str] = []

    async def handle(event: herd.Event[int]) -> None:
        if event.id in failures:
            failures.discard(event.id)
            raise RuntimeError("once")
        seen.append(event.id)

    async with herd.Events(engine) as events:
        events.subscribe("rated", int, handle, group="merch", retry_s=0.5)
        await engine.drained.wait()
    assert seen == ["a", "b", "c"]
    assert engine.retried == [("b", 0.5), ("c", 0.0)]
    assert engine.acked == ["a", "b", "c"]
