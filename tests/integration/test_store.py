"""`herd.Store`'s contract, the same on both backends: SQLite (a file in the test's directory)
and NATS JetStream (a real 3-member cluster, one member per zone, started by `engine`)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

import herd
from herd._process.config import StoreAddress
from tests.integration.nats_cluster import NatsCluster


class Play(msgspec.Struct, frozen=True):
    video: int
    seconds: float = 0.0


_names = itertools.count()


@pytest.fixture
async def store(engine: StoreAddress) -> AsyncIterator[herd.Store]:
    # A store of its own per test: the cluster is shared by the module's tests.
    async with herd.store(f"svc{next(_names)}", where=engine) as opened:
        yield opened


async def test_a_record_is_written_read_and_deleted(store: herd.Store) -> None:
    plays = store.records("plays", Play)
    assert await plays.get(7) is None
    first = await plays.put(7, Play(video=1))
    found = await plays.get(7)
    assert found == herd.Record("7", Play(video=1), first)
    second = await plays.put(7, Play(video=2))
    assert second > first
    assert (await plays.get("7")) == herd.Record("7", Play(video=2), second)
    await plays.delete(7)
    assert await plays.get(7) is None
    await plays.delete(7)  # absent is fine


async def test_compare_and_set_writes_only_at_the_revision_given(store: herd.Store) -> None:
    plays = store.records("plays", Play)
    created = await plays.put("v", Play(video=1), revision=0)
    with pytest.raises(herd.Conflict) as exists:
        await plays.put("v", Play(video=9), revision=0)
    assert exists.value.revision == created
    updated = await plays.put("v", Play(video=2), revision=created)
    with pytest.raises(herd.Conflict) as stale:
        await plays.put("v", Play(video=3), revision=created)
    assert stale.value.revision == updated
    with pytest.raises(herd.Conflict):
        await plays.delete("v", revision=created)
    assert (await plays.get("v")) == herd.Record("v", Play(video=2), updated)
    await plays.delete("v", revision=updated)
    # A revision from before the delete does not come back with a new record.
    recreated = await plays.put("v", Play(video=4), revision=0)
    assert recreated > updated
    with pytest.raises(herd.Conflict) as gone:
        await plays.put("v", Play(video=5), revision=updated)
    assert gone.value.revision == recreated


async def test_concurrent_compare_and_sets_lose_no_update(engine: StoreAddress) -> None:
    """Two writers (each its own connection or file handle, like two instances) increment one
    counter by read, then compare-and-set, again on a conflict: no increment is lost."""
    name = f"svc{next(_names)}"
    conflicts = 0

    async def increment(store: herd.Store, times: int) -> None:
        nonlocal conflicts
        counter = store.records("counters", int)
        for _ in range(times):
            while True:
                found = await counter.get("plays")
                value, revision = (0, 0) if found is None else (found.value, found.revision)
                try:
                    await counter.put("plays", value + 1, revision=revision)
                    break
                except herd.Conflict:
                    conflicts += 1

    async with herd.store(name, where=engine) as one, herd.store(name, where=engine) as two:
        # Both connected and the table made, so that neither is done before the other starts.
        for store in (one, two):
            await store.records("counters", int).get("plays")
        await asyncio.gather(increment(one, 40), increment(two, 40))
        found = await one.records("counters", int).get("plays")
    assert found is not None and found.value == 80
    assert conflicts > 0, "the writers never raced: the test shows nothing"


async def test_a_log_keeps_entries_per_key_newest_first(store: herd.Store) -> None:
    log = store.log("plays", Play)
    for n in range(5):
        appended = await log.append(1, Play(video=n), id=f"w{n}")
        assert appended.applied
    await log.append(2, Play(video=99), id="w0")  # the same id under another key is its own
    newest = await log.last(1, 3)
    assert [entry.value.video for entry in newest] == [4, 3, 2]
    assert [entry.id for entry in newest] == ["w4", "w3", "w2"]
    assert newest[0].seq > newest[1].seq > newest[2].seq
    assert [entry.value.video for entry in await log.last(1, 100)] == [4, 3, 2, 1, 0]
    assert [entry.value.video for entry in await log.last(2)] == [99]
    assert await log.last(3) == []
    assert await log.last(1, 0) == []


async def test_an_append_sent_again_is_stored_once(store: herd.Store) -> None:
    log = store.log("plays", Play)
    first = await log.append(7, Play(video=1), id="key-1")
    again = await log.append(7, Play(video=1), id="key-1")
    assert first.applied and not again.applied
    assert again.seq == first.seq
    with pytest.raises(herd.Conflict):
        await log.append(7, Play(video=2), id="key-1")
    assert [entry.value for entry in await log.last(7)] == [Play(video=1)]
    # What the refused append found under its id, and nothing under an id never used.
    assert await log.entry(7, "key-1") == herd.Entry("7", "key-1", Play(video=1), first.seq)
    assert await log.entry(7, "key-2") is None
    assert await log.entry(8, "key-1") is None


async def test_an_append_sent_again_after_the_streams_memory_is_stored_once(
    shared_nats: NatsCluster,
) -> None:
    """JetStream forgets a message id after its duplicate window; the append's expected-last-
    sequence header refuses the second copy for good."""
    from herd._store.jetstream import JetStreamBackend

    backend = JetStreamBackend(shared_nats.servers, "forgetful", duplicate_window_s=0.2)
    async with herd.Store("forgetful", backend) as store:
        log = store.log("plays", Play)
        first = await log.append(7, Play(video=1), id="key-1")
        # Past the window: there is no event to await, only time to let pass.
        await asyncio.sleep(0.6)
        again = await log.append(7, Play(video=1), id="key-1")
        assert first.applied and not again.applied
        assert again.seq == first.seq
        assert len(await log.last(7)) == 1


@pytest.mark.parametrize("key", ["a.b", "a b", "", "x" * 129, "a*", "a>", "é", "a/b"])
async def test_a_key_with_forbidden_characters_is_refused_before_sending(
    store: herd.Store, key: str
) -> None:
    plays = store.records("plays", Play)
    log = store.log("plays", Play)
    with pytest.raises(herd.InvalidKey):
        await plays.put(key, Play(video=1))
    with pytest.raises(herd.InvalidKey):
        await plays.get(key)
    with pytest.raises(herd.InvalidKey):
        await log.append(key, Play(video=1), id="ok")
    with pytest.raises(herd.InvalidKey):
        await log.append("ok", Play(video=1), id=key)


async def test_a_value_over_the_limit_is_refused_and_nothing_is_written(
    store: herd.Store,
) -> None:
    blobs = store.records("blobs", bytes)
    with pytest.raises(herd.TooLarge):
        await blobs.put("big", b"x" * (store.max_value_bytes + 1))
    assert await blobs.get("big") is None
    await blobs.put("fits", b"x" * (store.max_value_bytes - 16))
    with pytest.raises(herd.TooLarge):
        await store.log("blobs", bytes).append("big", b"x" * (store.max_value_bytes + 1), id="1")


async def test_a_store_that_is_down_fails_under_the_callers_deadline(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    nobody = StoreAddress(servers=(f"127.0.0.1:{_closed_port()}",), replicas=1)
    for down in (StoreAddress(directory=blocker), nobody):
        async with herd.store("down", where=down, timeout_s=0.5) as store:
            plays = store.records("plays", Play)
            started = time.monotonic()
            with pytest.raises(herd.StoreUnavailable):
                await plays.put(1, Play(video=1))
            assert time.monotonic() - started < 2.0
            started = time.monotonic()
            with (
                pytest.raises((herd.StoreUnavailable, herd.DeadlineExceeded)),
                herd.deadline(0.2),
            ):
                await store.log("plays", Play).last(1)
            assert time.monotonic() - started < 1.0


async def test_the_nats_store_times_out_at_the_callers_deadline(tmp_path: Path) -> None:
    nobody = StoreAddress(servers=(f"127.0.0.1:{_closed_port()}",), replicas=1)
    async with herd.store("down", where=nobody) as store:
        started = time.monotonic()
        with pytest.raises(herd.DeadlineExceeded), herd.deadline(0.2):
            await store.records("plays", Play).get(1)
        assert 0.15 < time.monotonic() - started < 1.0


def _closed_port() -> int:
    from tests.helpers import free_port

    return free_port()
