"""The dashboard's deploys panel shows a canary as it happens: its route, step, the judge's
latest score and per-metric classification, and the decision."""

from __future__ import annotations

import msgspec

from herd._cloud.dashboard.deploys import deploys_panel
from herd._cloud.deploy import plan
from herd._cloud.deploy.analysis import Counts
from herd._cloud.deploy.canary import Judge
from herd._cloud.interface import DeployView, JudgeView, MetricJudged


def _view(**changes: object) -> DeployView:
    view = DeployView(
        service="edge",
        version="v003",
        strategy="canary",
        old_group="edge-v002",
        new_group="edge-v003",
        state="analysing",
        decision="",
        shares={"edge-v003": 5, "edge-baseline-v002": 5, "edge-v002": 90},
        started_at=0.0,
        step=5,
        judge=JudgeView(
            60.0,
            "marginal",
            [
                MetricJudged("errors", "pass", 1.0, 0.5),
                MetricJudged("latency", "high", 2.5, 300.0),
                MetricJudged("latency_tail", "nodata", None, 1.0),
            ],
        ),
    )
    return msgspec.structs.replace(view, **changes)


def test_a_canary_mid_step_shows_route_step_judge_and_pending_decision() -> None:
    panel = deploys_panel([_view()])
    assert panel["columns"] == ["deploy", "state", "route", "step", "score", "judge", "decision"]
    assert panel["rows"] == [
        [
            "edge v003",
            "canary: analysing",
            "edge-v003 5 %, edge-baseline-v002 5 %, edge-v002 90 %",
            "5 %",
            "60",
            "errors pass, latency high, latency_tail nodata",
            "marginal",
        ]
    ]


def test_a_decided_deploy_shows_its_decision_and_no_step() -> None:
    (row,) = deploys_panel(
        [_view(state="rolled_back", decision="rolled_back", step=None, judge=None)]
    )["rows"]
    assert row[3:] == ["-", "-", "-", "rolled_back"]


def test_the_judges_latest_look_travels_as_json() -> None:
    # The canary failed 3 requests, the old version none: its ratio is infinite, which JSON
    # cannot carry, so the view says None.
    judge = Judge(min_points=1)
    judge.add(Counts(20, 3), Counts(20), Counts(180))
    judged = plan.judged(judge.verdict(final=False))
    assert judged is not None
    assert judged.metrics[0] == MetricJudged("errors", "high", None, judged.metrics[0].e_value)
    view = _view(judge=judged)
    assert msgspec.json.decode(msgspec.json.encode(view), type=DeployView) == view
