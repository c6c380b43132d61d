"""The attempt loop: balance, attempt, retry on a different instance inside the retry budget.

Written once and used by both the driver (RPCs) and the front door (HTTP requests from outside):
what an attempt sends differs, how instances are chosen, judged and retried does not.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from herd._client.balance import Balancer
from herd._client.budget import RetryBudget
from herd._client.metrics import DependencyMetrics
from herd._client.resolver import Resolver, RouteSource
from herd._client.routes import GroupChooser
from herd._model import clock as _clock
from herd._model import routing as _routing
from herd._model.deadline import Alarm
from herd._model.errors import ConfigurationError, DeadlineExceeded, HerdError, Unavailable
from herd._model.instance import Instance
from herd._model.outcome import Blame, blame
from herd._model.stats import percentile
from herd._trace import spans as _spans

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
    instance is not what the outcome alone says (an attempt that hung until its deadline).
    `hedge` marks the second attempt of a race; `shed`, an instance that refused it for load."""

    __slots__ = ("failed", "hedge", "instance", "number", "shed")

    def __init__(self, instance: Instance, number: int) -> None:
        self.instance = instance
        self.number = number
        self.failed: bool | None = None
        self.hedge = False
        self.shed = False


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When a call that is safe to run twice sends a hedged attempt to another instance
    (Finagle's backup requests, gRPC hedging): a gray failure (an instance that stalls without
    failing) then costs a request nothing but the delay.

    The hedge goes out after `delay` seconds without an answer, or, by default, after the
    recent `percentile` of this dependency's answered attempts (once `min_samples` have been
    seen; never sooner than `min_delay`). Until then, a first attempt at an instance that has
    never answered this client is hedged after `cold_delay` (None: no hedge before
    `min_samples` answers): a hung instance never answers, so it never teaches a delay, and a
    client that starts while one hangs would otherwise wait for every attempt's cap until
    enough others had answered. An instance that has answered is not hedged before the delay is
    learned, so that a caller above a hop that is itself hedging (slow while its hedge runs) does
    not hedge it again. A hedge is spent from the retry budget like a retry, and it counts as
    one of the call's attempts; the first answer wins and the other is cancelled.
    """

    delay: float | None = None
    percentile: float = 0.95
    min_samples: int = 32
    min_delay: float = 0.002
    cold_delay: float | None = 0.05

    def __post_init__(self) -> None:
        if self.delay is not None and self.delay <= 0:
            raise ConfigurationError(f"delay must be > 0, got {self.delay}")
        if not 0.0 < self.percentile < 1.0:
            raise ConfigurationError(f"percentile must be within (0, 1), got {self.percentile}")
        if self.min_samples < 1 or self.min_delay < 0:
            raise ConfigurationError("min_samples must be >= 1 and min_delay >= 0")
        if self.cold_delay is not None and self.cold_delay <= 0:
            raise ConfigurationError(f"cold_delay must be > 0, got {self.cold_delay}")


class _Recent:
    """Latencies of recently answered attempts and one percentile of them, recomputed every
    `_EVERY` samples so that the hot path pays a list store, not a sort."""

    __slots__ = ("_fraction", "_next", "_samples", "_value")
    _SIZE = 256
    _EVERY = 32

    def __init__(self, fraction: float) -> None:
        self._fraction = fraction
        self._samples = [0.0] * self._SIZE
        self._next = 0
        self._value = 0.0

    def add(self, seconds: float) -> None:
        self._samples[self._next % self._SIZE] = seconds
        self._next += 1
        if self._next % self._EVERY == 0:
            seen = sorted(self._samples[: min(self._next, self._SIZE)])
            self._value = percentile(seen, self._fraction)

    def value(self, min_samples: int) -> float | None:
        """The percentile, or None before `min_samples` answers (and before the first update)."""
        if self._next < max(min_samples, self._EVERY):
            return None
        return self._value


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
        hedge: HedgePolicy | None = None,
        departed: Callable[[str], None] | None = None,
    ) -> None:
        self.service = service
        self.resolver = resolver
        self.balancer = balancer
        self.budget = budget
        self.backoff = backoff
        self.min_useful = min_useful
        self._metrics = metrics
        self.hedge = hedge
        self._recent = _Recent(hedge.percentile if hedge is not None else 0.95)
        self._known: Sequence[Instance] = ()
        # Instances per group, for the balancer's cap on ejections: counted once per change.
        self._sizes: Counter[str] = Counter()
        self._routes = resolver if isinstance(resolver, RouteSource) else None
        # Told the id of each instance that left, to drop what the owner holds for it.
        self._departed = departed
        self._chooser = GroupChooser()

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.count(outcome)

    def _forget_departed(self, candidates: Sequence[Instance]) -> None:
        """Drop balancer state (and, through `departed`, the owner's transports) of instances
        that left (the resolver hands out a new list on every change), so churn from chaos and
        autoscaling does not accumulate."""
        present = {i.id for i in candidates}
        for instance in self._known:
            if instance.id not in present:
                self.balancer.forget(instance.id)
                if self._departed is not None:
                    self._departed(instance.id)
        self._known = candidates
        self._sizes = Counter(i.group for i in candidates)

    async def run(
        self,
        send: Callable[[Attempt], Awaitable[T]],
        deadline: float,
        attempts: int,
        *,
        hedge: bool = False,
    ) -> T:
        """Up to `attempts` attempts, each at an instance not tried before in this call.

        `send` returns the answer, raises `Retry` to try elsewhere, `FailedAnswer` to answer
        with an instance's failure, or any other error to stop. With `hedge` (the request is safe
        to run twice) and a hedge policy, a first attempt that has not answered within the hedge
        delay gets a second one at another instance, and the first answer wins.
        """
        tries = _Tries()
        self.budget.record_request()
        last: HerdError | None = None
        candidates = self.resolver.instances(self.service)
        if candidates is not self._known:
            self._forget_departed(candidates)
        fallback: Sequence[Instance] = ()
        if self._routes is not None and (route := self._routes.route(self.service)) is not None:
            # A hedge stays in the group: hedged away, a canary's failures would be hidden from
            # its analysis (its attempts cancelled before they fail).
            candidates, fallback = self._chooser.choose(candidates, route, _routing.current())
        while tries.spent < attempts:
            number = tries.spent + 1
            instance = self.balancer.pick(candidates, tries.ids, tries.zones)
            if instance is None and fallback:
                # The routed group has no untried instance left: a retry may go to another
                # group the route gives traffic to, rather than fail the call.
                candidates, fallback = fallback, ()
                instance = self.balancer.pick(candidates, tries.ids, tries.zones)
            if instance is None:
                if last is None:
                    raise Unavailable(f"no instance of {self.service} is available")
                break
            if number > 1:
                if not self.budget.try_spend():
                    self._count("retries_denied")
                    break
                pause = self.backoff.pause(number)
                if deadline - _clock.monotonic() - pause < self.min_useful:
                    break
                self._count("retries")
                await asyncio.sleep(pause)
            if deadline - _clock.monotonic() < self.min_useful:
                last = DeadlineExceeded(f"{self.service}: deadline passed before attempt {number}")
                break
            attempt = tries.add(instance)
            delay = self._hedge_delay(instance) if hedge and number < attempts else None
            try:
                if delay is None or len(candidates) < 2:
                    return await self._one(send, attempt)
                pick = functools.partial(self._hedge, candidates, tries, deadline)
                return await _Race(self, send, attempt, pick).run(delay)
            except Retry as retry:
                last = retry.error
        assert last is not None
        raise last

    def _hedge_delay(self, first: Instance) -> float | None:
        policy = self.hedge
        if policy is None:
            return None
        if policy.delay is not None:
            return policy.delay
        recent = self._recent.value(policy.min_samples)
        if recent is not None:
            return max(policy.min_delay, recent)
        return None if self.balancer.answered(first.id) else policy.cold_delay

    def _hedge(
        self, candidates: Sequence[Instance], tries: _Tries, deadline: float
    ) -> Attempt | None:
        """A hedged attempt at an instance the call has not tried, if the deadline leaves room
        for one and the retry budget has a token; None otherwise."""
        if deadline - _clock.monotonic() < self.min_useful:
            return None
        second = self.balancer.pick(candidates, tries.ids, tries.zones)
        if second is None:
            return None
        if not self.budget.try_spend():
            self._count("retries_denied")
            return None
        self._count("hedges")
        attempt = tries.add(second)
        attempt.hedge = True
        return attempt

    def _one(self, send: Callable[[Attempt], Awaitable[T]], attempt: Attempt) -> Awaitable[T]:
        span = _spans.attempt(attempt)
        if not isinstance(span, _spans.Scope):
            # Nothing recorded: no coroutine around the attempt's own.
            return self._judged(send, attempt)
        return self._one_in(span, send, attempt)

    async def _one_in(
        self, span: _spans.Scope, send: Callable[[Attempt], Awaitable[T]], attempt: Attempt
    ) -> T:
        with span:
            return await self._judged(send, attempt)

    async def _judged(self, send: Callable[[Attempt], Awaitable[T]], attempt: Attempt) -> T:
        instance = attempt.instance
        self.balancer.started(instance.id)
        started = _clock.monotonic()
        timed = True
        try:
            answer = await send(attempt)
        except Retry as retry:
            self._blame(attempt, retry.error)
            raise
        except FailedAnswer as failed:
            attempt.failed = True
            answer = cast(T, failed.answer)
        except asyncio.CancelledError:
            # A cancelled attempt (the caller gave up) is no verdict on the instance, nor a
            # measure of its speed, unless the sender blamed it (its share ran out).
            timed = attempt.failed is not None
            raise
        except Exception as exc:
            self._blame(attempt, exc)
            raise
        finally:
            took = _clock.monotonic() - started
            self._judge(attempt, took if timed else None)
        if self.hedge is not None and not attempt.failed:
            self._recent.add(took)
        return answer

    @staticmethod
    def _blame(attempt: Attempt, error: BaseException) -> None:
        whose = blame(error)
        attempt.shed = whose is Blame.LOAD
        if attempt.failed is None:
            attempt.failed = whose is Blame.INSTANCE

    def _judge(self, attempt: Attempt, took: float | None) -> None:
        instance = attempt.instance
        if not attempt.failed:
            self.balancer.finished(instance.id, True, 0, took, shed=attempt.shed)
            return
        self.balancer.finished(instance.id, False, self._sizes.get(instance.group, 1), took)


class _Tries:
    """What one call has tried: the instances (never one twice) and their zones, one attempt
    each."""

    __slots__ = ("ids", "zones")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.zones: list[str] = []

    @property
    def spent(self) -> int:
        """Attempts made so far."""
        return len(self.ids)

    def add(self, instance: Instance) -> Attempt:
        """The call's next attempt, at `instance`."""
        self.ids.append(instance.id)
        self.zones.append(instance.zone)
        return Attempt(instance, len(self.ids))


