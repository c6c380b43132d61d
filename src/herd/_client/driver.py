"""The driver: an object with the interface's methods that calls remote instances.

One call goes through the call path in order: deadline, breaker and bulkhead, then the attempt
loop (balance, attempt, retry on a different instance inside the retry budget), then record.
Fallbacks live above, in the library layer (`herd.fallback`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar, cast

import msgspec

from herd._client.attempts import Attempt, AttemptLoop, Backoff, Retry
from herd._client.balance import Balancer
from herd._client.breaker import Bulkhead, CircuitBreaker
from herd._client.budget import RetryBudget
from herd._client.metrics import CLIENT_METRICS, ClientMetrics, DependencyMetrics, raised_by
from herd._client.policy import CallPolicy
from herd._client.pool import TransportPool
from herd._client.resolver import Resolver, StaticResolver
from herd._model import clock as _clock
from herd._model import deadline as _deadline
from herd._model import routing as _routing
from herd._model.errors import (
    BadRequest,
    CircuitOpen,
    DeadlineExceeded,
    Forbidden,
    HerdError,
    Overloaded,
    Rejected,
    RemoteError,
)
from herd._model.instance import Instance
from herd._model.interface import Interface, MethodSpec, error_from_wire, interface_of, methods
from herd._model.outcome import Blame, ErrorKind, Retryable, blame, blame_of_kind
from herd._trace import spans as _spans
from herd._wire.http_client import HttpTransport
from herd._wire.mux_client import MuxTransport
from herd._wire.protocol import (
    H_ATTEMPT,
    H_DEADLINE,
    H_ROUTE,
    H_TOKEN,
    ConnectFailed,
    ConnectionLost,
    ErrorBody,
    decode_error,
    encode,
)

IfaceT = TypeVar("IfaceT", bound=Interface)

_LATE_FLOOR_S = 0.02


class Transport(Protocol):
    """How attempts reach one instance: `MuxTransport`, `HttpTransport`, or a simulated
    network."""

    async def call(
        self, service: str, method: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one RPC and return (status, encoded answer); raise `ConnectFailed` or
        `ConnectionLost`. The caller bounds the time by cancelling."""
        ...

    async def close(self) -> None:
        """Release what the transport holds."""
        ...


#: Makes the transport to one instance, given the policy's connect timeout.
TransportFactory = Callable[[Instance, float], Transport]


def mux_transport(instance: Instance, connect_timeout: float) -> MuxTransport:
    """The default transport: every call to the instance multiplexed on one connection."""
    return MuxTransport(instance.host, instance.port, connect_timeout=connect_timeout)


def http_transport(instance: Instance, connect_timeout: float) -> HttpTransport:
    """HTTP/1.1 instead: a keep-alive connection pool to the instance, one call per
    connection at a time, over mutual TLS when this process has an identity."""
    return HttpTransport(instance.host, instance.port, connect_timeout=connect_timeout)


def plain_transport(instance: Instance, connect_timeout: float) -> HttpTransport:
    """Plain HTTP whatever this process's identity: for the local cloud's control API, which
    the `herd` command and browsers reach with the admin token, not a certificate."""
    return HttpTransport(instance.host, instance.port, connect_timeout=connect_timeout, tls=None)


