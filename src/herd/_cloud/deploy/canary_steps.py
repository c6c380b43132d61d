"""A canary's steps and their analysis, without I/O: the deploy runs it with the instances'
counters and the registry's routes, the judge experiment with simulated ones on virtual time.

Every step gets its share of traffic, then one look per `interval_s`: the judge adds what the
canary, the baseline and the production group served since the last look. A step ends

- at once, failed, when the judge's decision is FAIL (a HIGH critical metric: a bad canary is
  stopped at the first look the evidence suffices, at any step);
- after `analysis_s`, with the judge's decision at that look; while a metric that must have
  data has none, for up to two more `analysis_s`; a MARGINAL decision gets one more
  `analysis_s`, after which the decision at its end stands (MARGINAL again is not a pass).

The time is the running loop's: real in the control plane, virtual in the experiment.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from herd._cloud.app import DeploySpec
from herd._cloud.deploy.analysis import Counts
from herd._cloud.deploy.canary import FAIL, MARGINAL, PASS, Judge, Verdict

#: What the canary, the baseline and the production group served since the last call.
Take = Callable[[], Awaitable[tuple[Counts, Counts, Counts]]]


def judge_for(spec: DeploySpec) -> Judge:
    """A judge with the thresholds `spec` sets."""
    return Judge(
        confidence=spec.confidence,
        min_points=spec.min_points,
        pass_score=spec.pass_score,
        marginal_score=spec.marginal_score,
    )


async def analyse(
    spec: DeploySpec, judge: Judge, take: Take, looked: Callable[[Verdict], None]
) -> Verdict:
    """One step's analysis (the share already routed); `looked` hears every look's verdict."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    periods = 1
    while True:
        await asyncio.sleep(spec.interval_s)
        judge.add(*await take())
        elapsed = loop.time() - started
        # A float's worth of slack: `analysis_s` in whole intervals ends on the last of them.
        due = elapsed >= spec.analysis_s * periods - 1e-6
        final = due and (not judge.lacking() or elapsed >= spec.analysis_s * (periods + 2) - 1e-6)
        verdict = judge.verdict(final=final)
        looked(verdict)
        if verdict.decision == FAIL:
            return verdict
        if not final:
            continue
        if verdict.decision == MARGINAL and periods == 1:
            periods += 1
            continue
        return verdict


async def run(
    spec: DeploySpec,
    judge: Judge,
    take: Take,
    route: Callable[[int], Awaitable[None]],
    looked: Callable[[int, Verdict], None],
    analysed: Callable[[int, Verdict], None],
) -> tuple[int, Verdict]:
    """Every step before the last (100 %): `route` it, `analyse` it; `analysed` hears each
    step's final verdict. Returns the last step analysed and its verdict: PASS when every step
    passed, otherwise the verdict that stopped the canary."""
    await take()  # the first reading of each counter, which later ones are counted from
    share, verdict = 0, Verdict(0.0, FAIL)
    for share in spec.canary_steps[:-1]:
        await route(share)
        verdict = await analyse(spec, judge, take, functools.partial(looked, share))
        analysed(share, verdict)
        if verdict.decision != PASS:
            break
    return share, verdict
