"""herd.Store's latency per engine: SQLite (one file, fsync'd) and NATS JetStream (3 members,
one per zone, 3 copies, quorum-acknowledged), on this machine.

    .venv/bin/python benchmarks/store.py                      # 400 operations of each kind
    .venv/bin/python benchmarks/store.py --count 100 --json /tmp/store.json

Each engine gets the same sequence, one operation at a time: `put` (a record), `get`, `append`
(a log entry with a fresh id), `last` (the newest 20 entries of a key holding 100), then
`--concurrency` appends at once, for throughput; then events: from `publish` to the handler of
a subscriber in the same process, each event after a random pause. The cluster is started
here from the system's nats-server (herd's launcher), on free loopback ports, and stopped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

import herd
from herd._process.config import StoreAddress
from herd._store.nats_server import healthy, local_members, member_command

ROOT = Path(__file__).resolve().parent.parent
ZONES = ("a", "b", "c")


class Play(msgspec.Struct, frozen=True):
    video: int
    seconds: float


class Timing(msgspec.Struct, frozen=True):
    operation: str
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class Engine(msgspec.Struct, frozen=True):
    engine: str
    timings: list[Timing]
    concurrent_appends_per_s: float
    concurrency: int


def _free_base(count: int) -> int:
    """The first of `count` consecutive loopback ports nobody listens on now."""
    for _ in range(100):
        base = random.randrange(20_000, 30_000)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise SystemExit(f"no {count} consecutive free ports")


@contextmanager
def nats_cluster(directory: Path) -> Iterator[StoreAddress]:
    """Three members, one per zone, healthy before this yields."""
    directory.mkdir(parents=True, exist_ok=True)
    members = local_members(_free_base(3 * len(ZONES)), ZONES)
    running = []
    try:
        for member in members:
            log = (directory / f"{member.name}.log").open("w")
            command = member_command(members, member.zone, directory)
            running.append(subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT))
        give_up = time.monotonic() + 30
        while not all(healthy(member.http_port) for member in members):
            if time.monotonic() > give_up:
                raise SystemExit(f"the cluster did not become healthy: see {directory}")
            time.sleep(0.1)
        yield StoreAddress(servers=tuple(member.endpoint for member in members))
    finally:
        for process in running:
            process.kill()
            process.wait()


async def _timed(name: str, count: int, operation: Callable[[int], Awaitable[object]]) -> Timing:
    spent = []
    for n in range(count):
        started = time.perf_counter()
        await operation(n)
        spent.append((time.perf_counter() - started) * 1000)
    return summary(name, spent)


def summary(name: str, spent: list[float]) -> Timing:
    """`spent` (ms per operation) as its median, 99th percentile and maximum."""
    spent = sorted(spent)
    return Timing(
        name,
        len(spent),
        round(spent[len(spent) // 2], 3),
        round(spent[min(len(spent) - 1, int(len(spent) * 0.99))], 3),
        round(spent[-1], 3),
    )


async def measure(name: str, where: StoreAddress, count: int, concurrency: int) -> Engine:
    async with herd.store("bench", where=where) as store:
        records = store.records("latest", Play)
        log = store.log("plays", Play)
        await records.put("warm", Play(0, 0.0))
        await log.append("warm", Play(0, 0.0), id="warm")
        for n in range(100):
            await log.append("full", Play(n, 1.0), id=f"f{n}")
        timings = [
            await _timed("put", count, lambda n: records.put(n % 50, Play(n, 1.0))),
            await _timed("get", count, lambda n: records.get(n % 50)),
            await _timed("append", count, lambda n: log.append(n % 50, Play(n, 1.0), id=f"a{n}")),
            await _timed("last 20 of 100", count, lambda n: log.last("full", 20)),
        ]
        started = time.perf_counter()
        total = count * 2

        async def writer(w: int) -> None:
            for n in range(w, total, concurrency):
                await log.append(f"c{w}", Play(n, 1.0), id=f"c{n}")

        await asyncio.gather(*(writer(w) for w in range(concurrency)))
        rate = total / (time.perf_counter() - started)
    timings.append(await _event_latency(where, count))
    return Engine(name, timings, round(rate), concurrency)


async def _event_latency(where: StoreAddress, count: int) -> Timing:
    """From `publish` called to the subscriber's handler running, one event at a time, each
    after a random pause of up to 100 ms (so that an idle subscriber is caught at any point of
    its wait, as a rating is)."""
    async with herd.events(where=where) as events:
        handled: asyncio.Queue[float] = asyncio.Queue()

        async def handle(event: herd.Event[int]) -> None:
            handled.put_nowait(time.perf_counter())

        events.subscribe("bench", int, handle, group="bench")
        await events.publish("bench", -1)  # the topic and the group are made
        await handled.get()
        spent = []
        for n in range(count):
            await asyncio.sleep(random.uniform(0, 0.1))
            started = time.perf_counter()
            await events.publish("bench", n)
            spent.append((await handled.get() - started) * 1000)
    return summary("publish to handler", spent)


def _table(engines: list[Engine]) -> str:
    lines = ["| engine | operation | p50 ms | p99 ms | max ms |", "|---|---|--:|--:|--:|"]
    for engine in engines:
        for t in engine.timings:
            lines.append(
                f"| {engine.engine} | {t.operation} | {t.p50_ms} | {t.p99_ms} | {t.max_ms} |"
            )
        lines.append(
            f"| {engine.engine} | appends/s, {engine.concurrency} at once |"
            f" {engine.concurrent_appends_per_s} | | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/store.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herd-store-bench-") as scratch:
        directory = Path(scratch)
        sqlite = StoreAddress(directory=directory / "sqlite")
        engines = [asyncio.run(measure("sqlite", sqlite, args.count, args.concurrency))]
        with nats_cluster(directory / "nats") as cluster:
            engines.append(
                asyncio.run(measure("jetstream R3", cluster, args.count, args.concurrency))
            )
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "count": args.count,
    }
    document = {"meta": meta, "engines": msgspec.to_builtins(engines)}
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(_table(engines))
    print(f"load average {meta['load_average']}; written to {args.json}")


if __name__ == "__main__":
    main()
