"""Finding the ready line in output read in chunks: any chunking, any line length."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from herd._cloud.launch.process import ReadyLine
from herd._process.run import READY_PREFIX

ANNOUNCED = {"service": "deep", "address": "127.0.0.1:4321", "pid": 7}
READY = (READY_PREFIX + json.dumps(ANNOUNCED) + "\n").encode()


def feed_all(output: bytes, sizes: list[int]) -> dict[str, object] | None:
    """Feed `output` in chunks of the given sizes (cycling); the first announcement."""
    reader = ReadyLine()
    start, turn = 0, 0
    while start < len(output):
        size = sizes[turn % len(sizes)]
        announced = reader.feed(output[start : start + size])
        if announced is not None:
            return announced
        start, turn = start + size, turn + 1
    return None


@given(st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_the_ready_line_is_found_however_the_output_is_cut(sizes: list[int]) -> None:
    output = b"starting\n" + b"{'log': 1}\n" * 3 + READY + b"after\n"
    assert feed_all(output, sizes) == ANNOUNCED


def test_a_line_longer_than_any_buffer_before_the_ready_line_is_skipped() -> None:
    output = b"x" * (5 << 20) + b"\n" + READY
    assert feed_all(output, [64 * 1024]) == ANNOUNCED
    assert feed_all(output, [1 << 20, 7]) == ANNOUNCED


def test_only_a_line_that_starts_with_the_prefix_counts() -> None:
    quoted = b"log: " + READY
    assert feed_all(quoted, [len(quoted)]) is None
    assert feed_all(quoted + READY, [10]) == ANNOUNCED


def test_a_huge_line_that_starts_like_a_ready_line_is_not_held_or_taken() -> None:
    reader = ReadyLine()
    huge = READY_PREFIX.encode() + b'{"address": "' + b"9" * (1 << 20)
    assert reader.feed(huge) is None
    assert len(reader._line) == 0  # dropped once it was too long to be a ready line
    assert reader.feed(b'"}\n') is None
    assert reader.feed(READY) == ANNOUNCED


def test_a_ready_line_without_an_address_or_json_is_not_one() -> None:
    for line in (b"HERD_READY {not json}\n", b'HERD_READY {"service": "x"}\n', b"HERD_READY []\n"):
        assert ReadyLine().feed(line) is None
    assert ReadyLine().feed(b"HERD_READY {}\n" + READY) == ANNOUNCED
