"""The canary judge: is the canary worse than the old version? (Kayenta's judge, on counts)

The judge looks after every interval at what the canary, the baseline (the old version started
fresh beside it, at the same size and share) and the production group served in it
(`analysis.Counts`), and keeps one sequential test (`sequential.CountTest`) per metric and
direction, over the whole deploy: its evidence carries over from step to step.

- **errors**: failed requests among requests. The control is every instance of the old version
  (the baseline and the production group): at a 5 % step the baseline alone serves too few
  requests to ever show a difference quickly (with no baseline failure, each canary failure can
  at most double the evidence; against twenty times the exposure it multiplies it by up to
  twenty), and a failure is a failure whatever the age of the process that served it.
- **latency** and **latency_tail**: requests slower than the baseline's median and its 95th
  percentile (the latency sketch's bucket that holds it, within 1 %, from the baseline's
  earlier intervals), among requests with a latency: the whole distribution, on every request,
  with nothing thrown away. The control is the baseline alone, so that age and warm caches
  pass for nothing.

Each metric is classified every look: HIGH once the evidence that the canary's rate is more
than `allowed_increase` times the control's reached `1 / (1 - confidence)`; LOW the same the
other way (the control's rate more than `allowed_increase` times the canary's); NODATA while
either side has had requests in fewer than `min_points` intervals; PASS otherwise. The score
is the weight of PASS and LOW metrics over the weight of those judged (NODATA ones are left
out, unless `must_have_data`). A HIGH critical metric fails the canary whatever the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from herd._cloud.deploy.analysis import Counts
from herd._cloud.deploy.sequential import CountTest
from herd._model.stats import quantile_index

#: The decisions of one analysis.
PASS = "pass"
MARGINAL = "marginal"
FAIL = "fail"
#: The classifications of one metric (Kayenta's).
HIGH = "high"
LOW = "low"
NODATA = "nodata"
#: What a metric counts as its events.
ERRORS = "errors"
SLOW = "slow"


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric the judge compares: `kind` ERRORS (failed requests) or SLOW (requests slower
    than the baseline's `quantile`)."""

    name: str
    kind: str
    weight: float
    critical: bool = False
    """HIGH fails the canary whatever the score."""
    must_have_data: bool = False
    """NODATA at the end of a step counts as a failed metric rather than being left out."""
    allowed_increase: float = 1.0
    """The factor by which the canary's rate may exceed the control's: the test asks whether it
    exceeds it by more (Kayenta's `allowedIncrease`)."""
    quantile: float = 0.5


