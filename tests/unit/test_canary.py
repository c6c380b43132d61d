"""The canary judge: the sequential count test's validity and power, the judge's classifications,
weights, critical metrics and scores, the steps' timing on virtual time, and the counts read
from a server's /metrics."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

import pytest

from herd._cloud.app import DeploySpec
from herd._cloud.deploy import canary, canary_steps
from herd._cloud.deploy.analysis import Counts, counts, read
from herd._cloud.deploy.sequential import CountTest
from herd._model.stats import Sketch
from herd._server.metrics import ServerMetrics
from herd_tools.simulate import vtime


def _binomial(k: int, x: int, p: float) -> float:
    return math.comb(k, x) * p**x * (1 - p) ** (k - x)


@pytest.mark.parametrize("null_ratio", [1.0, 1.2])
@pytest.mark.parametrize(("tested", "control"), [(10.0, 10.0), (5.0, 95.0), (80.0, 20.0)])
def test_the_evidence_of_one_interval_averages_at_most_one_when_rates_are_equal(
    null_ratio: float, tested: float, control: float
) -> None:
    # Equal rates: each of k events is the tested stream's with probability p0, its share of
    # the exposure. The e-value's expectation over that binomial is 1 (a martingale) at the
    # null ratio 1, below 1 with a tolerated ratio above 1.
    p0 = tested / (tested + control)
    for k in (1, 3, 12):
        expectation = 0.0
        for x in range(k + 1):
            test = CountTest(null_ratio)
            test.add(x, tested, k - x, control)
            expectation += _binomial(k, x, p0) * test.e_value
        if null_ratio == 1.0:
            assert expectation == pytest.approx(1.0, rel=1e-9)
        else:
            assert expectation < 0.999


def _crossed(rng: random.Random, rate: float, ratio: float, looks: int, level: float) -> bool:
    test = CountTest()
    for _ in range(looks):
        tested = sum(rng.random() < rate * ratio for _ in range(20))
        control = sum(rng.random() < rate for _ in range(60))
        test.add(tested, 20, control, 60)
        if test.e_value >= level:
            return True
    return False


def test_looking_every_interval_keeps_false_alarms_below_alpha() -> None:
    # Ville's inequality: the chance of ever crossing 1/alpha is at most alpha, at every look.
    rng = random.Random(7)
    alarms = sum(_crossed(rng, 0.05, 1.0, 60, 10.0) for _ in range(400))
    assert alarms / 400 <= 0.1
    # ... and the same test finds a rate four times higher nearly always.
    found = sum(_crossed(rng, 0.05, 4.0, 60, 10.0) for _ in range(100))
    assert found >= 95


def test_no_events_or_no_exposure_is_no_evidence() -> None:
    test = CountTest()
    test.add(0, 100, 0, 100)
    test.add(3, 0, 0, 100)
    assert test.e_value == pytest.approx(1.0)
    assert CountTest().ratio == 1.0
    test.add(2, 10, 0, 10)
    assert test.ratio == math.inf
    assert test.e_value > 1.0


FAST, SLOW, SLOWEST = Sketch.index(0.02), Sketch.index(0.07), Sketch.index(2.0)


def _timed(fast: float, slow: float) -> dict[int, float]:
    """A latency sketch: `fast` requests at 20 ms, `slow` at 70 ms."""
    return {FAST: fast, SLOW: slow}


def _group(requests: float, failed: float = 0.0, slow_share: float = 0.1) -> Counts:
    slow = round(requests * slow_share)
    return Counts(requests, failed, _timed(requests - slow, slow))


def _judge(**settings: float) -> canary.Judge:
    return canary.Judge(confidence=0.98, min_points=5, **settings)  # type: ignore[arg-type]


def _look(judge: canary.Judge, canary_: Counts, *, final: bool = True) -> canary.Verdict:
    judge.add(canary_, _group(20), _group(180))
    return judge.verdict(final=final)


def test_a_canary_like_its_baseline_passes() -> None:
    judge = _judge()
    for _ in range(30):
        verdict = _look(judge, _group(20))
    assert verdict.decision == canary.PASS
    assert verdict.score == 100.0
    assert [m.classification for m in verdict.metrics] == [canary.PASS] * 3


def test_errors_are_judged_on_counts_and_fail_the_canary_at_the_first_look_they_suffice() -> None:
    # 15 % of the canary's 20 requests a look fail, none of the old version's 200: a handful
    # of failures is enough evidence, long before any per-interval rate could show it.
    judge = _judge()
    looks = 0
    while True:
        looks += 1
        verdict = _look(judge, _group(20, failed=3), final=False)
        if verdict.decision == canary.FAIL:
            break
    assert looks == 1
    errors = verdict.metrics[0]
    assert (errors.name, errors.classification) == ("errors", canary.HIGH)
    assert (errors.canary_events, errors.control_events) == (3, 0)
    # Critical: the other metrics pass, the score is what they weigh, and it still fails.
    assert verdict.score == pytest.approx(0.0)  # NODATA latencies left out; errors fail
    assert "errors (high" in verdict.summary()


def test_rare_errors_fail_the_canary_once_they_add_up() -> None:
    # One canary failure every fourth look (1.25 % of its requests), none elsewhere.
    judge = _judge()
    for look in range(40):
        verdict = _look(judge, _group(20, failed=1 if look % 4 == 0 else 0), final=False)
        if verdict.decision == canary.FAIL:
            break
    assert verdict.decision == canary.FAIL
    assert 4 <= look < 40


def test_a_critical_metric_high_fails_whatever_the_score() -> None:
    judge = canary.Judge(
        (
            canary.Metric("errors", canary.ERRORS, weight=1.0, critical=True),
            canary.Metric("latency", canary.SLOW, weight=99.0),
        ),
        min_points=5,
    )
    for _ in range(10):
        judge.add(_group(20, failed=3), _group(20), _group(180))
    verdict = judge.verdict(final=True)
    assert verdict.score == pytest.approx(99.0)
    assert verdict.decision == canary.FAIL


def test_intermittent_slowness_fails() -> None:
    # 4x slower in 20 % of the intervals: every request of those intervals is slow. Nothing is
    # cleaned away, so its slow intervals are counted like any other.
    judge = _judge()
    for look in range(60):
        slow = look % 5 == 0
        verdict = _look(judge, _group(20, slow_share=1.0 if slow else 0.1), final=False)
    by_name = {m.name: m for m in verdict.metrics}
    assert by_name["latency"].classification == canary.HIGH
    assert verdict.decision == canary.FAIL


def test_a_faster_canary_is_low_and_passes() -> None:
    judge = _judge()
    for _ in range(40):
        verdict = _look(judge, _group(20, slow_share=0.0))
    by_name = {m.name: m for m in verdict.metrics}
    assert by_name["latency"].classification == canary.LOW
    assert verdict.decision == canary.PASS
    # Faster first is no licence to regress later: the evidence of the other way still counts.
    for _ in range(60):
        verdict = _look(judge, _group(20, slow_share=0.5), final=False)
    assert {m.name: m.classification for m in verdict.metrics}["latency"] == canary.HIGH


def test_a_tolerated_difference_passes() -> None:
    # 11 % slow requests against 10 %: within the tolerated 1.2 times the baseline's rate.
    judge = _judge()
    for _ in range(100):
        judge.add(_group(100, slow_share=0.11), _group(100), _group(900))
    assert judge.verdict(final=True).decision == canary.PASS


def _tail_only_judge() -> canary.Judge:
    # Three metrics of weights 50, 30, 20; only the tail one will be HIGH: 80, between the
    # marginal (75) and pass (95) scores.
    return canary.Judge(
        (
            canary.Metric("errors", canary.ERRORS, weight=50.0, critical=True, must_have_data=True),
            canary.Metric("latency", canary.SLOW, weight=30.0, quantile=0.5),
            canary.Metric("tail", canary.SLOW, weight=20.0, quantile=0.95),
        ),
        min_points=5,
    )


def _tail_counts(slowest: float) -> Counts:
    """100 requests: 60 fast, 36 at 70 ms, and `slowest` of the rest at 2 s."""
    sketch = _timed(60, 36)
    sketch[SLOWEST] = slowest
    sketch[SLOW] += 4 - slowest
    return Counts(100, 0, sketch)


def test_the_marginal_band_is_reachable() -> None:
    judge = _tail_only_judge()
    for _ in range(30):
        judge.add(_tail_counts(4), _tail_counts(0.5), _group(900))
    verdict = judge.verdict(final=True)
    assert {m.name: m.classification for m in verdict.metrics} == {
        "errors": canary.PASS,
        "latency": canary.PASS,
        "tail": canary.HIGH,
    }
    assert verdict.score == pytest.approx(80.0)
    assert verdict.decision == canary.MARGINAL


def test_nodata_is_left_out_unless_the_metric_must_have_data() -> None:
    # The canary serves requests without latency figures: both latency metrics have no data.
    no_latency = Counts(20, 0, {})
    judge = _judge()
    for _ in range(10):
        judge.add(no_latency, _group(20), _group(180))
    verdict = judge.verdict(final=True)
    assert [m.classification for m in verdict.metrics] == [
        canary.PASS,
        canary.NODATA,
        canary.NODATA,
    ]
    assert (verdict.score, verdict.decision) == (100.0, canary.PASS)
    # Errors must have data: a canary that served nothing is not a canary that passed.
    idle = _judge()
    for _ in range(10):
        idle.add(Counts(), _group(20), _group(180))
    assert idle.lacking()
    assert idle.verdict(final=False).decision == canary.MARGINAL  # pending
    assert idle.verdict(final=True).decision == canary.FAIL


def _steps(
    spec: DeploySpec, canary_counts: Callable[[int], Counts]
) -> tuple[int, canary.Verdict, list[tuple[int, float]]]:
    """The steps on virtual time; the canary serves `canary_counts(look)`."""
    looks: list[tuple[int, float]] = []

    async def main(loop: vtime.VirtualLoop) -> tuple[int, canary.Verdict]:
        started = loop.time()

        async def take() -> tuple[Counts, Counts, Counts]:
            return canary_counts(len(looks)), _tail_counts(0.5), _group(900)

        async def route(_share: int) -> None:
            pass

        def looked(share: int, _verdict: canary.Verdict) -> None:
            looks.append((share, loop.time() - started))

        def analysed(_share: int, _verdict: canary.Verdict) -> None:
            pass

        judge = _tail_only_judge()
        return await canary_steps.run(spec, judge, take, route, looked, analysed)

    share, verdict = vtime.run(main)
    return share, verdict, looks


SPEC = DeploySpec(canary_steps=[5, 25, 100], analysis_s=10.0, interval_s=1.0, min_points=5)


def test_steps_pass_after_their_analysis() -> None:
    share, verdict, looks = _steps(SPEC, lambda _look: _tail_counts(0.5))
    assert (share, verdict.decision) == (25, canary.PASS)
    assert looks[9] == (5, 10.0) and looks[10] == (25, 11.0) and len(looks) == 20


def test_a_bad_canary_is_stopped_at_the_look_the_evidence_suffices() -> None:
    share, verdict, looks = _steps(SPEC, lambda _look: Counts(100, 10, _timed(90, 10)))
    assert (share, verdict.decision) == (5, canary.FAIL)
    assert len(looks) == 1


def test_a_marginal_step_gets_one_more_period_then_fails() -> None:
    share, verdict, looks = _steps(SPEC, lambda _look: _tail_counts(4))
    assert (share, verdict.decision, verdict.score) == (5, canary.MARGINAL, 80.0)
    assert looks[-1] == (5, 20.0)


def test_a_step_waits_for_data_a_metric_must_have() -> None:
    # The canary serves nothing for its first 15 looks: errors NODATA, the step goes on.
    share, verdict, looks = _steps(SPEC, lambda look: Counts() if look < 15 else _tail_counts(0.5))
    assert (share, verdict.decision) == (25, canary.PASS)
    assert [t for s, t in looks if s == 5][-1] == 20.0


def _served(metrics: ServerMetrics) -> Counts:
    # Through JSON, as the sampler reads it from /herd/served.
    return read(json.loads(json.dumps(metrics.served())))


def test_counts_of_an_interval_come_from_what_a_server_served() -> None:
    metrics = ServerMetrics("edge")
    metrics.record("presentation", "ok", 0.5)
    before = _served(metrics)
    for _ in range(18):
        metrics.record("GET /api/home", "ok", 0.004)
    metrics.record("GET /api/home", "internal", 0.001)
    metrics.record("GET /api/home", "bad_request", 0.001)  # the caller's fault: no failure
    after = _served(metrics)
    found = counts(before, after)
    assert (found.requests, found.failed, found.timed) == (20, 1, 20)
    assert found.sketch == {Sketch.index(0.004): 18, Sketch.index(0.001): 2}
    assert found.above(Sketch.index(0.002)) == 18 and found.above(Sketch.index(0.004)) == 0
    assert counts(after, after).requests == 0
    assert counts(Counts(), Counts()).sketch == {}


def test_a_canary_slower_within_one_histogram_bucket_is_caught() -> None:
    # 12 ms before, 20 ms now: one Prometheus bucket (10 to 25 ms) holds both, so a threshold at
    # its edge counted neither as slow. The sketch's threshold is the baseline's median itself.
    rng = random.Random(5)
    seen: list[float] = []

    def group(median: float, requests: int) -> Counts:
        sketch: dict[int, float] = {}
        for _ in range(requests):
            seconds = median * math.exp(0.05 * rng.gauss(0.0, 1.0))
            seen.append(seconds)
            sketch[Sketch.index(seconds)] = sketch.get(Sketch.index(seconds), 0.0) + 1
        return Counts(requests, 0, sketch)

    judge = _judge()
    for _ in range(10):
        judge.add(group(0.020, 20), group(0.012, 20), group(0.012, 180))
    assert min(seen) > 0.010 and max(seen) <= 0.025
    verdict = judge.verdict(final=True)
    assert {m.name: m.classification for m in verdict.metrics}["latency"] == canary.HIGH
    assert verdict.decision == canary.FAIL
