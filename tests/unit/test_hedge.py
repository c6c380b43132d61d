"""Hedged attempts: a first attempt that is slow to answer gets a second one at another
instance, inside the retry budget; the first answer wins and the loser is cancelled."""

from __future__ import annotations

import asyncio
import time

import pytest

import herd
from herd._client.attempts import Attempt, AttemptLoop, Backoff, HedgePolicy, Retry, _Recent
from herd._client.balance import Balancer
from herd._client.budget import BudgetPolicy, RetryBudget
from herd._client.metrics import DependencyMetrics

INSTANCES = [
    herd.Instance(
        id=name,
        service="svc",
        group="svc-v001",
        version="v001",
        zone="a",
        host="127.0.0.1",
        port=port,
        status=herd.Status.UP,
    )
    for name, port in (("slow", 1), ("fast", 2))
]


def make_loop(
    hedge: HedgePolicy | None, budget: BudgetPolicy | None = None
) -> tuple[AttemptLoop, DependencyMetrics]:
    metrics = DependencyMetrics()
    loop = AttemptLoop(
        "svc",
        herd.StaticResolver("svc", INSTANCES),
        Balancer("a"),
        RetryBudget(budget or BudgetPolicy()),
        Backoff(0.0, 0.0),
        min_useful=0.001,
        metrics=metrics,
        hedge=hedge,
    )
    return loop, metrics


class Stalling:
    """`slow` never answers (until cancelled); `fast` answers at once. Records what happened."""

    def __init__(self, fail_slow_after: float | None = None) -> None:
        self.sent: list[str] = []
        self.cancelled: list[str] = []
        self.fail_slow_after = fail_slow_after

    async def __call__(self, attempt: Attempt) -> str:
        name = attempt.instance.id
        self.sent.append(name)
        try:
            if name == "slow":
                if self.fail_slow_after is not None:
                    await asyncio.sleep(self.fail_slow_after)
                    raise Retry(herd.Unavailable("slow gave up"))
                await asyncio.Event().wait()
            return name
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise


def first_pick_slow(loop: AttemptLoop) -> None:
    """Make the balancer's first choice the slow instance: the fast one looks busy."""
    for _ in range(3):
        loop.balancer.started("fast")


async def test_a_stalled_first_attempt_is_hedged_and_the_hedge_answers() -> None:
    loop, metrics = make_loop(HedgePolicy(delay=0.02))
    first_pick_slow(loop)
    send = Stalling()
    started = time.monotonic()
    answer = await loop.run(send, time.monotonic() + 2.0, 2, hedge=True)
    took = time.monotonic() - started
    assert answer == "fast"
    assert send.sent == ["slow", "fast"]
    assert send.cancelled == ["slow"]
    assert 0.02 <= took < 0.5
    assert metrics.hedges == 1
    # The stalled first attempt counts against its instance (consecutive failures).
    assert loop.balancer.outstanding("slow") == 0
    assert loop.balancer._health["slow"].failures == 1


async def test_no_hedge_without_the_callers_consent_or_a_policy() -> None:
    for hedge, consent in ((HedgePolicy(delay=0.02), False), (None, True)):
        loop, metrics = make_loop(hedge)
        first_pick_slow(loop)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await loop.run(Stalling(), time.monotonic() + 2.0, 2, hedge=consent)
        assert metrics.hedges == 0


async def test_a_hedge_needs_a_budget_token() -> None:
    # No reserve and no requests yet: the budget has nothing to spend on a hedge.
    loop, metrics = make_loop(
        HedgePolicy(delay=0.02), BudgetPolicy(min_retries_per_s=0.0, ratio=0.0)
    )
    first_pick_slow(loop)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await loop.run(Stalling(), time.monotonic() + 2.0, 2, hedge=True)
    assert metrics.hedges == 0
    assert metrics.retries_denied == 1


async def test_when_the_first_fails_after_the_hedge_went_out_the_hedge_is_the_retry() -> None:
    loop, metrics = make_loop(HedgePolicy(delay=0.01))
    first_pick_slow(loop)
    send = Stalling(fail_slow_after=0.05)
    assert await loop.run(send, time.monotonic() + 2.0, 2, hedge=True) == "fast"
    assert send.sent == ["slow", "fast"]
    assert metrics.hedges == 1
    assert metrics.retries == 0


