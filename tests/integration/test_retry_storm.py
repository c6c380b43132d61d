"""The retry-storm experiment (issue 5): real processes, one deep instance hanging.

One run of the experiment (about 50 s: 15 processes, a single request and 6 s of load per
configuration) serves every test here. The figures asserted are the talk's, and herd's from the
issue: naive ≈ 6 s with 9 requests sent by the middle, telescoped ≈ 2 s with 2, herd answered in
about 1 s; under load herd succeeds with little amplification while naive multiplies the work.
"""

from __future__ import annotations

import asyncio

import pytest

from herd_tools.experiments.retry_storm import Outcome, Settings, experiment

pytestmark = pytest.mark.timeout(150)

SETTINGS = Settings(rate=20.0, duration=6.0)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    results = asyncio.run(experiment(SETTINGS, progress=print))
    return {o.name: o for o in results}


def test_naive_single_request_takes_6_s_and_the_middle_sends_9(
    outcomes: dict[str, Outcome],
) -> None:
    single = outcomes["naive"].single
    assert single is not None
    assert 5.5 <= single.edge_latency_s <= 7.0, single
    assert single.middle_sent == 9, single
    assert single.deep_received_hanging == 9, single
    assert not single.answered
    # No cancellation: the middle was still working for an edge that had given up.
    assert single.middle_running_at_answer >= 1, single


def test_telescoped_single_request_fails_fast_in_2_s(outcomes: dict[str, Outcome]) -> None:
    single = outcomes["telescoped"].single
    assert single is not None
    assert 1.8 <= single.edge_latency_s <= 2.6, single
    assert single.middle_sent == 2, single
    assert single.deep_received_healthy == 0, single
    assert single.middle_running_at_answer == 0, single


def test_herd_single_request_is_answered_in_about_1_s(outcomes: dict[str, Outcome]) -> None:
    single = outcomes["herd"].single
    assert single is not None
    assert single.answered, single
    assert single.edge_latency_s < 1.5, single
    # The first attempt went to the hanging instance, the retry to the healthy one.
    assert (single.deep_received_hanging, single.deep_received_healthy) == (1, 1), single
    assert single.middle_running_at_answer == 0, single
    assert single.deep_still_held == 0, single


def test_under_load_herd_succeeds_without_amplifying_and_naive_storms(
    outcomes: dict[str, Outcome],
) -> None:
    herd_load = outcomes["herd"].load
    naive_load = outcomes["naive"].load
    assert herd_load is not None and naive_load is not None
    assert herd_load.success_pct >= 99.0, herd_load
    assert herd_load.amplification <= 1.3, herd_load
    assert naive_load.amplification >= 3.0, naive_load
    assert naive_load.peak_middle_inflight > herd_load.peak_middle_inflight, (
        naive_load,
        herd_load,
    )
