"""What tracing at the default sampling adds to one call, in figures that load barely moves.

    python benchmarks/trace_hooks.py

- **Function calls per call** (cProfile of one process, server and driver, 20,000 calls at 32 in
  flight): with tracing off and with tracing set up as `herd.run` does (no collector: the calls
  start no trace). Counts, unlike times, do not depend on what else the machine runs.
- **The hooks' time**: one call's and one handling's tracing hooks (`herd._trace.spans`), best
  of 40 `timeit` repeats, off and set up.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import subprocess
import sys
import timeit
from pathlib import Path

CALLS = 20_000
IN_FLIGHT = 32


async def _profiled(traced: bool) -> float:
    import herd
    from benchmarks.overhead import Item, _bench_interface
    from herd._client.driver import static_driver
    from herd._trace.setup import process_provider

    if traced:
        process_provider({"service.name": "bench"}, share=None)
    bench, service = _bench_interface()
    item = Item(name="x", n=1, tags=["a"])
    async with herd.serve(service(), host="127.0.0.1", port=0) as server:
        driver = static_driver(
            bench, f"127.0.0.1:{server.port}", policy=herd.CallPolicy(timeout=10.0)
        )

        async def worker(calls: int) -> None:
            for _ in range(calls):
                await driver.echo(item)

        await asyncio.gather(*(worker(10) for _ in range(IN_FLIGHT)))  # warm up
        profile = cProfile.Profile()
        profile.enable()
        await asyncio.gather(*(worker(CALLS // IN_FLIGHT) for _ in range(IN_FLIGHT)))
        profile.disable()
        await driver.aclose()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return sum(row[1] for row in stats.values()) / CALLS


def _hooks_us() -> float:
    from herd._model.instance import Instance
    from herd._trace import spans

    class Attempt:
        instance = Instance(
            id="i", service="svc", group="svc-v001", version="v001", zone="a", host="::1", port=1
        )
        number, hedge, failed = 1, False, None

    def one() -> None:
        metadata: dict[str, str] = {}
        with spans.call("svc", "m"), spans.attempt(Attempt()):
            spans.sending(metadata, 1.0)
        with spans.serve("svc", "m", metadata) as span:
            spans.answered(span, 200)

    return min(timeit.repeat(one, number=20_000, repeat=40)) / 20_000 * 1e6


def _part(traced: bool) -> None:
    from herd._trace.setup import process_provider

    calls = asyncio.run(_profiled(traced))
    if traced:
        process_provider({"service.name": "bench"}, share=None)
    print(f"{calls:.1f} {_hooks_us():.3f}")


def main() -> None:
    """Each side in its own process (tracing, once set up, stays), then the difference."""
    if len(sys.argv) == 2 and sys.argv[1] in ("off", "on"):
        _part(sys.argv[1] == "on")
        return
    root = Path(__file__).resolve().parent.parent
    found = {}
    for side in ("off", "on"):
        ran = subprocess.run(
            [sys.executable, __file__, side], cwd=root, capture_output=True, text=True, check=True
        )
        calls, hooks = ran.stdout.split()
        found[side] = (float(calls), float(hooks))
    (calls_off, hooks_off), (calls_on, hooks_on) = found["off"], found["on"]
    print(f"function calls per call: {calls_off:.1f} off, {calls_on:.1f} traced", end="")
    print(f" (+{calls_on - calls_off:.1f}, {100 * (calls_on / calls_off - 1):+.1f} %)")
    print(f"hooks of one call and one handling: {hooks_off:.3f} us off, {hooks_on:.3f} us traced")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
