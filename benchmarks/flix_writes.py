"""What one flix write costs on the engine: quorum writes (messages stored in any stream) and
latency, as history's `play` makes them (`examples.flix.writes.Writes.record`, then the
`played` event), on a 3-member JetStream cluster with a copy per zone, on this machine.

    .venv/bin/python -m benchmarks.flix_writes                  # 200 writes, then 50 retries
    .venv/bin/python -m benchmarks.flix_writes --count 100 --json /tmp/flix_writes.json

Writes go one at a time over 20 visitors, each with a fresh key; then `--count` / 4 of them
are sent again (a retry after a lost answer: same key, a later `at_ms`), which must store
nothing. Messages are counted from the streams' last sequences before and after (`stream_info`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import msgspec
import nats

import herd
from benchmarks.store import Timing, nats_cluster, summary
from examples.flix.events import PLAYED, Played
from examples.flix.writes import Writes, Written, now_ms
from herd._process.config import StoreAddress

VISITORS = 20


class Cost(msgspec.Struct, frozen=True):
    """Per write: messages stored (quorum writes), and the latency of a write and a retry."""

    writes: int
    messages_per_write: float
    messages_per_retry: float
    write: Timing
    retry: Timing


async def _messages(servers: tuple[str, ...]) -> int:
    """Messages ever stored in every stream of the cluster (the last sequences: a bucket keeps
    only a key's newest message, but each one written was a quorum write)."""
    client = await nats.connect(servers=[f"nats://{s}" for s in servers])
    try:
        js = client.jetstream()
        return sum(info.state.last_seq for info in await js.streams_info())
    finally:
        await client.close()


async def measure(where: StoreAddress, count: int) -> Cost:
    async with herd.store("history", where=where) as own, herd.events(where=where) as events:
        plays = Writes(own, "plays")

        async def play(key: str, visitor: int, video: int) -> None:
            stored, _ = await plays.record(key, Written(visitor, video, now_ms()))
            await events.publish(PLAYED, Played(visitor, video, stored.at_ms), id=key)

        await play("warm-up-key-00000", 1, 1)  # makes the streams and buckets
        keys = [(f"bench-key-{n:08d}", 1 + n % VISITORS, n) for n in range(count)]
        before = await _messages(where.servers)
        spent = []
        for key, visitor, video in keys:
            started = time.perf_counter()
            await play(key, visitor, video)
            spent.append((time.perf_counter() - started) * 1000)
        written = await _messages(where.servers)
        again = []
        for key, visitor, video in keys[: count // 4]:
            started = time.perf_counter()
            await play(key, visitor, video)
            again.append((time.perf_counter() - started) * 1000)
        retried = await _messages(where.servers)
    return Cost(
        writes=count,
        messages_per_write=round((written - before) / count, 3),
        messages_per_retry=round((retried - written) / max(1, count // 4), 3),
        write=summary("write", spent),
        retry=summary("retry", again),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, metavar="N", help="Writes to time.")
    parser.add_argument("--json", type=Path, metavar="FILE", help="Also write the figures.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, nats_cluster(Path(directory)) as where:
        cost = asyncio.run(measure(where, args.count))
    print(json.dumps(msgspec.to_builtins(cost), indent=2))
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(cost)) + b"\n")


if __name__ == "__main__":
    main()