#: What every herd server reports, as the judge weighs it by default.
METRICS = (
    Metric("errors", ERRORS, weight=50.0, critical=True, must_have_data=True),
    Metric("latency", SLOW, weight=30.0, allowed_increase=1.2, quantile=0.5),
    Metric("latency_tail", SLOW, weight=20.0, allowed_increase=1.2, quantile=0.95),
)


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    """One metric at one look: its classification, the canary's rate over the control's, and
    the evidence of each direction."""

    name: str
    classification: str
    ratio: float
    e_high: float
    e_low: float
    canary_events: float
    canary_exposure: float
    control_events: float
    control_exposure: float

    @property
    def passed(self) -> bool:
        """Whether it counts for the canary (PASS or LOW)."""
        return self.classification in (PASS, LOW)

    @property
    def reason(self) -> str:
        """The figures behind the classification, in one phrase."""
        return (
            f"{self.classification}: {self.canary_events:g}/{self.canary_exposure:g} vs"
            f" {self.control_events:g}/{self.control_exposure:g}, e={self.e_high:.3g}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A look: the score (0-100), PASS, MARGINAL or FAIL, and each metric's verdict."""

    score: float
    decision: str
    metrics: list[MetricVerdict] = field(default_factory=list)

    def summary(self) -> str:
        """One line: the score and the metrics that did not pass."""
        failed = [f"{m.name} ({m.reason})" for m in self.metrics if not m.passed]
        return f"score {self.score:.0f}: {self.decision}" + (
            f"; not passed {', '.join(failed)}" if failed else ""
        )


@dataclass(slots=True)
class _Track:
    metric: Metric
    high: CountTest = field(init=False)
    low: CountTest = field(init=False)
    canary_intervals: int = 0
    control_intervals: int = 0
    classified: str = NODATA

    def __post_init__(self) -> None:
        self.high = CountTest(self.metric.allowed_increase)
        self.low = CountTest(self.metric.allowed_increase)


class Judge:
    """One deploy's judge: fed every interval with `add`, it classifies each metric on all the
    deploy's evidence so far."""

    def __init__(
        self,
        metrics: Sequence[Metric] = METRICS,
        *,
        confidence: float = 0.99,
        min_points: int = 10,
        pass_score: float = 95.0,
        marginal_score: float = 75.0,
    ) -> None:
        self._tracks = [_Track(metric) for metric in metrics]
        self._threshold = 1.0 / (1.0 - confidence)
        self._min_points = min_points
        self._pass_score = pass_score
        self._marginal_score = marginal_score
        self._baseline_latency = Counts()
        """Every request the baseline timed before this look: where the slow thresholds are."""

    def add(self, canary: Counts, baseline: Counts, production: Counts) -> None:
        """One interval's counts of the canary, the baseline and the production group."""
        for track in self._tracks:
            self._add(track, canary, baseline, production)
            self._classify(track)
        self._baseline_latency.add(baseline)

    def lacking(self) -> bool:
        """Whether a metric that must have data has none yet."""
        return any(t.metric.must_have_data and t.classified == NODATA for t in self._tracks)

    def verdict(self, *, final: bool) -> Verdict:
        """The judgment on all the evidence so far. At the end of a step (`final`) a NODATA
        metric with `must_have_data` counts as failed. Before (`final` False) NODATA metrics
        are left out, and the decision is FAIL only when no data still to come could change
        it: a HIGH critical metric, or a score below `marginal_score` even if every NODATA
        metric passed; otherwise PASS or, pending, MARGINAL."""
        verdicts = [self._view(track) for track in self._tracks]
        score = self._score(final=final, hopeful=False)
        critical = any(t.metric.critical and t.classified == HIGH for t in self._tracks)
        if critical or (
            not final and self._score(final=False, hopeful=True) < self._marginal_score
        ):
            decision = FAIL
        elif final or score >= self._pass_score:
            decision = self._decide(score)
        else:
            decision = MARGINAL  # pending: data still to come may yet pass it
        return Verdict(score, decision, verdicts)

    def _decide(self, score: float) -> str:
        if score >= self._pass_score:
            return PASS
        return MARGINAL if score >= self._marginal_score else FAIL

    def _add(self, track: _Track, canary: Counts, baseline: Counts, production: Counts) -> None:
        metric = track.metric
        if metric.kind == ERRORS:
            tested = (canary.failed, canary.requests)
            control = (baseline.failed + production.failed, baseline.requests + production.requests)
        else:
            # The sketch bucket of the baseline's quantile over every request it timed before
            # this look.
            bound = quantile_index(self._baseline_latency.sketch, metric.quantile)
            if bound is None:
                return  # no threshold yet: the baseline has timed nothing before this look
            tested = (canary.above(bound), canary.timed)
            control = (baseline.above(bound), baseline.timed)
        track.canary_intervals += tested[1] > 0
        track.control_intervals += control[1] > 0
        track.high.add(*tested, *control)
        track.low.add(*control, *tested)

    def _classify(self, track: _Track) -> None:
        """HIGH stays once reached: it is decided at the first look its evidence crosses the
        threshold, which is what makes the test valid at every look. LOW stays too, unless the
        canary turns out worse later (a canary faster than a cold baseline may still regress)."""
        if track.classified == HIGH:
            return
        if track.high.e_value >= self._threshold:
            track.classified = HIGH
        elif track.classified == LOW or track.low.e_value >= self._threshold:
            track.classified = LOW
        elif min(track.canary_intervals, track.control_intervals) < self._min_points:
            track.classified = NODATA
        else:
            track.classified = PASS

    @staticmethod
    def _view(track: _Track) -> MetricVerdict:
        high = track.high
        return MetricVerdict(
            track.metric.name,
            track.classified,
            high.ratio,
            high.e_value,
            track.low.e_value,
            high.tested_events,
            high.tested_exposure,
            high.control_events,
            high.control_exposure,
        )

    def _score(self, *, final: bool, hopeful: bool) -> float:
        judged = passed = 0.0
        for track in self._tracks:
            weight = track.metric.weight
            if track.classified == NODATA:
                if hopeful:
                    judged += weight
                    passed += weight
                elif final and track.metric.must_have_data:
                    judged += weight
                continue
            judged += weight
            passed += weight if track.classified in (PASS, LOW) else 0.0
        return 100.0 * passed / judged if judged else 0.0
