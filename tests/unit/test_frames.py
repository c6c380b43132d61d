"""herd's frames: what one side encodes the other reads back, however the bytes are split."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd._wire import frames
from herd._wire.frames import CALL, CANCEL, REPLY, FrameReader


def read_all(reader: FrameReader, chunks: list[bytes]) -> list[tuple[int, int, bytes | None]]:
    out = []
    for chunk in chunks:
        for kind, call_id, payload in reader.feed(chunk):
            out.append((kind, call_id, None if payload is None else bytes(payload)))
    return out


def test_a_call_and_a_reply_round_trip() -> None:
    call = frames.call_frame(7, "movie", "presentation", {"x-herd-deadline-ms": "250"}, b"\x91\x01")
    reply = frames.reply_frame(7, 422, b"\x81\xa4kind\xa1x")
    (kind, call_id, payload), (kind2, call_id2, payload2) = read_all(
        FrameReader(1024), [bytes(call) + reply]
    )
    assert (kind, call_id, kind2, call_id2) == (CALL, 7, REPLY, 7)
    assert payload is not None and payload2 is not None
    head = frames.decode_call(payload)
    assert (head.service, head.method, head.metadata, head.body) == (
        "movie",
        "presentation",
        {"x-herd-deadline-ms": "250"},
        b"\x91\x01",
    )
    assert frames.decode_reply(payload2) == (422, b"\x81\xa4kind\xa1x")


@given(
    bodies=st.lists(st.binary(max_size=40), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_frames_split_anywhere_read_back_the_same(bodies: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frames.reply_frame(i + 1, 200, body) for i, body in enumerate(bodies))
    stream += frames.control_frame(CANCEL, 9)
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    got = read_all(FrameReader(64), chunks)
    expected = [(REPLY, i + 1, b"\x00\xc8" + body) for i, body in enumerate(bodies)]
    assert got == [*expected, (CANCEL, 9, b"")]


def test_an_oversized_frame_is_reported_and_its_payload_skipped_across_reads() -> None:
    reader = FrameReader(16)
    big = frames.HEADER.pack(100, CALL, 3) + b"x" * 100
    after = frames.reply_frame(4, 200, b"ok")
    stream = big + after
    got = read_all(reader, [stream[:20], stream[20:60], stream[60:]])
    assert got == [(CALL, 3, None), (REPLY, 4, b"\x00\xc8ok")]
    assert not reader.partial


def test_a_reply_too_short_for_a_status_is_a_protocol_error() -> None:
    with pytest.raises(frames.FrameError):
        frames.decode_reply(b"\x01")


def test_the_preface_cannot_begin_an_http_request() -> None:
    assert frames.PREFACE[:1] == b"\x00"


class _Recorded:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def test_a_full_batch_leaves_at_once_and_the_rest_at_the_end_of_the_iteration() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = _Recorded()
        writer = frames.FrameWriter(loop)
        writer.transport = transport  # type: ignore[assignment]
        sent = [bytes([n]) * 3 for n in range(frames.BATCH_FRAMES + 2)]
        for frame in sent:
            writer.send(frame, others=True)
        # The peer can start on the first batch while the rest are being made.
        assert transport.writes == [b"".join(sent[: frames.BATCH_FRAMES])]
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert transport.writes[1:] == [b"".join(sent[frames.BATCH_FRAMES :])]
    finally:
        loop.close()
