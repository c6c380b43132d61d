"""Configuration from the environment: every `HERD_*` variable is read here and nowhere else.

| variable | default | meaning |
|---|---|---|
| `HERD_REGISTRY` | none | the registry's `host:port`: drivers follow it, instances register |
| `HERD_ZONE` | none (`local` when registering) | this process's zone (same-zone-first) |
| `HERD_HOST` | `127.0.0.1` | address `herd.run` binds (loopback unless told otherwise) |
| `HERD_PORT` | `0` (any free port) | port `herd.run` binds |
| `HERD_INSTANCE` | `{service}-{hostname}-{pid}` | this instance's id in the registry |
| `HERD_GROUP` | `{service}-{version}` | this instance's server group |
| `HERD_VERSION` | `v000` | this instance's build |
| `HERD_LOG_LEVEL` | `INFO` | log level of herd's own entry points |
| `HERD_HOME` | `~/.herd` | where `herd up` keeps the state other `herd` commands read |
| `HERD_TLS_DIR` | none (plain TCP) | this process's identity: `cert.pem`, `key.pem`, `ca.pem` |
| `HERD_ALLOW` | none (any caller) | services that may call this instance, comma-separated |
| `HERD_CACHES` | none | memcached servers: `name@zone=host:port,...` (for `herd.cache`) |
| `HERD_STORE_URL` | `sqlite://$HERD_HOME/stores` | the engine of `herd.store` (below) |
| `HERD_TRACE_SHARE` | see docs/tracing.md | share of untraced requests that start a trace |
| `HERD_LIMIT` | `adaptive_priority` | what runs at once (below) |
| `HERD_MAX_INFLIGHT` | `512` | the fixed cap on requests in flight (the adaptive limit's ceiling) |

`HERD_STORE_URL` is `sqlite://DIR` (SQLite, one file per store in DIR: one machine) or
`nats://host:port,...[?replicas=N]` (a NATS JetStream cluster; N copies of every bucket and
stream, one per zone, default 3).

`HERD_LIMIT` is `adaptive_priority` (an adaptive limit under `HERD_MAX_INFLIGHT` whose queue
sheds the least critical first), `adaptive` (the same, first come last served), `fixed` (the
cap alone) or `none` (no limit: for measuring what a limit saves; docs/overload.md).

With `HERD_TLS_DIR` (the local cloud writes one per process, docs/security.md), servers take
calls only over mutual TLS from holders of a certificate of the same authority, and drivers
present this one; `HERD_ALLOW` needs it.

The local cloud sets the instance variables for every process it starts (`child_env`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from herd._model.errors import ConfigurationError
from herd._server.admission import Mode

REGISTRY = "HERD_REGISTRY"
ZONE = "HERD_ZONE"
HOST = "HERD_HOST"
PORT = "HERD_PORT"
INSTANCE = "HERD_INSTANCE"
GROUP = "HERD_GROUP"
VERSION = "HERD_VERSION"
LOG_LEVEL = "HERD_LOG_LEVEL"
HOME = "HERD_HOME"
TLS_DIR = "HERD_TLS_DIR"
ALLOW = "HERD_ALLOW"
CACHES = "HERD_CACHES"
STORE_URL = "HERD_STORE_URL"
TRACE_SHARE = "HERD_TRACE_SHARE"
LIMIT = "HERD_LIMIT"
MAX_INFLIGHT = "HERD_MAX_INFLIGHT"

#: A cache's servers: zone -> `host:port`s.
CacheZones = dict[str, list[str]]


@dataclasses.dataclass(frozen=True)
class StoreAddress:
    """A parsed `HERD_STORE_URL`: SQLite files in `directory`, or a NATS cluster's `servers`."""

    directory: Path | None = None
    servers: tuple[str, ...] = ()
    replicas: int = 3

    @property
    def url(self) -> str:
        """The `HERD_STORE_URL` value for this address (the inverse of `parse_store_url`)."""
        if self.directory is not None:
            return f"sqlite://{self.directory}"
        return f"nats://{','.join(self.servers)}?replicas={self.replicas}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The `HERD_*` variables of one environment, parsed and checked."""

    registry: str | None = None
    zone: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    instance: str | None = None
    group: str | None = None
    version: str = "v000"
    log_level: str = "INFO"
    home: Path = dataclasses.field(default_factory=lambda: Path.home() / ".herd")
    tls_dir: Path | None = None
    allow: frozenset[str] | None = None
    caches: dict[str, CacheZones] = dataclasses.field(default_factory=dict)
    """cache name -> zone -> memcached `host:port`s (`HERD_CACHES`)."""
    store: StoreAddress | None = None
    """Where stores and events live (`HERD_STORE_URL`); None: SQLite files under `home`."""
    trace_share: float | None = None
    """The share of requests without a trace context that start a recorded trace (None:
    tracing's default)."""
    limit: Mode = Mode.ADAPTIVE_PRIORITY
    max_inflight: int = 512


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `environ` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    raw_port = env.get(PORT, "0") or "0"
    if not (raw_port.isascii() and raw_port.isdigit()) or int(raw_port) > 65535:
        raise ConfigurationError(f"{PORT}={raw_port!r}: a port is a number from 0 to 65535")
    home = env.get(HOME)
    return Settings(
        registry=env.get(REGISTRY) or None,
        zone=env.get(ZONE) or None,
        host=env.get(HOST) or "127.0.0.1",
        port=int(raw_port),
        instance=env.get(INSTANCE) or None,
        group=env.get(GROUP) or None,
        version=env.get(VERSION) or "v000",
        log_level=(env.get(LOG_LEVEL) or "INFO").upper(),
        home=Path(home) if home else Path.home() / ".herd",
        tls_dir=Path(tls_dir) if (tls_dir := env.get(TLS_DIR)) else None,
        allow=_allow(env.get(ALLOW)),
        caches=parse_caches(env.get(CACHES, "")),
        store=parse_store_url(url) if (url := env.get(STORE_URL)) else None,
        trace_share=_share(env.get(TRACE_SHARE)),
        limit=Mode.parse(env.get(LIMIT) or Mode.ADAPTIVE_PRIORITY),
        max_inflight=_positive(MAX_INFLIGHT, env.get(MAX_INFLIGHT) or "512"),
    )


