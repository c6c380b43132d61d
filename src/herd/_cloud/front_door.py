"""The front door: one fixed address that spreads HTTP requests over a service's instances.

It plays the part of the load balancer in front of Netflix's Zuul: users never address an
instance, and losing one loses no request, because the front door runs the driver's own attempt
loop (same zone first, least outstanding, outlier ejection, a retry on a different instance inside
a retry budget) and sends its own deadline downstream.

It is also the one way in from outside: it serves only the edge's web routes (never RPCs or
operations endpoints), strips every `x-herd-*` header a client sends, and caps body sizes.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from herd._client.attempts import (
    Attempt,
    AttemptLoop,
    Backoff,
    FailedAnswer,
    HedgePolicy,
    Retry,
)
from herd._client.balance import Balancer
from herd._client.budget import RetryBudget
from herd._client.pool import TransportPool
from herd._client.resolver import Resolver
from herd._cloud.app import CohortSpec, CriticalitySpec
from herd._cloud.criticality_rules import CriticalityRules
from herd._cloud.deploy.cohorts import Cohorts
from herd._cloud.traces.store import TraceStore
from herd._model import criticality
from herd._model import deadline as _deadline
from herd._model import routing as _routing
from herd._model.errors import DeadlineExceeded, HerdError, Overloaded, Unavailable
from herd._model.outcome import Blame, blame_of_status
from herd._model.stats import Sketch
from herd._server.admission import Admission, Mode
from herd._trace import spans as _spans
from herd._trace.context import TRACEPARENT, TRACERESPONSE, TRACESTATE
from herd._trace.sampling import RecordBudget
from herd._wire.http_client import HttpAnswer, HttpTransport
from herd._wire.http_server import GuardedServer, body_or_refusal, plain
from herd._wire.protocol import (
    H_ATTEMPT,
    H_DEADLINE,
    H_ROUTE,
    HEADER_PREFIX,
    RPC_PREFIX,
    ConnectFailed,
    ConnectionLost,
)

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)
#: Not forwarded as sent: the front door's own span is the parent of what it forwards.
_NOT_FORWARDED = _HOP_BY_HOP | {TRACEPARENT, TRACESTATE}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_IDEMPOTENCY_KEY = "Idempotency-Key"
#: Paths of a herd server that are not for the outside: RPCs and operations endpoints.
_INSIDE_PATHS = ("/metrics", "/health")
_INSIDE_PREFIXES = (RPC_PREFIX, "/herd/")


class FrontDoor:
    """An HTTP reverse proxy over the UP instances of one service.

    Outside clients speak plain HTTP to it; it calls instances with its own identity (`tls`, a
    client context from the app's authority), or plain TCP when the instances have none.
    """

    def __init__(
        self,
        service: str,
        resolver: Resolver,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        timeout_s: float = 2.0,
        attempts: int = 3,
        connect_timeout: float = 0.25,
        max_body: int = 1 << 20,
        cohorts: CohortSpec | None = None,
        criticality: CriticalitySpec | None = None,
        limit: Mode | str = Mode.ADAPTIVE_PRIORITY,
        max_inflight: int = 1024,
        tls: ssl.SSLContext | None = None,
        kept: TraceStore | None = None,
        traces_per_s: float = 10.0,
    ) -> None:
        self.service = service
        self._kept = kept
        self._recording = RecordBudget(traces_per_s)
        self._cohorts = Cohorts(cohorts or CohortSpec())
        self._criticality = CriticalityRules(criticality or CriticalitySpec())
        self.admission = Admission(Mode.parse(limit), ceiling=max_inflight, service=service)
        self._resolver = resolver
        self._host = host
        self.port = port
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._connect_timeout = connect_timeout
        self._max_body = max_body
        self._transports = TransportPool(
            lambda instance: HttpTransport(
                instance.host, instance.port, connect_timeout=connect_timeout, tls=tls
            )
        )
        self._loop = AttemptLoop(
            service,
            resolver,
            Balancer(None),
            RetryBudget(),
            Backoff(0.002, 0.025),
            min_useful=0.005,
            hedge=HedgePolicy(),
            departed=self._transports.drop,
        )
        self._runner: web.ServerRunner | None = None
        self._served = 0
        self._failed = 0
        self._latency = Sketch()

    @property
    def url(self) -> str:
        """Where users go."""
        return f"http://{self._host}:{self.port}/"

    async def start(self) -> None:
        """Bind the fixed address and start proxying."""
        self._runner = web.ServerRunner(
            GuardedServer(self._handle),
            handle_signals=False,
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port, reuse_address=True).start()

    async def close(self) -> None:
        """Stop proxying and close the connection pools."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._transports.close()

    def totals(self) -> dict[str, float]:
        """What users saw, cumulative since start: requests, those answered 5xx, and latency
        as the counts of a `Sketch`'s buckets (`q=<index>`), for the dashboard."""
        totals = {"web": float(self._served), "web_failed": float(self._failed)}
        for index, count in self._latency.counts.items():
            totals[f"q={index}"] = float(count)
        return totals

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        wall = time.time()
        record = self._recording.take()
        with _spans.front_door(
            request.method, request.path, request.headers, record=record
        ) as span:
            response = await self._answer(request)
            _spans.answered(span, response.status)
        if span is not None:
            response.headers[TRACERESPONSE] = _spans.response_header(span)
            if self._kept is not None and record:
                now = time.monotonic()
                self._kept.finished(
                    _spans.trace_id(span),
                    f"{request.method} {request.path[:64]}",
                    response.status,
                    wall,
                    now - started,
                    now,
                    asked=_spans.asked(request.headers),
                )
        self._served += 1
        self._failed += response.status >= 500
        self._latency.add(time.monotonic() - started)
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path in _INSIDE_PATHS or path.startswith(_INSIDE_PREFIXES):
            return plain(404, "not found")
        body = await body_or_refusal(request, self._max_body)
        if isinstance(body, web.Response):
            return body
        deadline = time.monotonic() + self._timeout_s
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _NOT_FORWARDED and not name.lower().startswith(HEADER_PREFIX)
        }
        # A write that carries an idempotency key is applied once however often it is sent:
        # it may be retried on another instance like a read (but is never hedged).
        safe = request.method in _SAFE_METHODS or _IDEMPOTENCY_KEY in request.headers

        async def send(attempt: Attempt) -> HttpAnswer:
            return await self._forward(request, body, headers, safe, deadline, attempt)

        try:
            hedge = request.method in _SAFE_METHODS
            # The request's cohort (the attempt loop picks the group by it) and criticality
            # (overloaded servers shed the least critical first): both travel on to every hop.
            level = self._criticality.level(request)
            entries = {**self._cohorts.entries(request), criticality.KEY: level}
            with _routing.routing(**entries):
                answer = await self._admitted(send, deadline, hedge, int(level))
        except DeadlineExceeded as exc:
            return plain(504, f"{self.service} did not answer in time: {exc}")
        except HerdError as exc:
            return plain(503, f"{self.service} unavailable: {exc}")
        response = web.Response(status=answer.status, body=answer.body)
        for key, value in answer.headers.items():
            if key.lower() not in _HOP_BY_HOP:
                response.headers.add(key, value)
        return response

    async def _admitted(
        self,
        send: Callable[[Attempt], Awaitable[HttpAnswer]],
        deadline: float,
        hedge: bool,
        level: int,
    ) -> HttpAnswer:
        """The attempt loop inside the front door's own admission: Zuul sheds at the edge too,
        least critical first, so that a spike costs the instances nothing it would refuse."""
        admission = self.admission
        if not admission.try_enter():
            await admission.enter(level, deadline)
        started = time.monotonic()
        try:
            return await self._loop.run(send, deadline, self._attempts, hedge=hedge)
        finally:
            admission.leave(time.monotonic() - started, admission.inflight)

    async def _forward(
        self,
        request: web.BaseRequest,
        body: bytes,
        headers: Mapping[str, str],
        safe: bool,
        deadline: float,
        attempt: Attempt,
    ) -> HttpAnswer:
        """One attempt at one instance."""
        instance = attempt.instance
        remaining = deadline - time.monotonic()
        sent = {
            **headers,
            H_DEADLINE: str(max(1, int(remaining * 1000))),
            H_ATTEMPT: str(attempt.number),
            H_ROUTE: _routing.current().header,
        }
        _spans.sending(sent, remaining)
        try:
            async with _deadline.Expiry(deadline):
                answer = await self._transports.get(instance).forward(
                    request.method, str(request.rel_url), sent, body
                )
        except ConnectFailed as exc:
            raise Retry(exc) from exc
        except ConnectionLost as exc:
            if safe:
                raise Retry(exc) from exc
            raise
        except TimeoutError as exc:
            attempt.failed = True
            raise DeadlineExceeded(f"{instance.id} did not answer in time") from exc
        status = answer.status
        # 503 is a refusal (overloaded, draining): the instance did not run the request.
        if status == 503:
            raise Retry(Overloaded(f"{instance.id} answered {status}"))
        if status == 502 and safe:
            raise Retry(Unavailable(f"{instance.id} answered {status}"))
        if blame_of_status(status) is Blame.INSTANCE:
            raise FailedAnswer(answer)
        return answer
