"""The attempt loop: balance, attempt, retry on a different instance inside the retry budget.

Written once and used by both the driver (RPCs) and the front door (HTTP requests from outside):
what an attempt sends differs, how instances are chosen, judged and retried does not.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

from herd._client.balance import Balancer
from herd._client.budget import RetryBudget
from herd._client.metrics import DependencyMetrics
from herd._client.resolver import Resolver
from herd._model.errors import DeadlineExceeded, HerdError, Unavailable
from herd._model.instance import Instance
from herd._model.outcome import Blame, blame

T = TypeVar("T")


class Retry(Exception):
    """An attempt failed in a way that another instance may not: carries the error to raise if
    no other attempt succeeds."""

    def __init__(self, error: HerdError) -> None:
        super().__init__(str(error))
        self.error = error


class FailedAnswer(Exception):
    """The instance failed but answered; the answer goes back as is (not retried)."""

    def __init__(self, answer: object) -> None:
        super().__init__("instance failed")
        self.answer = answer


class Attempt:
    """One attempt at one instance. `failed` may be set by the sender when the verdict on the
    instance is not what the outcome alone says (an attempt that hung until its deadline)."""

    __slots__ = ("failed", "instance", "number")

    def __init__(self, instance: Instance, number: int) -> None:
        self.instance = instance
        self.number = number
        self.failed: bool | None = None


class Backoff:
    """Full-jitter back-off before a retry: uniform in [0, min(cap, base * 2^(n-2))]."""

    __slots__ = ("base", "cap", "rng")

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()

    def pause(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (>= 2)."""
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 2)))


class AttemptLoop:
    """Chooses instances of one service and retries on different ones, inside a retry budget."""

    def __init__(
        self,
        service: str,
        resolver: Resolver,
        balancer: Balancer,
        budget: RetryBudget,
        backoff: Backoff,
        *,
        min_useful: float,
        metrics: DependencyMetrics | None = None,
    ) -> None:
        self.service = service
        self.resolver = resolver
        self.balancer = balancer
        self.budget = budget
        self.backoff = backoff
        self.min_useful = min_useful
        self._metrics = metrics
        self._known: Sequence[Instance] = ()

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.count(outcome)

    def _forget_departed(self, candidates: Sequence[Instance]) -> None:
        """Drop balancer state of instances that left (the resolver hands out a new list on
        every change), so churn from chaos and autoscaling does not accumulate."""
        present = {i.id for i in candidates}
        for instance in self._known:
            if instance.id not in present:
                self.balancer.forget(instance.id)
        self._known = candidates

    async def run(
        self, send: Callable[[Attempt], Awaitable[T]], deadline: float, attempts: int
    ) -> T:
        """Up to `attempts` attempts, each at an instance not tried before in this call.

        `send` returns the answer, raises `Retry` to try elsewhere, `FailedAnswer` to answer
        with an instance's failure, or any other error to stop.
        """
        tried: list[str] = []
        zones: list[str] = []
        self.budget.record_request()
        last: HerdError | None = None
        candidates = self.resolver.instances(self.service)
        if candidates is not self._known:
            self._forget_departed(candidates)
        for number in range(1, attempts + 1):
            instance = self.balancer.pick(candidates, tried, zones)
            if instance is None:
                if last is None:
                    raise Unavailable(f"no instance of {self.service} is available")
                break
            if number > 1:
                if not self.budget.try_spend():
                    self._count("retries_denied")
                    break
                pause = self.backoff.pause(number)
                if deadline - time.monotonic() - pause < self.min_useful:
                    break
                self._count("retries")
                await asyncio.sleep(pause)
            if deadline - time.monotonic() < self.min_useful:
                last = DeadlineExceeded(f"{self.service}: deadline passed before attempt {number}")
                break
            tried.append(instance.id)
            zones.append(instance.zone)
            try:
                return await self._one(send, Attempt(instance, number))
            except Retry as retry:
                last = retry.error
        assert last is not None
        raise last

    async def _one(self, send: Callable[[Attempt], Awaitable[T]], attempt: Attempt) -> T:
        instance = attempt.instance
        self.balancer.started(instance.id)
        try:
            answer = await send(attempt)
        except Retry as retry:
            if attempt.failed is None:
                attempt.failed = blame(retry.error) is Blame.INSTANCE
            raise
        except FailedAnswer as failed:
            attempt.failed = True
            answer = cast(T, failed.answer)
        except Exception as exc:
            if attempt.failed is None:
                attempt.failed = blame(exc) is Blame.INSTANCE
            raise
        finally:
            # A cancelled attempt (the caller gave up) is no verdict on the instance unless the
            # sender says so.
            self._judge(attempt)
        return answer

    def _judge(self, attempt: Attempt) -> None:
        instance = attempt.instance
        if not attempt.failed:
            self.balancer.finished(instance.id, True, 0)
            return
        group = instance.group
        members = self.resolver.instances(self.service)
        self.balancer.finished(instance.id, False, sum(i.group == group for i in members))