class Caller:
    """The call path to one service: shared by every method of one driver, owned by it."""

    def __init__(
        self,
        service: str,
        resolver: Resolver,
        policy: CallPolicy,
        zone: str | None,
        *,
        owns_resolver: bool,
        metrics: ClientMetrics,
        rng: random.Random | None = None,
        token: str | None = None,
        transport: TransportFactory = mux_transport,
    ) -> None:
        self.service = service
        self.resolver = resolver
        self.policy = policy
        self.zone = zone
        self.breaker = CircuitBreaker(policy.breaker) if policy.breaker is not None else None
        self.bulkhead = Bulkhead(policy.max_concurrent, policy.limit)
        self.budget = RetryBudget(policy.budget)
        self.balancer = Balancer(zone, policy.ejection, rng=rng)
        self._owner = metrics
        self.metrics: DependencyMetrics = metrics.of(service)
        self._transports: TransportPool[Transport] = TransportPool(
            lambda instance: transport(instance, policy.connect_timeout)
        )
        self.loop = AttemptLoop(
            service,
            resolver,
            self.balancer,
            self.budget,
            Backoff(policy.backoff_base, policy.backoff_cap, rng),
            min_useful=policy.min_useful,
            metrics=self.metrics,
            hedge=policy.hedge,
            departed=self._transports.drop,
        )
        self._owns_resolver = owns_resolver
        self._resolving = False
        self._closed = False
        self._extra_headers = {H_TOKEN: token} if token else {}
        metrics.attach(self)
        _callers.add(self)

    def report(self) -> dict[str, Any]:
        """Breaker, budget, bulkhead and instances, for the metrics owner's `report()`."""
        breaker = self.breaker.snapshot() if self.breaker is not None else None
        return {
            "breaker": dataclasses.asdict(breaker) if breaker is not None else None,
            "budget": dataclasses.asdict(self.budget.snapshot()),
            "bulkhead": {
                "in_use": self.bulkhead.in_use,
                "max_concurrent": self.bulkhead.max_concurrent,
                "limit": self.bulkhead.limit,
            },
            "instances": len(self.resolver.instances(self.service)),
        }

    async def close(self) -> None:
        """Close every connection pool, and the resolver if this driver owns it."""
        if self._closed:
            return
        self._closed = True
        self._owner.detach(self)
        _callers.discard(self)
        await self._transports.close()
        if self._owns_resolver:
            await self.resolver.close()

    def call(self, spec: MethodSpec, args: msgspec.Struct) -> Coroutine[Any, Any, Any]:
        """Run the call path for one method call, in a span when the trace is recorded."""
        span = _spans.call(spec.service, spec.name)
        if not isinstance(span, _spans.Scope):
            # Nothing recorded: no coroutine around the call path's own.
            return self._call(spec, args)
        return self._call_in(span, spec, args)

    async def _call_in(self, span: _spans.Scope, spec: MethodSpec, args: msgspec.Struct) -> Any:
        with span:
            return await self._call(spec, args)

    async def _call(self, spec: MethodSpec, args: msgspec.Struct) -> Any:
        if self._closed:
            raise RuntimeError(f"the driver of {self.service} is closed")
        if not self._resolving:
            await self.resolver.start()
            self._resolving = True
        now = _clock.monotonic()
        deadline = _deadline.current()
        if deadline is None:
            deadline = now + self.policy.timeout
        if deadline - now < self.policy.min_useful:
            raise self._tag(DeadlineExceeded(f"{spec.service}.{spec.name}: no time left"), spec)
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            self.metrics.count("short_circuited")
            raise self._tag(CircuitOpen(f"{spec.service}: circuit open"), spec)
        if not self.bulkhead.try_acquire():
            self.metrics.count("rejected")
            raise self._tag(
                Rejected(f"{spec.service}: {self.bulkhead.limit} calls in flight"), spec
            )
        body = encode(args)
        # A partial rather than a closure: each attempt awaits `_attempt` itself, one coroutine
        # less to create and resume per call.
        send = functools.partial(self._attempt, spec, body, deadline)
        try:
            result = await self.loop.run(
                send,
                deadline,
                spec.options.attempts or self.policy.attempts,
                hedge=spec.options.idempotent,
            )
        except HerdError as exc:
            judged = blame(exc)
            if judged is Blame.ANSWER:
                self.metrics.count("service_error")
            else:
                self.metrics.count("timeout" if isinstance(exc, DeadlineExceeded) else "failure")
            if breaker is not None:
                # The caller's own fault and declared answers say nothing of the dependency.
                if judged in (Blame.INSTANCE, Blame.SERVICE):
                    breaker.record_failure()
                elif judged is not Blame.LOAD:
                    breaker.record_success()
            raise self._tag(exc, spec) from None
        except asyncio.CancelledError:
            # Cancelled as the deadline passed (by the caller's own deadline scope, or by the
            # caller one hop up hanging up at its deadline): the dependency did not answer in
            # time, and that is its failure here, where it was called. Cancellations well
            # before the deadline (a caller that lost interest) say nothing of it.
            if _cut_off_at_deadline(now, deadline):
                self.metrics.count("timeout")
                if breaker is not None:
                    breaker.record_failure()
            raise
        else:
            if breaker is not None:
                breaker.record_success()
            self.metrics.success += 1
            return result
        finally:
            took = _clock.monotonic() - now
            self.bulkhead.release(took)
            self.metrics.latency(took)

    def _tag(self, error: HerdError, spec: MethodSpec) -> HerdError:
        error.service = spec.service
        error.method = spec.name
        raised_by(error, self.metrics)
        return error

    async def _attempt(
        self, spec: MethodSpec, body: bytes, deadline: float, attempt: Attempt
    ) -> Any:
        instance = attempt.instance
        started = _clock.monotonic()
        remaining = deadline - started
        if remaining > self.policy.reply_reserve + self.policy.min_useful:
            remaining -= self.policy.reply_reserve
        cap = spec.options.timeout or self.policy.attempt_timeout
        budget = remaining if cap is None else min(remaining, cap)
        headers = {
            H_DEADLINE: str(max(1, int(budget * 1000))),
            H_ATTEMPT: str(attempt.number),
            **self._extra_headers,
        }
        route = _routing.current().header
        if route:
            headers[H_ROUTE] = route
        _spans.sending(headers, budget)
        transport = self._transports.get(instance)
        expiry = _deadline.Expiry(started + budget)
        try:
            async with expiry:
                status, answer = await transport.call(spec.service, spec.name, body, headers)
        except asyncio.CancelledError:
            # Cancelled as this attempt's share ran out: the instance did not answer in time,
            # and is blamed here, where it was called.
            if expiry.fired or _cut_off_at_deadline(started, expiry.at):
                attempt.failed = True
            raise
        except ConnectFailed as exc:
            raise Retry(exc) from exc
        except ConnectionLost as exc:
            if spec.options.idempotent:
                raise Retry(exc) from exc
            raise
        except TimeoutError as exc:
            attempt.failed = True
            if deadline - _clock.monotonic() <= self.policy.min_useful + self.policy.reply_reserve:
                raise DeadlineExceeded(
                    f"{spec.service}.{spec.name}: deadline exceeded at {instance.address}"
                ) from exc
            timeout = DeadlineExceeded(
                f"{spec.service}.{spec.name}: attempt timed out after {budget:.3f}s"
                f" at {instance.address}"
            )
            if spec.options.idempotent:
                raise Retry(timeout) from exc
            raise timeout from exc
        if status == 200:
            try:
                return spec.result_decoder.decode(answer)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                raise RemoteError(
                    spec.service, spec.name, f"bad result: {exc}", ErrorKind.BAD_RESULT
                ) from exc
        return self._raise_answer(spec, decode_error(answer), instance, deadline)

    def _raise_answer(
        self, spec: MethodSpec, error: ErrorBody, instance: Instance, deadline: float
    ) -> Any:
        kind = ErrorKind.parse(error.kind)
        if kind is ErrorKind.SERVICE_ERROR:
            declared = error_from_wire(error.type, error.message, error.fields)
            if declared is not None:
                raise declared
            raise RemoteError(spec.service, spec.name, f"{error.type}: {error.message}", kind)
        failure = _failure(spec, kind, error, instance)
        if error.retry and kind is not None and self._may_retry(spec, kind, deadline):
            raise Retry(failure)
        raise failure

    def _may_retry(self, spec: MethodSpec, kind: ErrorKind, deadline: float) -> bool:
        """Whether another instance may be tried after an error answer of `kind`."""
        if kind.retryable is Retryable.IDEMPOTENT:
            # The server ran out of this attempt's share; with time left, another instance may
            # still answer.
            left = deadline - _clock.monotonic()
            return spec.options.idempotent and left > self.policy.min_useful
        return kind.retryable is Retryable.ALWAYS


