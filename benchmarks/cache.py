"""What memcached (herd.Cache, EVCache-style) buys flix: page latency, hit ratio and the calls
that reach the services, with the `[[caches]]` entry and without it.

    .venv/bin/python benchmarks/cache.py                      # 2 x (10 s warm-up + 20 s at 100/s)
    .venv/bin/python benchmarks/cache.py --rate 50 --duration 10 --json /tmp/cache.json

Each run starts flix on the local cloud from a copy of examples/flix/app.toml on free ports,
loads its front door with `herd load`'s open-model generator over visitors 1..2000, then reads
every edge's /metrics: the cache's keys by outcome and the calls each dependency answered.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import tomli_w
import uvloop

from herd._cloud.controller import Controller
from herd._cloud.up import up
from herd_tools.load import LoadReport, run_load

ROOT = Path(__file__).resolve().parent.parent
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} ([0-9.e+-]+)$")


class Run(msgspec.Struct, frozen=True):
    """One configuration's figures."""

    caches: bool
    rate: float
    duration_s: float
    sent: int
    failed: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    memcached_hit_pct: float
    cache_keys: dict[str, int]
    service_calls: dict[str, int]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _app(directory: Path, caches: bool) -> Path:
    document = tomllib.loads((ROOT / "examples" / "flix" / "app.toml").read_text())
    document.update(
        root=str(ROOT),
        run_dir=str(directory / "run"),
        registry_port=_free_port(),
        control_port=_free_port(),
    )
    document["front_door"]["port"] = _free_port()
    if not caches:
        document.pop("caches", None)
    path = directory / "app.toml"
    path.write_text(tomli_w.dumps(document))
    return path


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        if (match := _SAMPLE.match(line)) is not None:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
            found.append((match[1], labels, float(match[3])))
    return found


async def _edge_metrics(controller: Controller) -> tuple[dict[str, int], dict[str, int]]:
    keys: dict[str, int] = {}
    calls: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        for view in await controller.ps():
            if view.service != "edge" or not view.address:
                continue
            async with http.get(f"http://{view.address}/metrics") as answer:
                text = await answer.text()
            for name, labels, value in _samples(text):
                if name == "herd_cache_operations_total":
                    outcome = f"{labels['cache']}:{labels['outcome']}"
                    keys[outcome] = keys.get(outcome, 0) + int(value)
                elif name == "herd_client_calls_total" and labels["outcome"] == "success":
                    dependency = labels["dependency"]
                    calls[dependency] = calls.get(dependency, 0) + int(value)
    return keys, calls


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: value - before.get(key, 0) for key, value in sorted(after.items())}


async def measure(caches: bool, rate: float, duration: float, warmup: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="herd-cache-bench-") as directory:
        app = _app(Path(directory), caches)
        outcome: list[Run] = []

        async def ready(controller: Controller) -> None:
            assert controller.front_door is not None
            url = f"{controller.front_door.url}api/home?visitor={{1..2000}}"
            await run_load(url, rate, warmup)
            keys_before, calls_before = await _edge_metrics(controller)
            report: LoadReport = await run_load(url, rate, duration)
            keys_after, calls_after = await _edge_metrics(controller)
            keys = _delta(keys_after, keys_before)
            hits = sum(v for k, v in keys.items() if k.endswith((":hits", ":fallbacks")))
            misses = sum(v for k, v in keys.items() if k.endswith(":misses"))
            outcome.append(
                Run(
                    caches=caches,
                    rate=rate,
                    duration_s=duration,
                    sent=report.sent,
                    failed=report.failed,
                    p50_ms=report.p50_ms,
                    p90_ms=report.p90_ms,
                    p99_ms=report.p99_ms,
                    memcached_hit_pct=round(100 * hits / (hits + misses), 1)
                    if hits + misses
                    else 0.0,
                    cache_keys={k: v for k, v in keys.items() if v},
                    service_calls=_delta(calls_after, calls_before),
                )
            )
            controller.stopped.set()

        await up(app, say=lambda line: print(line, file=sys.stderr), on_ready=ready)
        return outcome[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs: list[Any] = []
    for caches in (True, False):
        runs.append(uvloop.run(measure(caches, args.rate, args.duration, args.warmup)))
    for run in runs:
        print(msgspec.json.format(msgspec.json.encode(run)).decode())
    if args.json is not None:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(runs)) + b"\n")


if __name__ == "__main__":
    main()
