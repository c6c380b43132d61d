"""One port, two protocols: herd's frames for drivers, HTTP/1.1 for everything else.

Each accepted connection starts with a sniffer. The first byte decides, as HTTP/2's connection
preface does: a herd driver opens with `frames.PREFACE`, whose NUL byte begins no HTTP request;
anything else is handed, with the bytes already read, to aiohttp's connection handler, so web
routes, curl, health and metrics answer on the same port. Registry entries need no second port.

The connection cap counts every connection the port holds, whichever protocol.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from typing import cast

from herd._model.errors import ConfigurationError
from herd._wire import http_server
from herd._wire.frames import PREFACE
from herd._wire.http_server import GuardedServer, HttpServer
from herd._wire.mux_server import MuxConnection
from herd._wire.protocol import Dispatcher

#: How long aiohttp waits for its handlers when the listener closes (its runner's default).
_SHUTDOWN_S = 60.0


class _Sniffer(asyncio.Protocol):
    """A connection whose protocol is not known yet."""

    __slots__ = ("_listener", "_seen", "_timer", "_transport")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._seen = b""
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        listener = self._listener
        if listener.connections >= listener.max_connections:
            # Refused before anything is read: the cheapest answer to a connection flood.
            self._transport.abort()
            return
        listener._sniffing.add(self)
        loop = asyncio.get_running_loop()
        # As aiohttp does for a connection that never sends a request.
        self._timer = loop.call_later(http_server.KEEPALIVE_S, self.close)

    def data_received(self, data: bytes) -> None:
        seen = self._seen + data if self._seen else data
        known = min(len(seen), len(PREFACE))
        if seen[:known] != PREFACE[:known]:
            self._hand_over_http(seen)
        elif len(seen) >= len(PREFACE):
            self._hand_over(self._listener._mux_connection(), seen[len(PREFACE) :])
        else:
            # Part of the preface: the rest must follow as promptly as an HTTP head.
            self._seen = seen
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_later(
                http_server.HEADER_TIMEOUT_S, self.close
            )

    def _hand_over(self, protocol: asyncio.Protocol, seen: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._forget()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if seen and not transport.is_closing():
            protocol.data_received(seen)

    def _hand_over_http(self, seen: bytes) -> None:
        # aiohttp's handler starts its reading task in `connection_made`: the bytes already read
        # wait one loop iteration for it (as they would have), and nothing is read meanwhile, so
        # they stay first.
        transport = self._transport
        assert transport is not None
        self._forget()
        handler = self._listener._http_handler()
        transport.pause_reading()
        transport.set_protocol(handler)
        handler.connection_made(transport)

        def deliver() -> None:
            if not transport.is_closing():
                # Nothing can arrive between these two lines; the handler may pause again.
                transport.resume_reading()
                handler.data_received(seen)

        asyncio.get_running_loop().call_soon(deliver)

    def _forget(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._listener._sniffing.discard(self)

    def close(self) -> None:
        """Drop the connection before it said what it speaks."""
        if self._transport is not None:
            self._transport.abort()
        self._forget()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()


class Listener:
    """Serves a `Dispatcher` on one port: herd drivers' frames and HTTP/1.1 alike; both inside
    mutual TLS when given a context (`herd._wire.tls`), which the sniffer sees decrypted."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        host: str,
        port: int,
        *,
        max_body: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._dispatcher = dispatcher
        self._tls = tls
        self._host = host
        self._max_body = max_body
        self._http = HttpServer(dispatcher)
        self._web: GuardedServer | None = None
        self._server: asyncio.Server | None = None
        self._sniffing: set[_Sniffer] = set()
        self._mux: set[MuxConnection] = set()
        self._draining = False
        self.max_connections = http_server.MAX_CONNECTIONS
        self.port = port

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        self.max_connections = http_server.MAX_CONNECTIONS
        self._web = self._http.server(self.max_connections)
        try:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _Sniffer(self), self._host, self.port, reuse_address=True, ssl=self._tls
            )
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            # Free when checked, taken by the time we bind: a user's mistake, not a crash.
            raise ConfigurationError(
                f"{self._host}:{self.port} is taken by another process: choose another port"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    @property
    def connections(self) -> int:
        """Connections open now, whichever protocol."""
        web = len(self._web.connections) if self._web is not None else 0
        return web + len(self._mux) + len(self._sniffing)

    def drain(self) -> None:
        """Tell every driver connected that this server is stopping (and any that connects)."""
        self._draining = True
        for connection in self._mux:
            connection.drain()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for sniffer in list(self._sniffing):
            sniffer.close()
        for connection in list(self._mux):
            connection.close()
        web, self._web = self._web, None
        if web is not None:
            # As aiohttp's runner does: let requests read before closing start being handled.
            await asyncio.sleep(0)
            web.pre_shutdown()
            await web.shutdown(_SHUTDOWN_S)
        await asyncio.sleep(0)
        # A client that does not read would hold its connection's last answers, and the
        # server's close, for ever.
        for connection in list(self._mux):
            connection.abort()
        await server.wait_closed()

    def _http_handler(self) -> asyncio.Protocol:
        assert self._web is not None
        return self._web()

    def _mux_connection(self) -> MuxConnection:
        connection = MuxConnection(self._dispatcher, self._max_body, self._mux.discard)
        self._mux.add(connection)
        if self._draining:
            connection.draining = True
        return connection