def _failure(
    spec: MethodSpec, kind: ErrorKind | None, error: ErrorBody, instance: Instance
) -> HerdError:
    """The typed error a failed answer raises."""
    if kind is ErrorKind.OVERLOADED:
        return Overloaded(f"{instance.address}: {error.message}")
    if kind is ErrorKind.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{spec.service}.{spec.name}: {error.message}")
    if kind is ErrorKind.FORBIDDEN:
        return Forbidden(spec.service, spec.name, error.message, error.kind)
    if blame_of_kind(error.kind) is Blame.CALLER:
        return BadRequest(spec.service, spec.name, error.message, error.kind)
    return RemoteError(spec.service, spec.name, error.message, error.kind)


def _cut_off_at_deadline(started: float, deadline: float) -> bool:
    """Whether a cancellation now came from the deadline rather than a caller losing interest.

    A remaining-time header does not count the time it spent in transit, so a caller hangs up
    at its deadline slightly before this process's copy of it passes: within a tenth of the
    span (at least 20 ms) of the deadline counts as at it.
    """
    now = _clock.monotonic()
    return now >= deadline - max(_LATE_FLOOR_S, 0.1 * (deadline - started))


def _bind(spec: MethodSpec) -> Callable[..., Coroutine[Any, Any, Any]]:
    make_args = spec.args_type

    async def call(self: _DriverBase, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = make_args(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{spec.service}.{spec.name}: {exc}") from None
        return await self._herd_caller.call(spec, bound)

    call.__name__ = spec.name
    call.__qualname__ = f"{spec.service}.{spec.name}"
    return call


class _DriverBase:
    _herd_caller: Caller

    async def aclose(self) -> None:
        """Close the driver's connection pools and release its share of the registry watch."""
        await self._herd_caller.close()


_driver_classes: dict[type[Interface], type[Any]] = {}
#: Every open driver of the process, so that an exiting process can close what is left.
_callers: weakref.WeakSet[Caller] = weakref.WeakSet()


async def close_all() -> None:
    """Close every driver still open (a service process does this as it exits)."""
    for caller in list(_callers):
        await caller.close()


def make_driver(
    interface: type[IfaceT],
    resolver: Resolver,
    *,
    owns_resolver: bool,
    zone: str | None = None,
    policy: CallPolicy | None = None,
    token: str | None = None,
    metrics: ClientMetrics | None = None,
    transport: TransportFactory = mux_transport,
) -> IfaceT:
    """A driver of `interface` over `resolver`; it closes the resolver only if it owns it.

    `transport` makes the connection to each instance (default: herd's frames, `mux_transport`;
    `http_transport` for HTTP/1.1; a simulation passes its network's)."""
    iface = interface_of(interface)
    specs = methods(iface)
    service = iface.__herd_name__
    cls = _driver_classes.get(iface)
    if cls is None:
        namespace: dict[str, Any] = {name: _bind(spec) for name, spec in specs.items()}
        namespace["__doc__"] = f"Driver of {iface.__name__}: calls instances of {service!r}."
        cls = _driver_classes[iface] = type(
            f"{iface.__name__}Driver", (_DriverBase, iface), namespace
        )
    driver = cast(_DriverBase, object.__new__(cls))
    driver._herd_caller = Caller(
        service,
        resolver,
        policy or CallPolicy(),
        zone,
        owns_resolver=owns_resolver,
        metrics=metrics or CLIENT_METRICS,
        token=token,
        transport=transport,
    )
    return cast(IfaceT, driver)


def static_driver(
    interface: type[IfaceT],
    address: str | Sequence[str | Instance],
    **options: Any,
) -> IfaceT:
    """A driver of a fixed set of instances (`host:port` strings or `Instance`s)."""
    service = interface_of(interface).__herd_name__
    addresses = [address] if isinstance(address, str) else address
    return make_driver(interface, StaticResolver(service, addresses), owns_resolver=True, **options)
