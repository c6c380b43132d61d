"""`herd.store` and `herd.events`: a store or the event topics on the engine this process was
given (`HERD_STORE_URL`)."""

from __future__ import annotations

from herd._process.config import StoreAddress, parse_store_url, settings
from herd._store.backend import Backend
from herd._store.events import Events, EventsBackend
from herd._store.events_sqlite import SQLiteEvents
from herd._store.sqlite import SQLiteBackend
from herd._store.store import MAX_VALUE_BYTES, Store, check_name


def address(where: str | StoreAddress | None = None) -> StoreAddress:
    """`where` (a `HERD_STORE_URL`-style URL or a parsed one); without it `HERD_STORE_URL`, or
    SQLite files under `HERD_HOME` without that (one machine)."""
    if isinstance(where, str):
        return parse_store_url(where)
    if where is not None:
        return where
    env = settings()
    return env.store or StoreAddress(directory=env.home / "stores")


def store(
    name: str,
    *,
    where: str | StoreAddress | None = None,
    timeout_s: float = 5.0,
    max_value_bytes: int = MAX_VALUE_BYTES,
) -> Store:
    """The store of service `name` on `where` (``sqlite://DIR`` or ``nats://host:port,...``;
    default: `HERD_STORE_URL`).

    On SQLite it is the file ``DIR/<name>.db``, shared by the service's instances on this
    machine; on NATS, buckets and streams named after the service, with the URL's replicas.
    Nothing is opened until the first operation. Close it with `await store.aclose()`.
    """
    found = address(where)
    check_name("store", name)
    if found.directory is not None:
        backend: Backend = SQLiteBackend(found.directory / f"{name}.db")
    else:
        # nats-py is an extra (`herd[store]`): imported only by a process that uses NATS.
        from herd._store.jetstream import JetStreamBackend

        backend = JetStreamBackend(found.servers, name, replicas=found.replicas)
    return Store(name, backend, timeout_s=timeout_s, max_value_bytes=max_value_bytes)


def events(
    *,
    where: str | StoreAddress | None = None,
    timeout_s: float = 5.0,
    max_value_bytes: int = MAX_VALUE_BYTES,
) -> Events:
    """The event topics on `where` (a URL as for `store`; default: `HERD_STORE_URL`), shared by
    every service there.

    On SQLite they are the file ``DIR/events.db`` (the services of one machine); on NATS, a
    stream per topic with the URL's replicas. Close it with `await events.aclose()`.
    """
    found = address(where)
    if found.directory is not None:
        backend: EventsBackend = SQLiteEvents(found.directory / "events.db")
    else:
        from herd._store.events_jetstream import JetStreamEvents

        backend = JetStreamEvents(found.servers, replicas=found.replicas)
    return Events(backend, timeout_s=timeout_s, max_value_bytes=max_value_bytes)