def _share(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        share = float(raw)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ConfigurationError(f"{TRACE_SHARE}={raw!r}: a share from 0 to 1 (e.g. 0.01)")
    return share


def _positive(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigurationError(f"{name}={raw!r}: a whole number of at least 1")
    return int(raw)


def parse_caches(value: str) -> dict[str, CacheZones]:
    """`name@zone=host:port,...` as cache name -> zone -> servers; ConfigurationError if bad."""
    caches: dict[str, CacheZones] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        where, _, server = entry.partition("=")
        name, _, zone = where.partition("@")
        host, _, port = server.rpartition(":")
        if not (name and zone and host and port.isascii() and port.isdigit()):
            raise ConfigurationError(
                f"{CACHES}: {entry!r} is not name@zone=host:port (e.g. flix@a=127.0.0.1:11311)"
            )
        caches.setdefault(name, {}).setdefault(zone, []).append(server)
    return caches


def parse_store_url(value: str) -> StoreAddress:
    """`sqlite://DIR` or `nats://host:port,...[?replicas=N]`; ConfigurationError if neither."""
    scheme, _, rest = value.strip().partition("://")
    if scheme == "sqlite" and rest:
        return StoreAddress(directory=Path(rest))
    if scheme == "nats" and rest:
        hosts, _, query = rest.partition("?")
        servers = tuple(s.strip().removeprefix("nats://") for s in hosts.split(",") if s.strip())
        replicas = 3
        for option in filter(None, query.split("&")):
            name, _, number = option.partition("=")
            if name != "replicas" or not (number.isascii() and number.isdigit()):
                raise ConfigurationError(f"{STORE_URL}: unknown option {option!r} (replicas=N)")
            replicas = int(number)
        if servers and all(_is_address(server) for server in servers) and 1 <= replicas <= 5:
            return StoreAddress(servers=servers, replicas=replicas)
    raise ConfigurationError(
        f"{STORE_URL}={value!r}: sqlite://DIR or nats://host:port,...[?replicas=N (1 to 5)]"
    )


def _is_address(server: str) -> bool:
    host, _, port = server.rpartition(":")
    return bool(host) and port.isascii() and port.isdigit() and int(port) <= 65535


def caches_value(caches: dict[str, CacheZones]) -> str:
    """The `HERD_CACHES` value for `caches` (the inverse of `parse_caches`)."""
    return ",".join(
        f"{name}@{zone}={server}"
        for name, zones in caches.items()
        for zone, servers in zones.items()
        for server in servers
    )


def _allow(raw: str | None) -> frozenset[str] | None:
    if raw is None:
        return None
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def child_env(
    *, registry: str, zone: str, group: str, version: str, instance: str, tls_dir: Path
) -> dict[str, str]:
    """The variables the local cloud gives one instance it starts."""
    return {
        TLS_DIR: str(tls_dir),
        REGISTRY: registry,
        ZONE: zone,
        GROUP: group,
        VERSION: version,
        INSTANCE: instance,
        PORT: "0",
    }
