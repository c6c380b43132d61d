"""The dashboard's deploys panel: every service's latest deploy as it happens, with its route,
the canary's current step and what the judge made of its latest look."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from herd._cloud.interface import DeployView, JudgeView


def deploys_panel(views: Iterable[DeployView]) -> Mapping[str, Any]:
    """A row per deploy: service and version, state, route (groups and shares), step, the
    judge's latest score and per-metric classification, and the decision."""
    rows = [
        [
            f"{view.service} {view.version}",
            f"{view.strategy}: {view.state}",
            ", ".join(f"{group} {share} %" for group, share in view.shares.items()),
            "-" if view.step is None else f"{view.step} %",
            _score(view.judge),
            _metrics(view.judge),
            view.decision or (view.judge.decision if view.judge else "-"),
        ]
        for view in views
    ]
    return {
        "id": "deploys",
        "title": "deploys (herd deploy status)",
        "columns": ["deploy", "state", "route", "step", "score", "judge", "decision"],
        "rows": rows,
    }


def _score(judge: JudgeView | None) -> str:
    return "-" if judge is None else f"{judge.score:.0f}"


def _metrics(judge: JudgeView | None) -> str:
    if judge is None:
        return "-"
    return ", ".join(f"{m.name} {m.classification}" for m in judge.metrics)
