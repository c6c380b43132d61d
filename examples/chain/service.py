"""The chain's implementations, runnable as processes: ``python -m examples.chain.service NAME``."""

from __future__ import annotations

import argparse
import asyncio
import os

import herd
from examples.chain.interface import Deep, Echo, Edge, Middle, Refused

#: Set to ``hang`` or ``fail`` to make one deep instance's `echo` misbehave (fault injection).
FAULT_ENV = "CHAIN_DEEP_FAULT"


def _budget_ms() -> int:
    left = herd.remaining()
    return -1 if left is None else int(left * 1000)


class _Counting:
    """Counts handlers started, finished, cancelled and timed out: what a test observes of
    abandoned work."""

    def __init__(self) -> None:
        self.counts = {"started": 0, "finished": 0, "cancelled": 0, "timed_out": 0, "running": 0}

    async def _track(self, work: asyncio.Future[Echo] | asyncio.Task[Echo]) -> Echo:
        self.counts["started"] += 1
        self.counts["running"] += 1
        try:
            result = await work
        except asyncio.CancelledError:
            self.counts["cancelled"] += 1
            raise
        except herd.DeadlineExceeded:
            self.counts["timed_out"] += 1
            raise
        finally:
            self.counts["running"] -= 1
        self.counts["finished"] += 1
        return result

    async def stats(self) -> dict[str, int]:
        return dict(self.counts)


class DeepService(_Counting, Deep):
    """Echoes; refuses the word "forbidden"; hangs forever when asked (until cancelled).

    `slow` answers after a pause (work in flight to drain); `explode` fails the way a bug does.
    A fault set with `CHAIN_DEEP_FAULT` makes this one instance's `echo` misbehave: ``hang``
    (never answers, until cancelled) or ``fail`` (raises, an internal error).
    """

    def __init__(self, fault: str | None = None) -> None:
        super().__init__()
        self.fault = os.environ.get(FAULT_ENV, "") if fault is None else fault

    async def echo(self, text: str, hang: bool = False) -> Echo:
        return await self._track(asyncio.ensure_future(self._echo(text, hang)))

    async def slow(self, text: str, seconds: float) -> Echo:
        return await self._track(asyncio.ensure_future(self._slow(text, seconds)))

    async def explode(self, message: str) -> str:
        raise RuntimeError(message)

    async def _slow(self, text: str, seconds: float) -> Echo:
        budget = _budget_ms()
        await asyncio.sleep(seconds)
        return Echo(text=text, budgets_ms=[budget])

    async def _echo(self, text: str, hang: bool) -> Echo:
        budget = _budget_ms()
        if text == "forbidden":
            raise Refused("deep refuses this word", word=text, reason="listed")
        if self.fault == "fail":
            raise RuntimeError(f"deep fails on purpose ({FAULT_ENV}=fail)")
        if hang or self.fault == "hang":
            await asyncio.Event().wait()
        return Echo(text=text, budgets_ms=[budget])


class MiddleService(_Counting, Middle):
    """Relays to deep, adding the budget it saw."""

    def __init__(self, deep: Deep) -> None:
        super().__init__()
        self.deep = deep

    async def relay(self, text: str, hang: bool = False) -> Echo:
        return await self._track(asyncio.ensure_future(self._relay(text, hang)))

    async def _relay(self, text: str, hang: bool) -> Echo:
        budget = _budget_ms()
        echo = await self.deep.echo(text, hang)
        return Echo(text=echo.text, budgets_ms=[budget, *echo.budgets_ms])


class EdgeService(Edge):
    """Calls middle and adds the budget it saw."""

    def __init__(self, middle: Middle) -> None:
        self.middle = middle

    async def greet(self, text: str, hang: bool = False) -> Echo:
        budget = _budget_ms()
        echo = await self.middle.relay(text, hang)
        return Echo(text=f"hello, {echo.text}", budgets_ms=[budget, *echo.budgets_ms])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=["deep", "middle", "edge"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--downstream", help="host:port of the next service in the chain")
    args = parser.parse_args()
    impl: herd.Interface
    if args.service == "deep":
        impl = DeepService()
    elif args.service == "middle":
        impl = MiddleService(herd.driver(Deep, address=args.downstream))
    else:
        impl = EdgeService(herd.driver(Middle, address=args.downstream))
    herd.run(impl, port=args.port)


if __name__ == "__main__":
    main()
