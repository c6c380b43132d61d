"""Cohort consistency from the servers' counters: which group a request must reach, which hops
count, and the per-hop figures the deploy experiment reports."""

from __future__ import annotations

from herd._model.route import Route, Split
from herd._server.metrics import ServerMetrics
from herd_tools.experiments.cohorts import Cohorts, consistency_pct, counted, expected, read

CANARY = Route(
    "edge", [Split("edge-v003", 5), Split("edge-baseline-v002", 5), Split("edge-v002", 90)]
)
UP = {"edge-v003", "edge-baseline-v002", "edge-v002"}


def test_a_bucket_goes_to_its_split_and_a_pin_to_its_version() -> None:
    assert [expected(CANARY, UP, bucket, "") for bucket in (0, 4, 5, 9, 10, 99)] == [
        "edge-v003",
        "edge-v003",
        "edge-baseline-v002",
        "edge-baseline-v002",
        "edge-v002",
        "edge-v002",
    ]
    # Pinned to v002: its own group, never the baseline of the same version.
    assert expected(CANARY, UP, 3, "v002") == "edge-v002"
    # Pinned to a version the service lacks: the bucket decides.
    assert expected(CANARY, UP, 3, "v009") == "edge-v003"
    # A split whose group is not UP expects nothing.
    assert expected(CANARY, UP - {"edge-v003"}, 3, "") is None


def test_only_hops_split_over_two_up_groups_count() -> None:
    assert counted(CANARY, UP)
    promoted = Route("history", [Split("history-v002", 100), Split("history-v001", 0)])
    assert not counted(promoted, {"history-v002", "history-v001"})
    assert not counted(None, UP)


def test_per_hop_figures_from_a_servers_counters() -> None:
    metrics = ServerMetrics("edge")
    for bucket in ("2", "7", "50", "50"):
        metrics.routed(bucket, None)
    metrics.routed("60", "v002")
    metrics.routed(None, None)  # no visitor: nothing to be consistent with
    metrics.record("GET /", "ok", 0.01)
    total, taken = read(metrics.exposition().decode())
    assert total == 1
    assert taken == {("2", ""): 1, ("7", ""): 1, ("50", ""): 2, ("60", "v002"): 1, ("", ""): 1}
    cohorts = Cohorts()
    cohorts.add(CANARY, UP, "edge-v002", taken)
    (hop,) = cohorts.hops()
    assert (hop.service, hop.phase) == ("edge", "edge-v003 5 %")
    # Buckets 2 and 7 belong to the canary and the baseline, not to edge-v002; 50 does.
    assert (hop.bucketed, hop.bucketed_matched, hop.bucketed_pct) == (4, 2, 50.0)
    assert (hop.pinned, hop.pinned_matched, hop.pinned_pct) == (1, 1, 100.0)
    assert consistency_pct([hop]) == 60.0
    # What came since an earlier reading.
    cohorts.add(CANARY, UP, "edge-v002", {("60", ""): 1})
    (later,) = cohorts.hops(since=[hop])
    assert (later.bucketed, later.bucketed_matched, later.pinned) == (1, 1, 0)
    assert consistency_pct([]) is None
