"""`herd.Events`: services tell each other what happened (played, rated), durably.

- **Publish** is acknowledged once the engine stored the event (on JetStream: a quorum of its
  zones). Each event has an `id` (made by the publisher, or a fresh one): publishing it again
  (a retry after a lost answer) stores nothing new; the same id with another value is
  `herd.Conflict`.
- **Subscribe** names a `group`: the group's position in the topic is kept by the engine, so a
  subscriber that was down (or restarted) goes on from where the group stopped, and the
  instances of one group share the work. Delivery is **at least once**: an event is
  acknowledged only after the handler returned; a handler that raises gets it again after
  `retry_s` (events after it in the same batch wait for it).
- **Idempotent handling by event id**: a subscription skips an event whose id it handled
  already (a redelivery, a second publish past the engine's memory of ids). It remembers the
  last `REMEMBERED` ids in memory, so after a crash between the handler and the
  acknowledgement one event may be handled twice: handlers make their writes idempotent by
  `event.id` (e.g. as the id of a `Log.append`).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import structlog

from herd._model.errors import ConfigurationError
from herd._store.store import MAX_VALUE_BYTES, bounded, check_key, check_name, encode

T = TypeVar("T")

log = structlog.get_logger("herd.events")

#: Event ids a subscription remembers having handled.
REMEMBERED = 10_000
#: The first wait after a failed fetch; it doubles up to the subscription's `retry_s`.
_FIRST_PAUSE_S = 0.05


class Delivery(Protocol):
    """One event as the engine handed it to a subscriber, to be acknowledged or retried."""

    id: str
    seq: int
    data: bytes
    published: float

    async def ack(self) -> None:
        """Handled: the group never gets it again."""
        ...

    async def retry(self, delay_s: float) -> None:
        """Not handled: give it (and what follows it) to the group again after `delay_s`."""
        ...


class EventsBackend(Protocol):
    """What `herd.Events` needs of its engine."""

    async def publish(self, topic: str, id: str, data: bytes) -> tuple[int, bool]:
        """Store the event unless `id` was published on `topic` already; (its position,
        whether this call stored it)."""
        ...

    async def fetch(self, topic: str, group: str, count: int, wait_s: float) -> list[Delivery]:
        """Up to `count` events the group has not acknowledged, oldest first, waiting up to
        `wait_s` for one; [] if none came."""
        ...

    async def aclose(self) -> None:
        """Close connections and files."""
        ...


class Event(msgspec.Struct, Generic[T], frozen=True):
    """An event as a handler gets it."""

    topic: str
    id: str
    value: T
    seq: int
    """Its position in the topic (grows with each event)."""
    published: float
    """When the engine stored it (Unix seconds)."""


class Events:
    """Publishing and subscribing to topics on one engine (`herd.events()` builds one from
    `HERD_STORE_URL`).

    Args:
        backend: `SQLiteEvents` or `JetStreamEvents`.
        timeout_s: the longest one publish may take when the caller has no deadline.
        max_value_bytes: the largest encoded event (`herd.TooLarge` above it).
    """

    def __init__(
        self,
        backend: EventsBackend,
        *,
        timeout_s: float = 5.0,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        if timeout_s <= 0 or max_value_bytes <= 0:
            raise ConfigurationError("events' timeout_s and max_value_bytes must be positive")
        self.backend = backend
        self.timeout_s = timeout_s
        self.max_value_bytes = max_value_bytes
        self._subscriptions: set[Subscription[Any]] = set()

    async def publish(self, topic: str, value: object, *, id: str | None = None) -> str:
        """Publish `value` on `topic`; its id (`id`, or a fresh one). Acknowledged once stored;
        sent again with the same id, nothing new is stored (with another value: `Conflict`)."""
        check_name("topic", topic)
        ident = check_key(id, "id") if id is not None else uuid.uuid4().hex
        # Publishing is a store write in all but name: the same size and deadline rules.
        data = encode(value, self.max_value_bytes, f"topic {topic}")
        owner = f"topic {topic}"
        await bounded(lambda: self.backend.publish(topic, ident, data), self.timeout_s, owner)
        return ident

    def subscribe(
        self,
        topic: str,
        value: type[T],
        handler: Callable[[Event[T]], Awaitable[object]],
        *,
        group: str,
        batch: int = 64,
        retry_s: float = 1.0,
    ) -> Subscription[T]:
        """Call `handler` with every event on `topic` that `group` has not handled, in the
        background until `Subscription.aclose` (or `Events.aclose`)."""
        check_name("topic", topic)
        check_name("group", group)
        if batch < 1 or retry_s < 0:
            raise ConfigurationError("a subscription's batch must be >= 1 and retry_s >= 0")
        subscription = Subscription(self, topic, value, handler, group, batch, retry_s)
        self._subscriptions.add(subscription)
        return subscription

    async def aclose(self) -> None:
        """Stop every subscription, then close the engine's connection."""
        await asyncio.gather(*(s.aclose() for s in list(self._subscriptions)))
        await self.backend.aclose()

    async def __aenter__(self) -> Events:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class Subscription(Generic[T]):
    """A group's handler running on a topic (`Events.subscribe`)."""

    def __init__(
        self,
        events: Events,
        topic: str,
        value: type[T],
        handler: Callable[[Event[T]], Awaitable[object]],
        group: str,
        batch: int,
        retry_s: float,
    ) -> None:
        self.topic = topic
        self.group = group
        self.handled = 0
        """Events the handler returned for."""
        self.skipped = 0
        """Events not handled again: their id was handled already."""
        self._events = events
        self._handler = handler
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(value)
        self._batch = batch
        self._retry_s = retry_s
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._stopping = False
        self._fetching = False
        # A fresh context: the subscriber's deadline must not end the subscription.
        self._task = asyncio.get_running_loop().create_task(
            self._run(), context=contextvars.Context()
        )

    async def _run(self) -> None:
        backend = self._events.backend
        pause = _FIRST_PAUSE_S
        while not self._stopping:
            self._fetching = True
            try:
                deliveries = await backend.fetch(self.topic, self.group, self._batch, 1.0)
            except Exception as exc:
                # The engine is down or electing: keep trying, the group's position is safe.
                log.warning("events fetch failed", topic=self.topic, error=repr(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, max(self._retry_s, _FIRST_PAUSE_S))
                continue
            finally:
                self._fetching = False
            pause = _FIRST_PAUSE_S
            for index, delivery in enumerate(deliveries):
                if self._stopping or not await self._handle(delivery):
                    start = index if self._stopping else index + 1
                    for later in deliveries[start:]:
                        await _quietly(later.retry(0.0))
                    break

    async def _handle(self, delivery: Delivery) -> bool:
        """Handle one delivery; whether it is done with (acknowledged)."""
        if delivery.id in self._seen:
            self.skipped += 1
            await _quietly(delivery.ack())
            return True
        try:
            event = Event(
                self.topic,
                delivery.id,
                self._decoder.decode(delivery.data),
                delivery.seq,
                delivery.published,
            )
            await self._handler(event)
        except Exception as exc:
            log.warning("event handler failed", topic=self.topic, id=delivery.id, error=repr(exc))
            await _quietly(delivery.retry(self._retry_s))
            return False
        self.handled += 1
        self._seen[delivery.id] = None
        if len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        # An ack lost here means one redelivery, which the ids remembered above skip.
        await _quietly(delivery.ack())
        return True

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Stop: an event being handled is finished and acknowledged first (for up to
        `grace_s`; then it is cancelled, and comes again later), the rest of its batch is
        handed back."""
        self._stopping = True
        if self._fetching:
            self._task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        except TimeoutError:
            self._task.cancel()
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise
        await asyncio.gather(self._task, return_exceptions=True)
        self._events._subscriptions.discard(self)


async def _quietly(acknowledgement: Awaitable[None]) -> None:
    """An ack or retry that fails is not the handler's failure: the engine redelivers."""
    try:
        await acknowledgement
    except Exception as exc:
        log.info("event acknowledgement failed", error=repr(exc))
