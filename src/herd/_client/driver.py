"""The driver: an object with the interface's methods that calls remote instances.

One call goes through the path of DESIGN.md in order: deadline, breaker and bulkhead, balance,
attempt, retry on a different instance inside the retry budget, record. Fallbacks live above, in
the library layer (`herd.fallback`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast

import msgspec

from herd._client.balance import Balancer
from herd._client.breaker import Bulkhead, CircuitBreaker
from herd._client.budget import RetryBudget
from herd._client.metrics import CLIENT_METRICS, DependencyMetrics
from herd._client.policy import CallPolicy
from herd._client.resolver import Resolver, StaticResolver
from herd._model import deadline as _deadline
from herd._model.errors import (
    BadRequest,
    CircuitOpen,
    DeadlineExceeded,
    Forbidden,
    HerdError,
    Overloaded,
    Rejected,
    RemoteError,
    Unavailable,
)
from herd._model.instance import Instance
from herd._model.interface import Interface, MethodSpec, error_from_wire, interface_of, methods
from herd._wire.http import (
    H_ATTEMPT,
    H_DEADLINE,
    H_TOKEN,
    ConnectFailed,
    ConnectionLost,
    ErrorBody,
    HttpTransport,
    decode_error,
    encode,
)

IfaceT = TypeVar("IfaceT", bound=Interface)

_INSTANCE_FAILURES = frozenset({"internal", "overloaded", "deadline_exceeded"})
_BAD_REQUEST_KINDS = frozenset(
    {"bad_request", "unknown_method", "method_not_allowed", "too_large", "unsupported_media_type"}
)


class _Retryable(Exception):
    """An attempt failed in a way that another instance may not: carries the final error."""

    def __init__(self, error: HerdError) -> None:
        self.error = error


class Caller:
    """The call path to one service: shared by every method of one driver."""

    def __init__(
        self,
        service: str,
        resolver: Resolver,
        policy: CallPolicy,
        zone: str | None,
        rng: random.Random | None = None,
        token: str | None = None,
    ) -> None:
        self.service = service
        self.resolver = resolver
        self.policy = policy
        self.zone = zone
        self.breaker = CircuitBreaker(policy.breaker)
        self.bulkhead = Bulkhead(policy.max_concurrent)
        self.budget = RetryBudget(policy.budget)
        self.balancer = Balancer(zone, policy.ejection, rng=rng)
        self.metrics: DependencyMetrics = CLIENT_METRICS.of(service)
        self._transports: dict[str, HttpTransport] = {}
        self._rng = rng or random.Random()
        self._resolving = False
        self._known: Sequence[Instance] = ()
        self._extra_headers = {H_TOKEN: token} if token else {}

    def _transport(self, instance: Instance) -> HttpTransport:
        transport = self._transports.get(instance.id)
        if transport is None:
            transport = self._transports[instance.id] = HttpTransport(
                instance.host, instance.port, connect_timeout=self.policy.connect_timeout
            )
        return transport

    async def close(self) -> None:
        """Close every connection pool."""
        transports, self._transports = self._transports, {}
        for transport in transports.values():
            await transport.close()

    def _forget_departed(self, candidates: Sequence[Instance]) -> None:
        """Drop balancer state of instances that left (the resolver hands out a new list on
        every change), so churn from chaos and autoscaling does not accumulate."""
        present = {i.id for i in candidates}
        for instance in self._known:
            if instance.id not in present:
                self.balancer.forget(instance.id)
        self._known = candidates

    async def call(self, spec: MethodSpec, args: msgspec.Struct) -> Any:
        """Run the call path for one method call."""
        if not self._resolving:
            await self.resolver.start()
            self._resolving = True
        now = time.monotonic()
        deadline = _deadline.current()
        if deadline is None:
            deadline = now + self.policy.timeout
        if deadline - now < self.policy.min_useful:
            raise _tag(DeadlineExceeded(f"{spec.service}.{spec.name}: no time left to send"), spec)
        if not self.breaker.allow():
            self.metrics.count("short_circuited")
            raise _tag(CircuitOpen(f"{spec.service}: circuit open"), spec)
        if not self.bulkhead.try_acquire():
            self.metrics.count("rejected")
            raise _tag(
                Rejected(f"{spec.service}: {self.bulkhead.max_concurrent} calls in flight"), spec
            )
        try:
            result = await self._attempts(spec, encode(args), deadline)
        except (DeadlineExceeded, Unavailable, RemoteError) as exc:
            if isinstance(exc, BadRequest | Forbidden):
                self.breaker.record_success()
                self.metrics.count("failure")
            else:
                self.breaker.record_failure()
                self.metrics.count("timeout" if isinstance(exc, DeadlineExceeded) else "failure")
            raise _tag(exc, spec) from None
        except HerdError:
            # A declared error is an answer, not a failure of the dependency.
            self.breaker.record_success()
            self.metrics.count("service_error")
            raise
        else:
            self.breaker.record_success()
            self.metrics.success += 1
            return result
        finally:
            self.bulkhead.release()
            self.metrics.latency(time.monotonic() - now)

    async def _attempts(self, spec: MethodSpec, body: bytes, deadline: float) -> Any:
        attempts = spec.options.attempts or self.policy.attempts
        tried: list[str] = []
        zones: list[str] = []
        self.budget.record_request()
        last: HerdError | None = None
        candidates = self.resolver.instances(spec.service)
        if candidates is not self._known:
            self._forget_departed(candidates)
        for attempt in range(1, attempts + 1):
            instance = self.balancer.pick(candidates, tried, zones)
            if instance is None:
                if last is None:
                    raise Unavailable(f"no instance of {spec.service} is available")
                break
            if attempt > 1:
                if not self.budget.try_spend():
                    self.metrics.count("retries_denied")
                    break
                ceiling = min(
                    self.policy.backoff_cap, self.policy.backoff_base * 2 ** (attempt - 2)
                )
                pause = self._rng.uniform(0, ceiling)
                if deadline - time.monotonic() - pause < self.policy.min_useful:
                    break
                self.metrics.count("retries")
                await asyncio.sleep(pause)
            tried.append(instance.id)
            zones.append(instance.zone)
            try:
                return await self._attempt(spec, body, deadline, instance, attempt)
            except _Retryable as retryable:
                last = retryable.error
        assert last is not None
        raise last

    async def _attempt(
        self, spec: MethodSpec, body: bytes, deadline: float, instance: Instance, attempt: int
    ) -> Any:
        remaining = deadline - time.monotonic()
        if remaining < self.policy.min_useful:
            raise DeadlineExceeded(
                f"{spec.service}.{spec.name}: deadline passed before attempt {attempt}"
            )
        cap = spec.options.timeout or self.policy.attempt_timeout
        budget = remaining if cap is None else min(remaining, cap)
        headers = {
            H_DEADLINE: str(int(budget * 1000)),
            H_ATTEMPT: str(attempt),
            **self._extra_headers,
        }
        transport = self._transport(instance)
        self.balancer.started(instance.id)
        ok = False
        try:
            async with _deadline.Expiry(time.monotonic() + budget):
                status, answer = await transport.send(spec.path, body, headers)
        except asyncio.CancelledError:
            # The caller gave up: no verdict on the instance.
            ok = True
            raise
        except ConnectFailed as exc:
            raise _Retryable(exc) from exc
        except ConnectionLost as exc:
            if spec.options.idempotent:
                raise _Retryable(exc) from exc
            raise
        except TimeoutError as exc:
            if deadline - time.monotonic() <= self.policy.min_useful:
                raise DeadlineExceeded(
                    f"{spec.service}.{spec.name}: deadline exceeded at {instance.address}"
                ) from exc
            timeout = DeadlineExceeded(
                f"{spec.service}.{spec.name}: attempt timed out after {budget:.3f}s"
                f" at {instance.address}"
            )
            if spec.options.idempotent:
                raise _Retryable(timeout) from exc
            raise timeout from exc
        else:
            if status == 200:
                ok = True
                try:
                    return spec.result_decoder.decode(answer)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise RemoteError(
                        spec.service, spec.name, f"bad result: {exc}", "bad_result"
                    ) from exc
            error = decode_error(answer)
            # The instance answered; only its own failures count towards ejecting it.
            ok = error.kind not in _INSTANCE_FAILURES
            return self._raise_answer(spec, error, instance, deadline)
        finally:
            if ok:
                self.balancer.finished(instance.id, True, 0)
            else:
                group = instance.group
                members = self.resolver.instances(spec.service)
                self.balancer.finished(instance.id, False, sum(i.group == group for i in members))

    def _raise_answer(
        self, spec: MethodSpec, error: ErrorBody, instance: Instance, deadline: float
    ) -> Any:
        kind = error.kind
        if kind == "service_error":
            declared = error_from_wire(error.type, error.message, error.fields)
            if declared is not None:
                raise declared
            raise RemoteError(spec.service, spec.name, f"{error.type}: {error.message}", kind)
        if kind == "overloaded":
            overloaded = Overloaded(f"{instance.address}: {error.message}")
            if not error.retry:
                raise overloaded
            raise _Retryable(overloaded)
        if kind == "deadline_exceeded":
            late = DeadlineExceeded(f"{spec.service}.{spec.name}: {error.message}")
            # The server ran out of this attempt's share; with time left, another instance may
            # still answer.
            if spec.options.idempotent and deadline - time.monotonic() > self.policy.min_useful:
                raise _Retryable(late)
            raise late
        if kind == "forbidden":
            raise Forbidden(spec.service, spec.name, error.message, kind)
        if kind in _BAD_REQUEST_KINDS:
            raise BadRequest(spec.service, spec.name, error.message, kind)
        raise RemoteError(spec.service, spec.name, error.message, kind)


def _tag(error: HerdError, spec: MethodSpec) -> HerdError:
    error.service = spec.service
    error.method = spec.name
    return error


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
        """Close the driver's connection pools."""
        # A closed driver no longer speaks for its dependency in `dependencies()`.
        _callers.discard(self._herd_caller)
        await self._herd_caller.close()
        await self._herd_caller.resolver.close()


