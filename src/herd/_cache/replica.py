"""One zone's replica of a cache: the seam between `herd.Cache` and memcached.

`MemcachedReplica` talks to one zone's memcached servers through emcache (asyncio, maintained,
Rendezvous hashing over several servers with health tracking); tests may pass any `Replica`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import emcache

#: The most one memcached operation may take, even one nobody waits for any more.
OPERATION_TIMEOUT_S = 0.5


class Replica(Protocol):
    """What `herd.Cache` needs of one zone's servers. Any failure raises; the cache counts it."""

    async def get_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The values found among `keys`."""
        ...

    async def set(self, key: bytes, value: bytes, ttl: int, *, noreply: bool = False) -> None:
        """Store `value` for `ttl` seconds; with `noreply`, without waiting for the server."""
        ...

    async def delete(self, key: bytes) -> None:
        """Remove `key` (absent is fine)."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...


class MemcachedReplica:
    """One zone's memcached servers (`host:port`s), keys spread over them by emcache.

    The emcache client is made on first use, on the running loop (it belongs to one loop).
    An operation that fails while the client has no connection left and could not make one
    drops the client, and the next operation makes a new one: emcache would otherwise wait out
    its own reconnect back-off (1 s doubling to 60 s) after a server restart, while
    `herd.Cache` already rests a failed zone for a second. A client that is merely busy is kept.
    """

    def __init__(self, servers: Sequence[str], *, connection_timeout: float = 1.0) -> None:
        self.servers = list(servers)
        self._addresses = [_address(server) for server in servers]
        self._connection_timeout = connection_timeout
        self._client: emcache.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self._suspect = False
        """An operation failed since the client last looked healthy."""

    async def _connected(self) -> emcache.Client:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        async with self._lock:
            if self._client is None or self._loop is not loop:
                # herd.Cache stops waiting at the caller's deadline; emcache's own timeout
                # bounds how long an operation left to finish may keep its connection.
                self._client = await emcache.create_client(
                    self._addresses,
                    timeout=OPERATION_TIMEOUT_S,
                    connection_timeout=self._connection_timeout,
                    max_connections=8,
                )
                self._loop = loop
            return self._client

    async def get_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        client = await self._usable()
        try:
            if len(keys) == 1:
                item = await client.get(keys[0])
                return {} if item is None else {keys[0]: item.value}
            return {key: item.value for key, item in (await client.get_many(keys)).items()}
        except BaseException:
            self._drop(client)
            raise

    async def set(self, key: bytes, value: bytes, ttl: int, *, noreply: bool = False) -> None:
        client = await self._usable()
        try:
            await client.set(key, value, exptime=ttl, noreply=noreply)
        except BaseException:
            self._drop(client)
            raise

    async def delete(self, key: bytes) -> None:
        client = await self._usable()
        try:
            await client.delete(key)
        except emcache.NotFoundCommandError:
            pass
        except BaseException:
            self._drop(client)
            raise

    async def _usable(self) -> emcache.Client:
        """The client, unless it is cut off: then it is dropped and the operation fails at
        once (an operation would wait for a connection that emcache makes only after its
        back-off), and the next operation starts a fresh client."""
        client = await self._connected()
        # Asking emcache costs a copy of every pool's figures: only after a failure.
        if self._suspect:
            if _cut_off(client):
                self._drop(client)
                raise ConnectionError(f"memcached {', '.join(self.servers)}: no connection")
            self._suspect = len(client.cluster_managment().healthy_nodes()) < len(self.servers)
        return client

    def _drop(self, client: emcache.Client) -> None:
        """After a failure: forget a client that lost every connection and failed to make one
        (close it in the background); keep one that is merely busy, under suspicion."""
        self._suspect = True
        if _cut_off(client) and self._client is client:
            self._client = None
            task = asyncio.get_running_loop().create_task(client.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        await asyncio.gather(*self._closing, return_exceptions=True)


def _cut_off(client: emcache.Client) -> bool:
    """Every server's pool has lost its connections and failed to make a new one."""
    pools = client.cluster_managment().connection_pool_metrics().values()
    return all(m.cur_connections == 0 and m.connections_created_with_error for m in pools)


def _address(server: str) -> emcache.MemcachedHostAddress:
    host, _, port = server.rpartition(":")
    return emcache.MemcachedHostAddress(host, int(port))
