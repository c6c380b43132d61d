"""Failure injection in the server pipeline: latency before the handler, and failures that look
exactly like the instance failing (kind `internal`).

Two sources, one effect:

- **Server-side faults** (Latency Monkey, Istio's fault injection): the control plane sets them
  on chosen instances through the token-protected `/herd/faults` endpoint (`herd chaos
  inject`). A fault names a method (or every request), a `percent` of matching requests it
  affects, a `latency_ms` those wait before their handler, an `error_rate` of them that fail, and
  how long it lasts; the instance ends it by itself when that has passed.
- **Request-scoped faults** (Netflix's FIT): the `fit` entry of the request's routing context,
  which travels through every hop, names faults for named hops of this request's path only:
  `fit=movie.presentation/error` fails every `movie.presentation` call the request makes, at
  whatever depth; `fit=movie/latency:300` delays every movie call by 300 ms;
  `fit=merch/error+movie/latency:300:error` combines them. Grammar (within the routing alphabet)::

      value  = fault *("+" fault)
      fault  = service ["." method] "/" effect *(":" effect)
      effect = "error" | "latency:" milliseconds

  The front door strips `x-herd-*` headers from outside requests, so only callers inside the
  system (tests, the edge) can ask for them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections.abc import Callable, Mapping

import msgspec

from herd._model.outcome import ErrorKind

#: Where the control plane sets an instance's faults (GET: what is in force; POST: replace).
FAULTS_PATH = "/herd/faults"
#: The routing entry that carries request-scoped faults.
FIT_KEY = "fit"
#: The most latency one fault may add: longer is an outage, not latency.
MAX_LATENCY_MS = 60_000.0


class InjectedFailure(Exception):
    """The failure an injected fault makes the handler's place: answered as `internal`."""


class Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One server-side fault, as `/herd/faults` takes it."""

    method: str = ""
    """The method (or web route, `GET /path`) it affects; "" for every request."""
    latency_ms: float = 0.0
    error_rate: float = 0.0
    """The share (0..1) of affected requests that fail."""
    percent: float = 100.0
    """The share (0..100) of matching requests affected."""
    duration_s: float = 60.0
    """How long it lasts from when the instance receives it."""

    def problem(self) -> str | None:
        """What is wrong with it; None when nothing is."""
        if not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            return f"latency_ms must be within 0..{MAX_LATENCY_MS:g}"
        if not 0 <= self.error_rate <= 1:
            return "error_rate is a share from 0 to 1"
        if not 0 < self.percent <= 100:
            return "percent must be within (0, 100]"
        if not 0 < self.duration_s <= 86_400:
            return "duration_s must be within (0, 86400]"
        if self.latency_ms == 0 and self.error_rate == 0:
            return "a fault adds latency, errors or both"
        return None


class _Armed(msgspec.Struct, frozen=True):
    fault: Fault
    ends: float


_decode_faults = msgspec.json.Decoder(list[Fault]).decode


class Injections:
    """The faults one server honours. `clock` (monotonic seconds) and `chance` (a uniform
    number in [0, 1)) are injectable for tests."""

    def __init__(
        self,
        service: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.service = service
        self._clock = clock
        self._chance = chance
        self._armed: list[_Armed] = []

    @property
    def armed(self) -> bool:
        """Whether any server-side fault is set (it may have expired): the pipeline's cheap
        test before it looks closer."""
        return bool(self._armed)

    def set(self, faults: list[Fault]) -> None:
        """Replace the faults in force (an empty list halts them all)."""
        now = self._clock()
        self._armed = [_Armed(fault, now + fault.duration_s) for fault in faults]

    def active(self) -> list[dict[str, object]]:
        """The faults in force, with the seconds each has left."""
        now = self._clock()
        return [
            {**msgspec.structs.asdict(a.fault), "left_s": round(a.ends - now, 3)}
            for a in self._armed
            if a.ends > now
        ]

    def command(self, method: str, body: bytes) -> tuple[int, bytes]:
        """Answer `/herd/faults` (the caller checked the token): GET lists, POST replaces with
        a JSON list of faults."""
        if method == "POST":
            try:
                faults = _decode_faults(body)
            except msgspec.DecodeError as exc:  # ValidationError is one
                return 400, _error(f"faults: {exc}")
            for fault in faults:
                if (problem := fault.problem()) is not None:
                    return 400, _error(f"fault {fault.method or '*'}: {problem}")
            self.set(faults)
        elif method != "GET":
            return 405, _error(f"{method[:16]}: GET or POST")
        return 200, json.dumps(self.active()).encode()

    def effect(self, method: str, route: Mapping[str, str]) -> tuple[float, bool]:
        """What to do to one request for `method` with routing context `route`: the seconds to
        wait before its handler, and whether it then fails."""
        delay, fail = 0.0, False
        if self._armed:
            now = self._clock()
            self._armed = [a for a in self._armed if a.ends > now]
            for armed in self._armed:
                fault = armed.fault
                if fault.method and fault.method != method:
                    continue
                if fault.percent < 100 and self._chance() * 100 >= fault.percent:
                    continue
                delay = max(delay, fault.latency_ms / 1000)
                fail = fail or (fault.error_rate > 0 and self._chance() < fault.error_rate)
        scoped = route.get(FIT_KEY)
        if scoped:
            for target, latency_ms, error in parse_fit(scoped):
                service, _, wanted = target.partition(".")
                if service == self.service and (not wanted or wanted == method):
                    delay = max(delay, latency_ms / 1000)
                    fail = fail or error
        return delay, fail

    async def apply(self, method: str, route: Mapping[str, str]) -> None:
        """Wait, then raise `InjectedFailure`, as the faults for this request say."""
        delay, fail = self.effect(method, route)
        if delay > 0:
            await asyncio.sleep(delay)
        if fail:
            raise InjectedFailure(f"{self.service}.{method}: injected failure")


@functools.lru_cache(maxsize=256)
def parse_fit(value: str) -> tuple[tuple[str, float, bool], ...]:
    """The faults in a `fit` routing value: (`service[.method]`, latency ms, error). A part that
    does not parse is ignored: a typo in a test's fault must not fail production requests.
    Cached: a request's every hop reads the same value."""
    faults = []
    for part in value.split("+"):
        target, sep, effects = part.partition("/")
        if not sep or not target:
            continue
        latency, error, tokens = 0.0, False, effects.split(":")
        index, valid = 0, True
        while index < len(tokens):
            token = tokens[index]
            if token == "error":
                error = True
            elif token == "latency" and index + 1 < len(tokens):
                index += 1
                try:
                    latency = min(float(tokens[index]), MAX_LATENCY_MS)
                except ValueError:
                    valid = False
                if not latency >= 0:
                    valid = False
            else:
                valid = False
            index += 1
        if valid and (latency > 0 or error):
            faults.append((target, latency, error))
    return tuple(faults)


def _error(message: str) -> bytes:
    return json.dumps({"error": ErrorKind.BAD_REQUEST, "message": message}).encode()
