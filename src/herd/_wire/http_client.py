"""Calling over HTTP/1.1: one keep-alive connection pool per instance (aiohttp)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from herd._wire.protocol import CONTENT_TYPE, ConnectFailed, ConnectionLost, rpc_path
from herd._wire.tls import HANDSHAKE_S, PROCESS, Tls, client_context_for


class HttpAnswer:
    """A forwarded request's answer: status, headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class HttpTransport:
    """One keep-alive connection pool to one instance; over TLS with `tls` (default: the
    process's identity, `herd._wire.tls.process_client_context`), so the handshake is paid once
    per connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        pool_size: int = 256,
        tls: Tls = PROCESS,
    ) -> None:
        self._tls = client_context_for(tls)
        scheme = "http" if self._tls is None else "https"
        self._base = URL.build(scheme=scheme, host=host, port=port)
        self._connect_timeout = connect_timeout + (HANDSHAKE_S if self._tls is not None else 0.0)
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[tuple[str, str], URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            keepalive_timeout=30.0,
            ssl=self._tls if self._tls is not None else False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            auto_decompress=False,
        )
        return self._session

    async def call(
        self, service: str, method: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """POST one RPC; the caller bounds the time with its own timeout (cancellation)."""
        session = self._session or self._open()
        url = self._urls.get((service, method))
        if url is None:
            url = self._urls[service, method] = self._base.with_path(rpc_path(service, method))
        headers["Content-Type"] = CONTENT_TYPE
        try:
            async with session.post(url, data=body, headers=headers) as response:
                return response.status, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self._base.authority}: {exc}") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ConnectionLost(f"connection to {self._base.authority} lost: {exc}") from exc

    async def forward(
        self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes
    ) -> HttpAnswer:
        """Send a plain HTTP request as given (the front door's proxying); no redirects."""
        session = self._session or self._open()
        url = self._base.join(URL(path_qs, encoded=True))
        try:
            async with session.request(
                method, url, data=body or None, headers=headers, allow_redirects=False
            ) as response:
                return HttpAnswer(response.status, response.headers, await response.read())
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self._base.authority}: {exc}") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ConnectionLost(f"connection to {self._base.authority} lost: {exc}") from exc

    async def close(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class InstanceSession:
    """Plain HTTP requests to instances (health, metrics, admin endpoints) that present this
    process's identity under mutual TLS when it has one: the control plane's scrapes and
    actions, and tools that act as it. Use as an async context manager."""

    def __init__(self, timeout: aiohttp.ClientTimeout, tls: Tls = PROCESS) -> None:
        context = client_context_for(tls)
        self.scheme = "http" if context is None else "https"
        connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=connector)

    def url(self, address: str, path: str) -> str:
        """The URL of `path` on the instance at `address`."""
        return f"{self.scheme}://{address}{path}"

    async def close(self) -> None:
        """Close the connections."""
        await self.session.close()

    async def __aenter__(self) -> InstanceSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
