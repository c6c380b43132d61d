"""The retry-storm chain built with herd, runnable as processes.

    python -m herd_tools.experiments.chain_services deep [--hang]
    python -m herd_tools.experiments.chain_services middle --mode herd|telescoped \
        --hanging A --healthy B
    python -m herd_tools.experiments.chain_services edge --mode herd|telescoped \
        --middle A --middle B

Every process is in zone "a" except the healthy deep instance, which is in zone "b". Same-zone-first
balancing therefore sends the middle's first attempt to the hanging deep instance; what differs
between the two configurations is where the retry goes:

- `herd`: the middle's driver knows both deep instances with their zones; the retry goes to the
  other instance (in the other zone).
- `telescoped`: the middle's driver knows only the hanging instance, listed under two ids (two
  connection pools to one address, like a DNS name or a VIP that resolves to the same host); the
  retry goes to the same instance on a new connection. herd's balancer never repeats an id within a
  call, so listing the address once would allow one attempt only, whatever `attempts` says.
  Like the talk's telescoped settings, it sends no hedged attempts at any hop.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import herd
from herd._client.resolver import StaticResolver, up_at
from herd_tools.experiments.chain_interface import Stats, StormDeep, StormEdge, StormMiddle

EDGE_DEADLINE_S = 3.0
"""The deadline the edge sets for each user request; it telescopes into middle and deep."""
MIDDLE_ATTEMPT_TIMEOUT_S = 1.0
"""The middle's cap on one attempt to deep."""
MIDDLE_ATTEMPTS = 2
"""Attempts by the middle, the first included: one retry."""
ZONE = "a"
"""The zone of everything but the healthy deep instance."""
OTHER_ZONE = "b"


def instance(service: str, address: str, zone: str, id_: str | None = None) -> herd.Instance:
    """An UP instance of `service` at `address` in `zone`, in the group `{service}-v001`."""
    return up_at(address, service, zone=zone, group=f"{service}-v001", version="v001", id_=id_)


class _Counting:
    """Counters every service keeps, read by the orchestrator through `stats`."""

    def __init__(self) -> None:
        self.received = 0
        self.running = 0
        self.peak = 0
        self.succeeded = 0
        self.failed = 0

    def _enter(self) -> None:
        self.received += 1
        self.running += 1
        self.peak = max(self.peak, self.running)

    def _leave(self, ok: bool) -> None:
        self.running -= 1
        if ok:
            self.succeeded += 1
        else:
            self.failed += 1

    def _sent(self) -> int:
        return 0

    async def stats(self, reset_peak: bool = False) -> Stats:
        stats = Stats(
            received=self.received,
            sent=self._sent(),
            running=self.running,
            peak=self.peak,
            succeeded=self.succeeded,
            failed=self.failed,
        )
        if reset_peak:
            self.peak = self.running
        return stats


class DeepService(_Counting, StormDeep):
    """Answers at once; with `hang`, accepts every request and never answers.

    A hanging handler waits until herd cancels it (the caller's deadline passed, or the caller
    closed the connection): the process is sick, not dead, like one stuck in garbage collection.
    """

    def __init__(self, hang: bool) -> None:
        super().__init__()
        self.hang = hang

    async def work(self, item: int) -> int:
        self._enter()
        ok = False
        try:
            if self.hang:
                await asyncio.Event().wait()
            ok = True
            return item + 1
        finally:
            self._leave(ok)


class MiddleService(_Counting, StormMiddle):
    """Relays to deep through a herd driver; counts the attempts that driver sends."""

    def __init__(self, deep: StormDeep, policy: herd.CallPolicy) -> None:
        super().__init__()
        self.deep = deep
        self.policy = policy
        self.calls = 0

    def _sent(self) -> int:
        # Attempts sent = calls that passed the breaker and the bulkhead, plus retries and
        # hedges.
        metrics = herd.client_metrics.of(StormDeep.__herd_name__).snapshot()

        def count(name: str) -> int:
            value = metrics.get(name, 0)
            return value if isinstance(value, int) else 0

        sent = self.calls - count("short_circuited") - count("rejected")
        return sent + count("retries") + count("hedges")

    async def relay(self, item: int) -> int:
        self._enter()
        ok = False
        try:
            left = herd.remaining()
            if left is not None and left < self.policy.min_useful:
                raise herd.DeadlineExceeded("no time left to call deep")
            self.calls += 1
            result = await self.deep.work(item)
            ok = True
            return result
        finally:
            self._leave(ok)


