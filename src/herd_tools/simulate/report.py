"""`herd simulate`: run, print a table, write JSON, draw plots; and the sweep behind
docs/simulation.md (how the figures grow with instance count and tier depth)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from herd_tools import figures
from herd_tools.simulate import regions
from herd_tools.simulate.model import Mode
from herd_tools.simulate.scenarios import Settings, simulate

#: The sweep's instance counts and tier depths (retry storm, all three configurations).
SWEEP_INSTANCES = (5, 30, 300, 3000)
SWEEP_DEPTHS = (3, 4, 5)
SWEEP_SECONDS = 10.0


def table(record: dict[str, Any]) -> str:
    """The run's figures as a plain-text table."""
    storm = record["scenario"] == "retry-storm"
    shape = f"depth {record['depth']}" if storm else "flix's shape"
    lines = [
        f"{record['scenario']}: {record['instances']:,} instances, {shape},"
        f" {record['rate']:g} users/s for {record['seconds']:g} s (virtual);"
        f" {record['events']:,} events in {record['wall_s']:.1f} s",
        f"{'config':<12}{'users':>8}{'success':>9}{'p50 edge':>10}{'p99 edge':>10}"
        f"{'amplif.':>9}" + (f"{'one req':>9}" if storm else ""),
    ]
    for name, c in record["configs"].items():
        one = c["one_request"]["edge_latency_s"]
        lines.append(
            f"{name:<12}{c['users']:>8,}{c['success_pct']:>8.1f}%{c['p50_ms'] / 1000:>9.2f}s"
            f"{c['p99_ms'] / 1000:>9.2f}s{c['amplification']:>8.2f}x"
            + (f"{one:>8.2f}s" if storm else "")
        )
    return "\n".join(lines)


def sweep(
    instances: Sequence[int] = SWEEP_INSTANCES,
    depths: Sequence[int] = SWEEP_DEPTHS,
    seconds: float = SWEEP_SECONDS,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The retry storm at every instance count (depth 3) and every depth (the smallest count
    that gives each tier two instances per zone at the deepest depth)."""
    records = []
    for count in instances:
        records.append(simulate(Settings(instances=count, seconds=seconds)))
        progress(table(records[-1]))
    base = max(30, 6 * max(depths))
    for depth in depths:
        if depth == 3 and base in instances:
            continue
        records.append(simulate(Settings(instances=base, seconds=seconds, depth=depth)))
        progress(table(records[-1]))
    return records


def plot_run(record: dict[str, Any], path: Path) -> None:
    """A PNG of one run: success, p99 edge latency and amplification per configuration."""
    names = list(record["configs"])
    fig, axes = figures.subplots(1, 3, figsize=(11, 3.6))
    for ax, key, label in zip(
        axes,
        ("success_pct", "p99_ms", "amplification"),
        ("success (%)", "p99 edge latency (ms)", "amplification (x)"),
        strict=True,
    ):
        values = [record["configs"][n][key] for n in names]
        bars = ax.bar(names, values, color=["#c44e52", "#dd8452", "#4c72b0"][-len(names) :])
        ax.bar_label(bars, fmt="%g", fontsize=8)
        ax.set_title(label, fontsize=10)
    fig.suptitle(
        f"herd simulate: {record['scenario']}, {record['instances']:,} instances,"
        f" {record['seconds']:g} s virtual",
        fontsize=11,
    )
    figures.save(fig, path)


def plot_sweep(records: Sequence[dict[str, Any]], path: Path) -> None:
    """A PNG of the sweep: amplification, p99 edge latency and success against instance count
    (depth 3) and against tier depth, per configuration."""
    by_count = sorted((r for r in records if r["depth"] == 3), key=lambda r: int(r["instances"]))
    by_depth = sorted(
        (r for r in records if r["instances"] == max(30, 6 * max(SWEEP_DEPTHS))),
        key=lambda r: int(r["depth"]),
    )
    fig, axes = figures.subplots(2, 3, figsize=(12, 7))
    keys = (
        ("amplification", "amplification (x)"),
        ("p99_ms", "p99 edge latency (ms)"),
        ("success_pct", "success (%)"),
    )
    colours = {"naive": "#c44e52", "telescoped": "#dd8452", "herd": "#4c72b0"}
    for row, (series, xkey, xlabel) in enumerate(
        ((by_count, "instances", "instances (depth 3)"), (by_depth, "depth", "tier depth"))
    ):
        for col, (key, label) in enumerate(keys):
            ax = axes[row][col]
            for mode in Mode:
                xs = [r[xkey] for r in series]
                ys = [r["configs"][mode.value][key] for r in series]
                ax.plot(xs, ys, marker="o", label=mode.value, color=colours[mode.value])
            if xkey == "instances":
                ax.set_xscale("log")
            else:
                ax.set_xticks([r["depth"] for r in series])
            if key == "amplification" and xkey == "depth":
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(label, fontsize=10)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Retry storm on virtual time: zone a's deep instances hang", fontsize=11)
    figures.save(fig, path)


def main(
    settings: Settings,
    *,
    json_path: Path | None,
    plot_path: Path | None,
    sweep_json: Path | None = None,
    progress: Callable[[str], None] = print,
) -> int:
    """Run `herd simulate` (or, with `sweep_json`, the sweep); returns the exit status."""
    if sweep_json is not None:
        records = sweep(progress=progress)
        sweep_json.write_text(json.dumps(records, indent=2) + "\n")
        if plot_path is not None:
            plot_sweep(records, plot_path)
        return 0
    if settings.scenario == "kong":
        record = regions.simulate_kong(settings)
        progress(regions.table(record))
        if json_path is not None:
            json_path.write_text(json.dumps(record, indent=2) + "\n")
        if plot_path is not None:
            regions.plot(record, plot_path)
        return 0
    record = simulate(settings)
    progress(table(record))
    if json_path is not None:
        json_path.write_text(json.dumps(record, indent=2) + "\n")
    if plot_path is not None:
        plot_run(record, plot_path)
    return 0