async def test_a_cancelled_call_cancels_both_attempts() -> None:
    loop, _ = make_loop(HedgePolicy(delay=0.01))
    for _ in range(3):
        loop.balancer.started("slow")
    # Both stall: the slow-looking one is the second pick here, so hang both.
    send = Stalling()
    both_sent = asyncio.Event()

    async def both_hang(attempt: Attempt) -> str:
        send.sent.append(attempt.instance.id)
        if len(send.sent) == 2:
            both_sent.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            send.cancelled.append(attempt.instance.id)
            raise
        return "never"

    task = asyncio.create_task(loop.run(both_hang, time.monotonic() + 5.0, 2, hedge=True))
    await asyncio.wait_for(both_sent.wait(), 5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(send.cancelled) == ["fast", "slow"]


def test_the_learned_delay_is_the_recent_percentile() -> None:
    recent = _Recent(0.95)
    for i in range(99):
        recent.add(0.001 * (i % 100 + 1))
    assert recent.value(32) is not None
    assert recent.value(1000) is None
    fresh = _Recent(0.95)
    for _ in range(10):
        fresh.add(0.01)
    assert fresh.value(1) is None  # not yet computed


async def test_a_hedge_that_answers_after_the_first_failed_leaves_the_caller_uncancelled() -> None:
    loop, metrics = make_loop(HedgePolicy(delay=0.01))
    first_pick_slow(loop)

    async def send(attempt: Attempt) -> str:
        if attempt.instance.id == "slow":
            await asyncio.sleep(0.03)
            raise Retry(herd.Unavailable("slow gave up"))
        await asyncio.sleep(0.08)
        return "fast"

    assert await loop.run(send, time.monotonic() + 2.0, 2, hedge=True) == "fast"
    assert metrics.hedges == 1
    # No cancellation is left pending on the caller's task: it goes on awaiting.
    await asyncio.sleep(0.05)
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0


async def test_a_client_that_has_seen_no_answer_yet_still_hedges() -> None:
    """Why the retry storm's p99 sat at the 1 s attempt cap: the learned delay needs
    `min_samples` answers, a hung instance never answers, and a fresh client (or one whose
    first picks were the hung instance) had no delay, so no hedge, for its first calls."""
    for cold_delay, hedged in ((None, False), (0.02, True)):
        loop, metrics = make_loop(HedgePolicy(cold_delay=cold_delay))
        first_pick_slow(loop)
        send = Stalling()
        try:
            # Without a hedge the call stalls: give it 0.3 s. With one, a loaded machine's
            # scheduling delays must not fail the test: 5 s.
            async with asyncio.timeout(5.0 if hedged else 0.3):
                answer = await loop.run(send, time.monotonic() + 10.0, 2, hedge=True)
        except TimeoutError:
            answer = None
        assert (answer == "fast") is hedged
        assert metrics.hedges == int(hedged)


async def test_before_a_delay_is_learned_an_instance_that_answered_is_not_hedged() -> None:
    """The caller of a hop that is itself hedging sees it slow while its hedge runs: hedging it
    again at the cold delay would multiply the hedges."""
    loop, metrics = make_loop(HedgePolicy(cold_delay=0.02))
    first_pick_slow(loop)
    loop.balancer.pick(INSTANCES)
    loop.balancer.started("slow")
    loop.balancer.finished("slow", True, 2, 0.00001)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await loop.run(Stalling(), time.monotonic() + 2.0, 2, hedge=True)
    assert metrics.hedges == 0


async def test_a_caller_cancelled_as_the_hedge_answers_stays_cancelled() -> None:
    loop, _ = make_loop(HedgePolicy(delay=0.01))
    first_pick_slow(loop)
    caller: asyncio.Task[str] | None = None

    async def send(attempt: Attempt) -> str:
        if attempt.instance.id == "slow":
            await asyncio.Event().wait()
        # The caller is cancelled from outside in the very iteration the hedge answers.
        assert caller is not None
        caller.cancel()
        return "fast"

    caller = asyncio.create_task(loop.run(send, time.monotonic() + 2.0, 2, hedge=True))
    with pytest.raises(asyncio.CancelledError):
        await caller
    # Nothing of the race is left running.
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_first_answer_ends_the_race_with_no_task_left() -> None:
    loop, metrics = make_loop(HedgePolicy(delay=0.01))
    first_pick_slow(loop)

    async def send(attempt: Attempt) -> str:
        await asyncio.sleep(0.05 if attempt.instance.id == "slow" else 0.5)
        return attempt.instance.id

    assert await loop.run(send, time.monotonic() + 2.0, 2, hedge=True) == "slow"
    assert metrics.hedges == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}