class EdgeService(_Counting, StormEdge):
    """Calls middle under a 3 s deadline."""

    def __init__(self, middle: StormMiddle) -> None:
        super().__init__()
        self.middle = middle

    async def handle(self, item: int) -> int:
        self._enter()
        ok = False
        try:
            with herd.deadline(EDGE_DEADLINE_S):
                result = await self.middle.relay(item)
            ok = True
            return result
        finally:
            self._leave(ok)


def _hedge(mode: str) -> herd.HedgePolicy | None:
    """herd hedges; the telescoped configuration is the talk's, with no hedged attempts at any
    hop (behind its virtual IP a hedge would be its retry sent early to the same instance)."""
    return herd.HedgePolicy() if mode == "herd" else None


def middle_policy(mode: str) -> herd.CallPolicy:
    """The middle's policy for deep: 1 s per attempt, one retry (the talk's telescoped middle)."""
    return herd.CallPolicy(
        attempt_timeout=MIDDLE_ATTEMPT_TIMEOUT_S, attempts=MIDDLE_ATTEMPTS, hedge=_hedge(mode)
    )


def deep_driver(mode: str, hanging: str, healthy: str) -> StormDeep:
    """The middle's driver for deep in the given configuration (see the module's docstring)."""
    service = StormDeep.__herd_name__
    if mode == "herd":
        known = [instance(service, hanging, ZONE), instance(service, healthy, OTHER_ZONE)]
    elif mode == "telescoped":
        known = [
            instance(service, hanging, ZONE, f"{hanging}#1"),
            instance(service, hanging, ZONE, f"{hanging}#2"),
        ]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    resolver = StaticResolver(service, known)
    return herd.driver(StormDeep, resolver=resolver, zone=ZONE, policy=middle_policy(mode))


def middle_driver(mode: str, middles: Sequence[str]) -> StormMiddle:
    """The edge's driver for middle: both instances in the edge's zone, herd's default policy."""
    service = StormMiddle.__herd_name__
    resolver = StaticResolver(service, [instance(service, address, ZONE) for address in middles])
    policy = herd.CallPolicy(timeout=EDGE_DEADLINE_S, hedge=_hedge(mode))
    return herd.driver(StormMiddle, resolver=resolver, zone=ZONE, policy=policy)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one service of the chain until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m herd_tools.experiments.chain_services")
    parser.add_argument("role", choices=["deep", "middle", "edge"])
    parser.add_argument("--hang", action="store_true", help="deep: accept and never answer")
    parser.add_argument("--mode", choices=["herd", "telescoped"], default="herd")
    parser.add_argument("--hanging", help="middle: address of the hanging deep instance")
    parser.add_argument("--healthy", help="middle: address of the healthy deep instance")
    parser.add_argument("--middle", action="append", default=[], help="edge: a middle address")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    impl: herd.Interface
    if args.role == "deep":
        impl = DeepService(hang=args.hang)
    elif args.role == "middle":
        if not args.hanging or not args.healthy:
            parser.error("middle needs --hanging and --healthy")
        impl = MiddleService(
            deep_driver(args.mode, args.hanging, args.healthy), middle_policy(args.mode)
        )
    else:
        if not args.middle:
            parser.error("edge needs --middle (one or more)")
        impl = EdgeService(middle_driver(args.mode, args.middle))
    herd.run(impl, port=args.port, host="127.0.0.1")


if __name__ == "__main__":
    main()
