"""The retry storm's report: its targets, its tables, its JSON and its plot.

The targets are the talk's figures and herd's answer to them, with the slack a real process
chain on a shared machine needs:

- one request, `naive`: the edge gives up after 5.5 to 7 s (the talk's ≈6 s), unanswered, and
  the middle sent 9 requests to deep;
- one request, `telescoped`: the edge gives up after 1.8 to 2.6 s (the talk's ≈2 s), and the
  middle sent 2;
- one request, `herd`: answered within 1.5 s (the retry went to the healthy instance);
- under load: `herd` serves >= 99 % with an amplification <= 1.3 (requests reaching deep per
  user request), while `naive` multiplies the work (amplification >= 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd_tools import figures
from herd_tools.output import Column, numbers, out, print_table

if TYPE_CHECKING:
    from herd_tools.experiments.retry_storm import Outcome, Settings

TALK = {
    "naive": "≈6 s, 9 sent",
    "telescoped": "≈2 s, 2 sent",
    "herd": "≈1 s, answered",
}
"""The figures each configuration should reproduce (the talk's; herd's from the issue)."""

NAIVE_S = (5.5, 7.0)
TELESCOPED_S = (1.8, 2.6)
HERD_S = 1.5
HERD_SUCCESS_PCT = 99.0
HERD_AMPLIFICATION = 1.3
NAIVE_AMPLIFICATION = 3.0


def missed(outcomes: Sequence[Outcome]) -> list[str]:
    """The targets (this module's docstring) that `outcomes` missed, in words; only those of
    the configurations and parts that ran are checked."""
    problems: list[str] = []
    by_name = {o.name: o for o in outcomes}

    def check(name: str, part: str, met: Callable[[Any], bool], target: str) -> None:
        outcome = by_name.get(name)
        figures = getattr(outcome, part) if outcome is not None else None
        if figures is not None and not met(figures):
            problems.append(f"{name} {part}: {target}")

    low, high = NAIVE_S
    check(
        "naive",
        "single",
        lambda s: low <= s.edge_latency_s <= high and s.middle_sent == 9 and not s.answered,
        f"edge gave up in {low:g}-{high:g} s, middle sent 9",
    )
    low, high = TELESCOPED_S
    check(
        "telescoped",
        "single",
        lambda s: low <= s.edge_latency_s <= high and s.middle_sent == 2,
        f"edge gave up in {low:g}-{high:g} s, middle sent 2",
    )
    check(
        "herd",
        "single",
        lambda s: s.answered and s.edge_latency_s < HERD_S,
        f"answered within {HERD_S:g} s",
    )
    check(
        "herd",
        "load",
        lambda ld: ld.success_pct >= HERD_SUCCESS_PCT and ld.amplification <= HERD_AMPLIFICATION,
        f">= {HERD_SUCCESS_PCT:g} % served, amplification <= {HERD_AMPLIFICATION:g}",
    )
    check(
        "naive",
        "load",
        lambda ld: ld.amplification >= NAIVE_AMPLIFICATION,
        f"amplification >= {NAIVE_AMPLIFICATION:g}",
    )
    return problems


def _flat(outcome: Outcome) -> dict[str, Any]:
    """One configuration's record in `--json`: the single request's and the load's figures in
    one flat map, the load's that share a name prefixed `load_`."""
    data: dict[str, Any] = {}
    if outcome.single is not None:
        data.update(dataclasses.asdict(outcome.single))
    if outcome.load is not None:
        load = dataclasses.asdict(outcome.load)
        for name in (
            "requests",
            "succeeded",
            "middle_sent",
            "deep_received",
            "deep_received_hanging",
            "failures",
        ):
            load[f"load_{name}"] = load.pop(name)
        data.update(load)
    return data


def to_json(outcomes: Sequence[Outcome], settings: Settings) -> dict[str, Any]:
    """`--json`: one record per configuration, and the settings under `settings`."""
    data: dict[str, Any] = {o.name: _flat(o) for o in outcomes}
    data["settings"] = {
        "rate": settings.rate,
        "duration": settings.duration,
        "talk": TALK,
    }
    return data


def report(outcomes: Sequence[Outcome], settings: Settings) -> None:
    """The figures on stdout: one request per configuration, then the load."""
    singles = [(o.name, o.single) for o in outcomes if o.single is not None]
    if singles:
        print_table(
            "One user request; its first attempt reaches the hanging deep instance"
            f" (talk: naive {TALK['naive']}; telescoped {TALK['telescoped']}; herd {TALK['herd']})",
            [
                Column("config"),
                Column("edge latency", right=True),
                Column("answered"),
                *numbers("middle sent", "deep recv hang+ok"),
                *numbers("busy at answer", "sent after", "deep held", drop=1),
            ],
            [
                [
                    name,
                    f"{s.edge_latency_s:.2f} s",
                    "yes" if s.answered else "no",
                    str(s.middle_sent),
                    f"{s.deep_received_hanging}+{s.deep_received_healthy}",
                    str(s.middle_running_at_answer),
                    str(s.middle_sent_after_answer),
                    str(s.deep_still_held),
                ]
                for name, s in singles
            ],
        )
    loads = [(o.name, o.load) for o in outcomes if o.load is not None]
    if loads:
        print_table(
            f"Under load: {settings.rate:g} user requests/s for {settings.duration:g} s,"
            " deep instance hanging",
            [
                Column("config"),
                *numbers("users", "success", "p50 edge", "p99 edge"),
                *numbers("middle sent", "deep received", drop=1),
                Column("amplification", right=True),
                Column("peak middle", right=True, drop=2),
            ],
            [
                [
                    name,
                    str(ld.requests),
                    f"{ld.success_pct:.1f} %",
                    f"{ld.p50_s:.2f} s",
                    f"{ld.p99_s:.2f} s",
                    str(ld.middle_sent),
                    str(ld.deep_received),
                    f"{ld.amplification:.2f}x",
                    str(ld.peak_middle_inflight),
                ]
                for name, ld in loads
            ],
        )
        for name, ld in loads:
            if ld.failures:
                kinds = "; ".join(f"{n} x {kind}" for kind, n in list(ld.failures.items())[:3])
                out().print(f"{name} failures: {kinds}", markup=False)


def _tick(outcome: Outcome) -> str:
    lines = [outcome.name]
    if outcome.single is not None:
        lines.append("answered" if outcome.single.answered else "not answered")
    if outcome.load is not None:
        lines.append(f"{outcome.load.success_pct:.1f} % ok under load")
    return "\n".join(lines)


def plot(outcomes: Sequence[Outcome], settings: Settings, path: Path) -> None:
    """A PNG: edge latency and work amplification per configuration, one request and under load."""
    names = [o.name for o in outcomes]
    xs = list(range(len(names)))
    width = 0.38
    colours = ("#4c72b0", "#dd8452")
    fig, (lat, amp) = figures.subplots(1, 2, figsize=(11, 4.4))
    load_label = f"under load ({settings.rate:g}/s, {settings.duration:g} s)"

    single_lat = [o.single.edge_latency_s if o.single else 0.0 for o in outcomes]
    load_p99 = [o.load.p99_s if o.load else 0.0 for o in outcomes]
    bars = lat.bar([x - width / 2 for x in xs], single_lat, width, color=colours[0])
    bars.set_label("one request")
    lat.bar_label(bars, fmt="%.2f s", fontsize=8)
    bars = lat.bar([x + width / 2 for x in xs], load_p99, width, color=colours[1])
    bars.set_label(f"p99 {load_label}")
    lat.bar_label(bars, fmt="%.2f s", fontsize=8)
    talk = {"naive": 6.0, "telescoped": 2.0}
    for x, name in zip(xs, names, strict=True):
        if name in talk:
            lat.hlines(talk[name], x - 0.45, x + 0.45, colors="black", linestyles="dashed")
    lat.plot([], [], "k--", label="the talk's figure")
    lat.axhline(3.0, color="grey", linewidth=0.8, linestyle=":", label="edge deadline (herd)")
    lat.set_xticks(xs, [_tick(o) for o in outcomes], fontsize=8)
    lat.set_ylabel("edge latency as the user saw it (s)")
    lat.set_title("Edge latency")
    lat.legend(fontsize=8, loc="upper right")

    single_amp = [float(o.single.deep_received) if o.single else 0.0 for o in outcomes]
    load_amp = [o.load.amplification if o.load else 0.0 for o in outcomes]
    bars = amp.bar([x - width / 2 for x in xs], single_amp, width, color=colours[0])
    bars.set_label("one request")
    amp.bar_label(bars, fmt="%.1f", fontsize=8)
    bars = amp.bar([x + width / 2 for x in xs], load_amp, width, color=colours[1])
    bars.set_label(load_label)
    amp.bar_label(bars, fmt="%.2f", fontsize=8)
    amp.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    amp.set_xticks(xs, [_tick(o) for o in outcomes], fontsize=8)
    amp.set_ylabel("requests reaching deep per user request")
    amp.set_title("Work amplification")
    amp.legend(fontsize=8, loc="upper right")

    fig.suptitle("Retry storm: edge → middle → deep, one deep instance hanging")
    path.parent.mkdir(parents=True, exist_ok=True)
    figures.save(fig, path)