class _Race(Generic[T]):
    """A first attempt raced by a hedge at another instance if it is slow to answer (Finagle's
    backup requests, trio's happy eyeballs: staggered attempts, the loser cancelled).

    The first attempt runs in the caller's task and the trigger is an alarm on the shared wheel,
    so a call that answers in time (nearly all) pays an alarm and nothing else: no task, no task
    group. The hedge runs in a task of its own. The first answer wins: a hedge that answers
    cancels the caller's task, as a task group cancels its body, and the race takes the
    cancellation back; a first attempt that answers cancels the hedge. If the first fails after
    the hedge went out, the hedge is its retry: its answer, or its failure, is the outcome. The
    hedge never outlives the race: whatever ends it, the hedge has ended (and been judged) first.
    """

    __slots__ = ("_attempts", "_first", "_first_over", "_hedge", "_pick", "_send", "_task", "_won")

    def __init__(
        self,
        attempts: AttemptLoop,
        send: Callable[[Attempt], Awaitable[T]],
        first: Attempt,
        pick: Callable[[], Attempt | None],
    ) -> None:
        self._attempts = attempts
        self._send = send
        self._first = first
        self._pick = pick
        """The hedge's attempt, or None when none may go."""
        self._hedge: asyncio.Task[Exception | None] | None = None
        self._task: asyncio.Task[object] | None = None
        self._won: tuple[T] | None = None
        """The hedge's answer, once it has answered first."""
        self._first_over = False

    async def run(self, delay: float) -> T:
        """The winner's answer, or the error that ends the race."""
        task = self._task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        context = contextvars.copy_context()
        alarm = Alarm(_clock.monotonic() + delay, lambda: self._ring(context))
        alarm.start()
        try:
            answer = await self._attempts._one(self._send, self._first)
        except Retry:
            self._first_over = True
            alarm.cancel()
            if self._hedge is None:
                raise
            # The first failed after the hedge went out: the hedge is its retry.
            failure = await _outcome(self._hedge)
            if self._won is not None:
                return self._won[0]
            if failure is not None:
                raise failure from None
            raise
        except asyncio.CancelledError:
            alarm.cancel()
            if self._won is None:
                await self._stop_hedge()
                raise
            # The hedge answered and cancelled the first attempt; the caller itself may have
            # been cancelled too, and then the cancellation wins.
            if task.uncancel() > cancelling:
                raise
            return self._won[0]
        except BaseException:
            self._first_over = True
            alarm.cancel()
            await self._stop_hedge()
            raise
        self._first_over = True
        alarm.cancel()
        await self._stop_hedge()
        return answer

    def _ring(self, context: contextvars.Context) -> None:
        attempt = self._pick()
        if attempt is not None:
            loop = asyncio.get_running_loop()
            self._hedge = loop.create_task(self._hedged(attempt), context=context)

    async def _hedged(self, attempt: Attempt) -> Exception | None:
        """The hedge: its answer cancels the first attempt; its failure is returned, the
        outcome only if the first fails too."""
        try:
            answer = await self._attempts._one(self._send, attempt)
        except Exception as exc:
            return exc
        # The first did not answer within the hedge delay and another instance did.
        self._first.failed = True
        self._won = (answer,)
        assert self._task is not None
        if not self._first_over:
            self._task.cancel()
        return None

    async def _stop_hedge(self) -> None:
        """Cancel the hedge if it is still running, and wait for it to end."""
        hedge = self._hedge
        if hedge is None or hedge.done():
            return
        hedge.cancel()
        await _outcome(hedge)


async def _outcome(hedge: asyncio.Task[Exception | None]) -> Exception | None:
    """The hedge's failure (None: it answered, or was cancelled), waited for even if the caller
    is cancelled meanwhile: the hedge is cancelled then too and its end waited for, so that it
    never outlives the race."""
    try:
        await asyncio.wait([hedge])
    except asyncio.CancelledError:
        hedge.cancel()
        await asyncio.wait([hedge])
        raise
    return None if hedge.cancelled() else hedge.result()
