"""`herd.cache`: a `herd.Cache` on the servers this process was given (`HERD_CACHES`)."""

from __future__ import annotations

from typing import TypeVar

from herd._cache.cache import Cache
from herd._cache.replica import MemcachedReplica, Replica
from herd._model.errors import ConfigurationError
from herd._process.config import CACHES, settings

T = TypeVar("T")


def cache(
    namespace: str,
    value: type[T],
    *,
    ttl_s: float = 300.0,
    name: str | None = None,
    zone: str | None = None,
    timeout_s: float = 0.1,
) -> Cache[T]:
    """A cache of `value`s under `namespace`, on cache `name`'s memcached servers.

    `name` is an app file's ``[[caches]]`` name; it may be left out when the process was given
    one cache. With no `HERD_CACHES` at all the cache always misses, so code that uses it runs
    unchanged without memcached (a test, a service started by hand). Reads go to `zone`
    (default: `HERD_ZONE`) first. Close it with `await cache.aclose()`.
    """
    env = settings()
    replicas: dict[str, Replica] = {}
    if env.caches:
        if name is None:
            if len(env.caches) > 1:
                raise ConfigurationError(
                    f"{CACHES} names several caches ({', '.join(env.caches)}): pass name="
                )
            name = next(iter(env.caches))
        zones = env.caches.get(name)
        if zones is None:
            raise ConfigurationError(f"{CACHES} has no cache {name!r}")
        replicas = {z: MemcachedReplica(servers) for z, servers in zones.items()}
    return Cache(
        namespace,
        value,
        replicas=replicas,
        zone=zone or env.zone,
        ttl_s=ttl_s,
        timeout_s=timeout_s,
    )
