"""A TCP connection opened on its own, before any TLS handshake, so that the short connect
timeout measures only whether the host answers (docs/network.md: a partitioned host never
does, and must cost a caller the connect timeout, not the handshake's allowance too)."""

from __future__ import annotations

import asyncio
import contextlib
import socket


async def tcp_connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket to `host:port` (no delay on small writes); the
    caller bounds the time. Raises OSError when it cannot be made."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return sock
