"""Events on NATS JetStream: a stream per topic, a durable pull consumer per group.

- The topic ``rated`` is the stream ``EVENTS_rated``; an event is one message on subject
  ``herd.events.rated.<id>``, published with ``Nats-Msg-Id`` and
  ``Nats-Expected-Last-Subject-Sequence: 0``, like a log's entry (`herd._store.jetstream`): a
  retried publish never stores a second copy. `replicas` copies, one per zone; events are kept
  for `max_age_s`.
- A group is a durable consumer (named after the group, replicated like its stream): its
  position and what is acknowledged live in the cluster, so a subscriber that died resumes
  where the group stopped, from any instance. Acknowledgement is explicit; an event not
  acknowledged within `ack_wait_s` is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from herd._store.connection import Connection, Pending, retrying
from herd._store.errors import Conflict
from herd._store.events import Delivery
from herd._store.jetstream import DUPLICATE_WINDOW_S, STREAM_EXISTS, publish_once

#: The longest a fetch waits for its group's consumer to be made.
_MAKE_GROUP_S = 10.0
#: How long a topic keeps its events: a group that is away longer misses the oldest.
MAX_AGE_S = 7 * 24 * 3600.0


class _JetStreamDelivery:
    def __init__(self, message: Msg) -> None:
        meta = message.metadata
        self._message = message
        self.id = message.subject.rpartition(".")[2]
        self.seq = meta.sequence.stream
        self.data = message.data
        self.published = meta.timestamp.timestamp()

    async def ack(self) -> None:
        await self._message.ack()

    async def retry(self, delay_s: float) -> None:
        await self._message.nak(delay=delay_s or None)


class JetStreamEvents:
    """Topics on the NATS cluster at `servers`."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        replicas: int = 3,
        max_age_s: float = MAX_AGE_S,
        ack_wait_s: float = 30.0,
        attempt_timeout_s: float = 1.0,
    ) -> None:
        self.replicas = replicas
        self.max_age_s = max_age_s
        self.ack_wait_s = ack_wait_s
        self.attempt_timeout_s = attempt_timeout_s
        self._connection = Connection(servers)
        self._topics: set[str] = set()
        self._groups: dict[tuple[str, str], JetStreamContext.PullSubscription] = {}

    @staticmethod
    def stream(topic: str) -> str:
        """The stream holding `topic`."""
        return f"EVENTS_{topic}"

    async def _topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        js = await self._connection.jetstream(self.attempt_timeout_s)
        try:
            await js.add_stream(
                name=self.stream(topic),
                subjects=[f"herd.events.{topic}.*"],
                num_replicas=self.replicas,
                storage=api.StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_age=self.max_age_s,
                deny_delete=True,
            )
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS:
                raise
        self._topics.add(topic)

    async def publish(self, topic: str, id: str, data: bytes) -> tuple[int, bool]:
        async def attempt() -> tuple[int, bool]:
            await self._topic(topic)
            js = await self._connection.jetstream(self.attempt_timeout_s)
            seq, applied, stored = await publish_once(
                js,
                self.stream(topic),
                f"herd.events.{topic}.{id}",
                id,
                data,
                self.attempt_timeout_s,
            )
            if stored != data:
                raise Conflict(f"topic {topic!r}: id {id!r} holds another event")
            return seq, applied

        return await retrying(attempt)

    async def _group(self, topic: str, group: str) -> JetStreamContext.PullSubscription:
        subscription = self._groups.get((topic, group))
        if subscription is not None:
            return subscription
        await self._topic(topic)
        js = await self._connection.jetstream(self.attempt_timeout_s)

        async def add() -> None:
            try:
                await js.add_consumer(
                    self.stream(topic),
                    api.ConsumerConfig(
                        durable_name=group,
                        ack_policy=api.AckPolicy.EXPLICIT,
                        ack_wait=self.ack_wait_s,
                        deliver_policy=api.DeliverPolicy.ALL,
                        max_ack_pending=1000,
                    ),
                )
            except nats.js.errors.NotFoundError:
                # A stream just made is not known everywhere in the cluster at once.
                raise Pending(f"stream {self.stream(topic)} is being made") from None

        await retrying(add)
        subscription = await js.pull_subscribe_bind(durable=group, stream=self.stream(topic))
        self._groups[(topic, group)] = subscription
        return subscription

    async def fetch(self, topic: str, group: str, count: int, wait_s: float) -> list[Delivery]:
        # Making the group retries what passes; a cluster that stays away is the caller's to log.
        async with asyncio.timeout(max(wait_s, _MAKE_GROUP_S)):
            subscription = await self._group(topic, group)
        try:
            messages = await subscription.fetch(count, timeout=wait_s)
        except nats.errors.TimeoutError:
            return []
        return [_JetStreamDelivery(message) for message in messages]

    async def aclose(self) -> None:
        for subscription in self._groups.values():
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        self._groups.clear()
        await self._connection.aclose()
