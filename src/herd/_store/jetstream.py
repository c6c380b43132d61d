"""The replicated backend: NATS JetStream, three copies in three zones, quorum-acknowledged.

- **Records** are a key-value bucket per table (``<store>_<table>``, nats-py's `KeyValue`):
  a record's revision is its message's sequence in the bucket's stream, and a compare-and-set
  is a publish that expects the key's last sequence to be that revision, checked by the stream's
  leader. Writes carry a message id per call, so a retried attempt is never a second write.
  Reads go to the leader (the bucket is made without "direct get", which followers answer and
  may answer stale), so a write is seen by the next read from any instance.
- **Logs** are a stream per log (``LOG_<store>_<log>``); an entry is one message on subject
  ``herd.<store>.<log>.<key>.<id>``, published with ``Nats-Msg-Id`` (deduplicated by the
  stream within its window, even while the first copy is still in flight) and with
  ``Nats-Expected-Last-Subject-Sequence: 0`` (refused for good once that id is stored), so a
  retried append never adds a second entry. The newest entries of a key are read by an
  ephemeral consumer filtered to the key's subjects.
- **Placement**: every bucket and stream has `replicas` copies; the servers' ``unique_tag:
  "az"`` (see `herd._store.nats_server`) makes JetStream put each copy in another zone. A write
  is acknowledged once the stream's leader and a quorum of its replicas (2 of 3) stored it.
- **Failures that pass are retried** (no leader during an election, a server that died while
  the client fails over), each attempt bounded by `attempt_timeout_s`, until the store's
  deadline: every write is safe to repeat (see the store's idempotence rules).
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Sequence

import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from herd._store.connection import Connection, Pending, retrying
from herd._store.errors import Conflict

#: JetStream's "wrong last sequence": an expected-last-sequence header did not hold.
WRONG_LAST_SEQUENCE = (10071, 10164)
#: "stream name already in use with a different configuration": made by another build.
STREAM_EXISTS = 10058
#: The header naming the call that wrote a record (see `JetStreamBackend._write`).
WRITER = "Herd-Write"
#: How long a stream remembers a `Nats-Msg-Id` (a retry within it is no new entry).
DUPLICATE_WINDOW_S = 600.0
_FETCH_BATCH = 256


async def publish_once(
    js: JetStreamContext, stream: str, subject: str, msg_id: str, data: bytes, timeout_s: float
) -> tuple[int, bool, bytes]:
    """Publish `data` as the only message on `subject` ever: (its sequence, whether this call
    stored it, the data stored). Sent again, it finds the first copy: by `msg_id` within the
    stream's duplicate window, by the subject's last sequence after it."""
    headers = {
        api.Header.MSG_ID.value: msg_id,
        api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: "0",
    }
    try:
        ack = await js.publish(subject, data, headers=headers, timeout=timeout_s)
    except nats.js.errors.APIError as exc:
        if exc.err_code not in WRONG_LAST_SEQUENCE:
            raise
        stored = await js.get_msg(stream, subject=subject)
        return stored.seq or 0, False, stored.data or b""
    if not ack.duplicate:
        return ack.seq, True, data
    try:
        if ack.seq:
            stored = await js.get_msg(stream, seq=ack.seq)
            return stored.seq or 0, False, stored.data or b""
    except nats.js.errors.NotFoundError:
        pass
    raise Pending(f"{subject}: the first copy is in flight")


async def _written_by(js: JetStreamContext, stream: str, seq: int, token: str) -> bool:
    """Whether message `seq` of `stream` was written by the call holding `token` (False also
    while it is not stored yet: in flight on another writer's behalf, its sequence still 0)."""
    if not seq:
        return False
    try:
        first = await js.get_msg(stream, seq=seq)
    except nats.js.errors.NotFoundError:
        return False
    return bool(first.headers and first.headers.get(WRITER) == token)


class JetStreamBackend:
    """A store named `namespace` on the NATS cluster at `servers`."""

    def __init__(
        self,
        servers: Sequence[str],
        namespace: str,
        *,
        replicas: int = 3,
        max_value_bytes: int = 1 << 20,
        attempt_timeout_s: float = 1.0,
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
    ) -> None:
        self.namespace = namespace
        self.duplicate_window_s = duplicate_window_s
        self.replicas = replicas
        self.max_value_bytes = max_value_bytes
        self.attempt_timeout_s = attempt_timeout_s
        self._connection = Connection(servers)
        self._tables: dict[str, KeyValue] = {}
        self._logs: set[str] = set()
        self._cleanup: set[asyncio.Task[None]] = set()

    def bucket(self, table: str) -> str:
        """The key-value bucket holding `table`."""
        return f"{self.namespace}_{table}"

    def stream(self, log: str) -> str:
        """The stream holding `log`."""
        return f"LOG_{self.namespace}_{log}"

    def _subject(self, log: str, key: str, id: str) -> str:
        return f"herd.{self.namespace}.{log}.{key}.{id}"

    # -- records

    async def _kv(self, table: str) -> KeyValue:
        kv = self._tables.get(table)
        if kv is not None:
            return kv
        js = await self._connection.jetstream(self.attempt_timeout_s)
        try:
            kv = await js.create_key_value(
                bucket=self.bucket(table),
                replicas=self.replicas,
                history=1,
                direct=False,
                max_value_size=self.max_value_bytes,
                storage=api.StorageType.FILE,
            )
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS:
                raise
            kv = await js.key_value(self.bucket(table))
        self._tables[table] = kv
        return kv

    async def get(self, table: str, key: str) -> tuple[bytes, int] | None:
        async def attempt() -> tuple[bytes, int] | None:
            kv = await self._kv(table)
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return entry.value or b"", entry.revision or 0

        return await retrying(attempt)

    async def _conflict(self, table: str, key: str, expect: int) -> Conflict:
        found = await self.get(table, key)
        revision = 0 if found is None else found[1]
        return Conflict(
            f"table {table!r} key {key!r}: revision {revision}, not {expect}", revision=revision
        )

    async def put(self, table: str, key: str, data: bytes, expect: int | None) -> int:
        return await self._write(table, key, data, expect)

    async def delete(self, table: str, key: str, expect: int | None) -> None:
        if expect == 0:
            if await self.get(table, key) is not None:
                raise await self._conflict(table, key, expect)
            return
        await self._write(table, key, b"", expect, delete=True)

    async def _write(
        self, table: str, key: str, data: bytes, expect: int | None, *, delete: bool = False
    ) -> int:
        """Publish a record's new value (or its tombstone) on the bucket's subject for `key`.

        A compare-and-set's message id is the key and the revision it expects: the stream lets
        one message per id through, even while the first is still being replicated. nats-server
        2.9 checks an expected last sequence only against what it has applied, so two writers
        expecting the same revision could both pass that check while the first is in flight
        (measured: 76 of 200 concurrent increments lost); the id closes that gap. The write's
        own token (a header) tells an earlier attempt of this call, whose answer was lost, from
        another writer's.
        """
        subject = f"$KV.{self.bucket(table)}.{key}"
        stream = f"KV_{self.bucket(table)}"
        token = uuid.uuid4().hex

        async def attempt() -> int:
            await self._kv(table)
            js = await self._connection.jetstream(self.attempt_timeout_s)
            headers = {WRITER: token, api.Header.MSG_ID.value: token}
            if delete:
                headers[KV_OP] = KV_DEL
            last = await self._tombstone(js, stream, subject) if expect == 0 else expect
            if last is not None:
                headers[api.Header.MSG_ID.value] = f"{key}:{last}"
                headers[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value] = str(last)
            ack = await js.publish(subject, data, headers=headers, timeout=self.attempt_timeout_s)
            if not ack.duplicate:
                return ack.seq
            if await _written_by(js, stream, ack.seq, token):
                return ack.seq  # this call's earlier attempt
            # Another writer's, or ours not yet readable: the subject's last message tells.
            try:
                newest = await js.get_msg(stream, subject=subject)
            except nats.js.errors.NotFoundError:
                raise Pending(f"{subject}: the first write is in flight") from None
            if newest.headers and newest.headers.get(WRITER) == token:
                return newest.seq or 0
            if newest.seq != last:
                assert expect is not None
                raise await self._conflict(table, key, expect)
            raise Pending(f"{subject}: a write expecting revision {last} is in flight")

        try:
            return await retrying(attempt)
        except nats.js.errors.APIError as exc:
            if expect is None or exc.err_code not in WRONG_LAST_SEQUENCE:
                raise
            raise await self._conflict(table, key, expect) from None

    @staticmethod
    async def _tombstone(js: JetStreamContext, stream: str, subject: str) -> int:
        """What "absent" is for a compare-and-set on `subject`: the sequence of its tombstone
        if it was deleted, else 0 (never written; a live value then fails the check)."""
        try:
            last = await js.get_msg(stream, subject=subject)
        except nats.js.errors.NotFoundError:
            return 0
        if last.headers and last.headers.get(KV_OP) in (KV_DEL, KV_PURGE):
            return last.seq or 0
        return 0

    # -- logs

    async def _log(self, log: str) -> None:
        if log in self._logs:
            return
        js = await self._connection.jetstream(self.attempt_timeout_s)
        config = api.StreamConfig(
            name=self.stream(log),
            subjects=[f"herd.{self.namespace}.{log}.>"],
            num_replicas=self.replicas,
            storage=api.StorageType.FILE,
            duplicate_window=self.duplicate_window_s,
            max_msg_size=self.max_value_bytes,
            deny_delete=True,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != STREAM_EXISTS:
                raise
        self._logs.add(log)

    async def append(self, log: str, key: str, id: str, data: bytes) -> tuple[int, bool]:
        subject = self._subject(log, key, id)

        async def attempt() -> tuple[int, bool]:
            await self._log(log)
            js = await self._connection.jetstream(self.attempt_timeout_s)
            seq, applied, stored = await publish_once(
                js, self.stream(log), subject, f"{key}.{id}", data, self.attempt_timeout_s
            )
            if stored != data:
                raise Conflict(f"log {log!r} key {key!r}: id {id!r} holds another entry")
            return seq, applied

        return await retrying(attempt)

    async def entry(self, log: str, key: str, id: str) -> tuple[int, bytes] | None:
        async def attempt() -> tuple[int, bytes] | None:
            await self._log(log)
            js = await self._connection.jetstream(self.attempt_timeout_s)
            try:
                # The entry's subject holds it alone (see `publish_once`); the leader answers.
                found = await js.get_msg(self.stream(log), subject=self._subject(log, key, id))
            except nats.js.errors.NotFoundError:
                return None
            return found.seq or 0, found.data or b""

        return await retrying(attempt)

    async def last(self, log: str, key: str, count: int) -> list[tuple[int, str, bytes]]:
        async def attempt() -> list[tuple[int, str, bytes]]:
            await self._log(log)
            js = await self._connection.jetstream(self.attempt_timeout_s)
            stream = self.stream(log)
            try:
                consumer = await js.add_consumer(
                    stream,
                    api.ConsumerConfig(
                        filter_subject=self._subject(log, key, "*"),
                        ack_policy=api.AckPolicy.NONE,
                        deliver_policy=api.DeliverPolicy.ALL,
                        inactive_threshold=10.0,
                        mem_storage=True,
                        num_replicas=1,
                    ),
                    timeout=self.attempt_timeout_s,
                )
            except nats.js.errors.NotFoundError:
                # A stream just made is not known everywhere in the cluster at once.
                raise Pending(f"stream {stream} is being made") from None
            assert consumer.name is not None
            try:
                return await self._read(stream, consumer.name, consumer.num_pending or 0, count)
            finally:
                self._forget(stream, consumer.name)

        return await retrying(attempt)

    async def _read(
        self, stream: str, consumer: str, pending: int, count: int
    ) -> list[tuple[int, str, bytes]]:
        """The newest `count` of the `pending` entries the consumer has, newest first."""
        newest: collections.deque[tuple[int, str, bytes]] = collections.deque(maxlen=count)
        if pending == 0:
            return []
        js = await self._connection.jetstream(self.attempt_timeout_s)
        subscription = await js.pull_subscribe_bind(consumer=consumer, stream=stream)
        try:
            while pending > 0:
                batch = await subscription.fetch(
                    min(pending, _FETCH_BATCH), timeout=self.attempt_timeout_s
                )
                for message in batch:
                    meta = message.metadata
                    newest.append(
                        (meta.sequence.stream, message.subject.rpartition(".")[2], message.data)
                    )
                    pending = meta.num_pending
        finally:
            await subscription.unsubscribe()
        return list(reversed(newest))

    def _forget(self, stream: str, consumer: str) -> None:
        """Delete a reader's consumer without making the reader wait for it (the server drops
        it by itself after `inactive_threshold` if this fails)."""

        async def delete() -> None:
            try:
                js = await self._connection.jetstream(self.attempt_timeout_s)
                await js.delete_consumer(stream, consumer)
            except Exception:
                return

        task = asyncio.get_running_loop().create_task(delete())
        self._cleanup.add(task)
        task.add_done_callback(self._cleanup.discard)

    async def aclose(self) -> None:
        await asyncio.gather(*self._cleanup, return_exceptions=True)
        await self._connection.aclose()