_driver_classes: dict[type[Interface], type[Any]] = {}
_callers: weakref.WeakSet[Caller] = weakref.WeakSet()


def dependencies() -> dict[str, dict[str, Any]]:
    """What this process's drivers see of each dependency: counters, latency, breaker, budget."""
    snapshot: dict[str, dict[str, Any]] = {}
    for caller in list(_callers):
        if caller.service in snapshot:
            continue
        snapshot[caller.service] = {
            **caller.metrics.snapshot(),
            "breaker": dataclasses.asdict(caller.breaker.snapshot()),
            "budget": dataclasses.asdict(caller.budget.snapshot()),
            "bulkhead": {
                "in_use": caller.bulkhead.in_use,
                "max_concurrent": caller.bulkhead.max_concurrent,
            },
            "instances": len(caller.resolver.instances(caller.service)),
        }
    return dict(sorted(snapshot.items()))


async def aclose(driver: object) -> None:
    """Close a driver's connection pools and stop following the registry for it."""
    if not isinstance(driver, _DriverBase):
        raise TypeError(f"{type(driver).__name__} is not a herd driver")
    await driver.aclose()


async def close_all() -> None:
    """Close every driver's connection pools (a service process does this as it exits)."""
    for caller in list(_callers):
        await caller.close()


def driver(
    interface: type[IfaceT],
    *,
    address: str | Sequence[str] | None = None,
    resolver: Resolver | None = None,
    zone: str | None = None,
    policy: CallPolicy | None = None,
    token: str | None = None,
) -> IfaceT:
    """The driver of an interface: the same methods and types, calling remote instances.

    Args:
        interface: the interface class (`Movies`), not an implementation.
        address: one `host:port` or a list of them, for a fixed set of instances.
        resolver: where instances come from (the registry); default: `address`, else the
            registry named by the `HERD_REGISTRY` environment variable.
        zone: this caller's zone, for same-zone-first balancing (default: `HERD_ZONE`).
        policy: timeouts, retries, breaker, budget and bulkhead settings.
        token: the admin token, sent with every call, for methods declared `admin=True`.
    """
    iface = interface_of(interface)
    specs = methods(iface)
    service = iface.__herd_name__
    zone = zone or os.environ.get("HERD_ZONE")
    if resolver is None:
        if address is not None:
            resolver = StaticResolver(service, [address] if isinstance(address, str) else address)
        else:
            # Imported here: the registry client is itself built from drivers.
            from herd._process.registry_client import registry_resolver

            resolver = registry_resolver()
    cls = _driver_classes.get(iface)
    if cls is None:
        namespace: dict[str, Any] = {name: _bind(spec) for name, spec in specs.items()}
        namespace["__doc__"] = f"Driver of {iface.__name__}: calls instances of {service!r}."
        cls = _driver_classes[iface] = type(
            f"{iface.__name__}Driver", (_DriverBase, iface), namespace
        )
    instance = cast(IfaceT, object.__new__(cls))
    caller = Caller(service, resolver, policy or CallPolicy(), zone, token=token)
    _callers.add(caller)
    instance._herd_caller = caller  # type: ignore[attr-defined]
    return instance
