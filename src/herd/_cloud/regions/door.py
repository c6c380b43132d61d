"""The global front door: the one address users reach when the app runs in several regions.

It plays the part of Netflix's DNS and edge steering in front of its regional Zuuls: each
request goes to a region's own front door, the visitor's home region unless the weights or its
health say otherwise (`Steering`); a region that cannot be reached (nothing listens: the region
is gone) is skipped for the next at once, as is a refusal (502/503) of a request safe to send
again. Each answer says which region served it (`X-Herd-Region`).
"""

from __future__ import annotations

import asyncio
import random
import time

from aiohttp import web

from herd._cloud.app import GlobalDoorSpec
from herd._cloud.regions.steering import Steering
from herd._model.tasks import cancel_and_wait
from herd._wire.http_client import HttpTransport
from herd._wire.http_server import GuardedServer, body_or_refusal, plain
from herd._wire.protocol import ConnectFailed, ConnectionLost

#: The header of every answer that names the region that served it.
REGION_HEADER = "X-Herd-Region"
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_IDEMPOTENCY_KEY = "Idempotency-Key"
#: Health checks failed in a row before a region is steered around.
_UNHEALTHY_AFTER = 2


class GlobalFrontDoor:
    """A reverse proxy over the regions' front doors, steered by `steering`."""

    def __init__(self, spec: GlobalDoorSpec, regions: list[str], *, max_body: int = 1 << 20):
        self.spec = spec
        self.steering = Steering(regions, spec.weights)
        self._doors: dict[str, HttpTransport] = {}
        self._misses = dict.fromkeys(regions, 0)
        self._max_body = max_body
        self.served = dict.fromkeys(regions, 0)
        """Requests each region answered, since start."""
        self.failed = 0
        """Requests no region answered (5xx, or none reachable)."""
        self._runner: web.ServerRunner | None = None
        self._health: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where users go."""
        return f"http://{self.spec.host}:{self.spec.port}/"

    def attach(self, region: str, host: str, port: int) -> None:
        """Send `region`'s share to its front door at `host:port` (a region (re)started)."""
        self._doors[region] = HttpTransport(host, port, connect_timeout=0.25, tls=None)
        self._misses[region] = 0
        self.steering.healthy[region] = True

    async def detach(self, region: str) -> None:
        """Send nothing more to `region` (it is gone)."""
        self.steering.healthy[region] = False
        door = self._doors.pop(region, None)
        if door is not None:
            await door.close()

    async def start(self) -> None:
        """Bind the address, start proxying and checking the regions' health."""
        self._runner = web.ServerRunner(GuardedServer(self._handle), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.spec.host, self.spec.port, reuse_address=True)
        await site.start()
        self._health = asyncio.create_task(self._check_health())

    async def close(self) -> None:
        """Stop proxying and checking."""
        if self._health is not None:
            await cancel_and_wait(self._health)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for region in list(self._doors):
            await self.detach(region)

    async def _check_health(self) -> None:
        while True:
            await asyncio.sleep(self.spec.health_every_s)
            await self.check_health()

    async def check_health(self) -> None:
        """Ask every region's front door once, and steer by what they answer."""
        await asyncio.gather(*(self._check(region) for region in list(self._doors)))

    async def _check(self, region: str) -> None:
        door = self._doors.get(region)
        if door is None:
            return
        try:
            async with asyncio.timeout(1.0):
                answer = await door.forward("GET", self.spec.health_path, {}, b"")
            ok = answer.status < 500
        except (TimeoutError, ConnectFailed, ConnectionLost):
            ok = False
        self._misses[region] = 0 if ok else self._misses[region] + 1
        self.steering.healthy[region] = self._misses[region] < _UNHEALTHY_AFTER

    def _visitor(self, request: web.BaseRequest) -> str:
        spec = self.spec
        found = (
            (spec.visitor_query and request.query.get(spec.visitor_query))
            or (spec.visitor_header and request.headers.get(spec.visitor_header))
            or (spec.visitor_cookie and request.cookies.get(spec.visitor_cookie))
        )
        # Without a visitor id a request has no home to keep: any bucket will do.
        return found or str(random.randrange(1 << 30))

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await body_or_refusal(request, self._max_body)
        if isinstance(body, web.Response):
            return body
        named = request.headers.get(self.spec.home_header, "") if self.spec.home_header else ""
        order = self.steering.order(self._visitor(request), named)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        safe = request.method in _SAFE_METHODS or _IDEMPOTENCY_KEY in request.headers
        deadline = time.monotonic() + self.spec.timeout_s
        answer, why, status = None, "no region is reachable", 503
        for region in order:
            door = self._doors.get(region)
            remaining = deadline - time.monotonic()
            if door is None or remaining <= 0:
                continue
            try:
                async with asyncio.timeout(remaining):
                    answer = await door.forward(request.method, str(request.rel_url), headers, body)
            except ConnectFailed as exc:
                why = str(exc)
                continue
            except ConnectionLost as exc:
                why = str(exc)
                if safe:
                    continue
                break
            except TimeoutError:
                why = f"region {region} did not answer in {self.spec.timeout_s:g} s"
                status = 504
                break
            if answer.status in (502, 503) and safe and region != order[-1]:
                why = f"region {region} answered {answer.status}"
                answer = None
                continue
            self.served[region] += 1
            self.failed += answer.status >= 500
            response = web.Response(status=answer.status, body=answer.body)
            for key, value in answer.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers.add(key, value)
            response.headers[REGION_HEADER] = region
            return response
        self.failed += 1
        return plain(status, f"unavailable: {why}")
