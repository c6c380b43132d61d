"""The front door: one fixed address that spreads HTTP requests over a service's instances.

It plays the part of the load balancer in front of Netflix's Zuul: users never address an
instance, and losing one loses no request, because the front door uses herd's own balancing
(same zone first, least outstanding, outlier ejection), retries on a different instance inside a
retry budget, and a deadline it sends downstream.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from herd._client.balance import Balancer
from herd._client.budget import RetryBudget
from herd._client.resolver import Resolver
from herd._model.instance import Instance
from herd._wire.http import H_ATTEMPT, H_DEADLINE

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
)
_RETRYABLE_STATUS = frozenset({502, 503})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class FrontDoor:
    """An HTTP reverse proxy over the UP instances of one service."""

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
    ) -> None:
        self.service = service
        self._resolver = resolver
        self._host = host
        self.port = port
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._connect_timeout = connect_timeout
        self._balancer = Balancer(None)
        self._budget = RetryBudget()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self.served = 0
        self.retried = 0

    @property
    def url(self) -> str:
        """Where users go."""
        return f"http://{self._host}:{self.port}/"

    async def start(self) -> None:
        """Bind the fixed address and start proxying."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            auto_decompress=False,
        )
        self._runner = web.ServerRunner(
            web.Server(self._handle, access_log=None), handle_signals=False
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port, reuse_address=True).start()

    async def close(self) -> None:
        """Stop proxying."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        deadline = time.monotonic() + self._timeout_s
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        tried: list[str] = []
        zones: list[str] = []
        self._budget.record_request()
        failure = "no instance is available"
        for attempt in range(1, self._attempts + 1):
            if attempt > 1 and not self._budget.try_spend():
                break
            instance = self._balancer.pick(self._resolver.instances(self.service), tried, zones)
            if instance is None:
                break
            tried.append(instance.id)
            zones.append(instance.zone)
            if attempt > 1:
                self.retried += 1
            answer = await self._forward(request, body, headers, instance, deadline, attempt)
            if isinstance(answer, web.StreamResponse):
                self.served += 1
                return answer
            failure = answer
            if request.method not in _SAFE_METHODS and not failure.startswith("connect"):
                break
            if deadline - time.monotonic() < 0.005:
                break
        return web.Response(status=503, text=f"{self.service} unavailable: {failure}\n")

    async def _forward(
        self,
        request: web.BaseRequest,
        body: bytes,
        headers: dict[str, str],
        instance: Instance,
        deadline: float,
        attempt: int,
    ) -> web.StreamResponse | str:
        """One attempt: the response, or why it failed (a string) when another may succeed."""
        assert self._session is not None
        remaining = deadline - time.monotonic()
        sent = {**headers, H_DEADLINE: str(int(remaining * 1000)), H_ATTEMPT: str(attempt)}
        url = f"http://{instance.host}:{instance.port}{request.rel_url}"
        self._balancer.started(instance.id)
        ok = False
        try:
            async with asyncio.timeout(remaining):
                async with self._session.request(
                    request.method, url, data=body or None, headers=sent, allow_redirects=False
                ) as upstream:
                    payload = await upstream.read()
                    if upstream.status in _RETRYABLE_STATUS:
                        return f"{instance.id} answered {upstream.status}"
                    ok = upstream.status < 500
                    response = web.Response(status=upstream.status, body=payload)
                    for key, value in upstream.headers.items():
                        if key.lower() not in _HOP_BY_HOP:
                            response.headers.add(key, value)
                    return response
        except aiohttp.ClientConnectorError as exc:
            return f"connect to {instance.id} failed: {exc}"
        except (aiohttp.ClientError, ConnectionError) as exc:
            return f"{instance.id}: {exc}"
        except TimeoutError:
            return f"{instance.id} timed out"
        finally:
            group = sum(
                1 for i in self._resolver.instances(self.service) if i.group == instance.group
            )
            self._balancer.finished(instance.id, ok, group)
