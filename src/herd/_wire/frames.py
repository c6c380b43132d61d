"""herd's frames: how calls travel between a driver and a server, many at once on one connection.

A connection opens with `PREFACE` from the client (the server answers with the same bytes), so a
server can tell it from HTTP on the same port by its first byte. Then both sides send frames:

    length (4 bytes, big-endian; the payload's) | type (1 byte) | call id (4 bytes) | payload

- `CALL` (client to server): a msgpack array `[service, method, metadata, body]`. The metadata is
  the same `x-herd-*` map HTTP carries as headers (remaining deadline in ms, attempt, token...),
  so anything a later issue adds to it travels without a change here. Names are lowercase (they
  are compared as sent, unlike HTTP headers).
- `REPLY` (server to client): a 2-byte status, then the encoded answer, as over HTTP.
- `CANCEL` (client to server): the caller gave up on that call; the server cancels its handler.
- `DRAIN` (server to client, call id 0): the server is stopping. It finishes what it has; the
  client sends nothing new on this connection.

Call ids are chosen by the client, unique among its calls in flight on the connection; 0 is the
connection itself.
"""

from __future__ import annotations

import asyncio
import struct

import msgspec

#: What a client sends first. The NUL byte cannot begin an HTTP request, so one byte decides.
PREFACE = b"\x00herd-mux/1\r\n"
HEADER = struct.Struct(">IBI")
HEADER_SIZE = HEADER.size
_REPLY_HEADER = struct.Struct(">IBIH")
_STATUS = struct.Struct(">H")

CALL = 1
REPLY = 2
CANCEL = 3
DRAIN = 4

#: Call ids wrap around below this (4 bytes on the wire); 0 is never a call.
MAX_CALL_ID = (1 << 32) - 1


class CallHead(msgspec.Struct, array_like=True):
    """A call frame's payload."""

    service: str
    method: str
    metadata: dict[str, str]
    body: bytes


class FrameError(Exception):
    """The peer broke the protocol: the connection cannot be trusted and is closed."""


_encode_into = msgspec.msgpack.Encoder().encode_into
_decode_call = msgspec.msgpack.Decoder(CallHead).decode


def call_frame(
    call_id: int, service: str, method: str, metadata: dict[str, str], body: bytes
) -> bytearray:
    """A `CALL` frame, encoded in one buffer."""
    out = bytearray(HEADER_SIZE)
    _encode_into(CallHead(service, method, metadata, body), out, HEADER_SIZE)
    HEADER.pack_into(out, 0, len(out) - HEADER_SIZE, CALL, call_id)
    return out


def reply_frame(call_id: int, status: int, body: bytes) -> bytes:
    """A `REPLY` frame."""
    return _REPLY_HEADER.pack(len(body) + 2, REPLY, call_id, status) + body


def control_frame(kind: int, call_id: int = 0) -> bytes:
    """A frame with no payload: `CANCEL` or `DRAIN`."""
    return HEADER.pack(0, kind, call_id)


def decode_call(payload: bytes | memoryview) -> CallHead:
    """A call frame's payload; `msgspec.DecodeError` (a `ValueError`) when malformed."""
    return _decode_call(payload)


def decode_reply(payload: bytes | memoryview) -> tuple[int, bytes]:
    """A reply frame's (status, body); `FrameError` when too short to hold a status."""
    if len(payload) < 2:
        raise FrameError("reply frame without a status")
    return _STATUS.unpack_from(payload)[0], bytes(payload[2:])


class FrameReader:
    """Splits a byte stream into frames, refusing any larger than `max_frame` bytes.

    `feed` returns the complete frames as `(type, call id, payload)`, each payload a view of the
    bytes received (no copy when a read holds whole frames). A frame over the limit is returned
    as `(type, id, None)` and its payload is skipped as it arrives, never held, so the reader of
    a call frame can answer that one call and keep the connection.
    """

    __slots__ = ("_buffer", "_skip", "max_frame")

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._skip = 0

    @property
    def skipping(self) -> int:
        """Bytes of an oversized frame still to skip."""
        return self._skip

    @property
    def partial(self) -> bool:
        """Whether a frame has begun and not yet ended."""
        return bool(self._buffer) or self._skip > 0

    def feed(self, data: bytes) -> list[tuple[int, int, memoryview | None]]:
        """The frames completed by `data`, in order."""
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        buffer = self._buffer
        if buffer:
            buffer += data
            view = memoryview(bytes(buffer))
            buffer.clear()
        else:
            view = memoryview(data)
        frames: list[tuple[int, int, memoryview | None]] = []
        size = len(view)
        pos = 0
        unpack = HEADER.unpack_from
        while size - pos >= HEADER_SIZE:
            length, kind, call_id = unpack(view, pos)
            start = pos + HEADER_SIZE
            if length > self.max_frame:
                frames.append((kind, call_id, None))
                end = start + length
                if end > size:
                    self._skip = end - size
                    return frames
                pos = end
                continue
            end = start + length
            if end > size:
                break
            frames.append((kind, call_id, view[start:end]))
            pos = end
        if pos < size:
            buffer += view[pos:]
        return frames


#: Frames that wait together for one write at most: a batch leaves as soon as it is this large,
#: so the peer works on the first frames while the rest are still being made (the two ends of a
#: busy connection run at once, each on its core, rather than taking turns over whole loop
#: iterations), at one system call per this many frames.
BATCH_FRAMES = 8


class FrameWriter:
    """Writes one connection's frames: a frame alone leaves at once; while other calls are in
    flight, the frames of one loop iteration leave together, `BATCH_FRAMES` at a time (fewer
    system calls under load, no added wait when idle)."""

    __slots__ = ("_loop", "_out", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._out: list[bytes | bytearray] = []
        self.transport: asyncio.Transport | None = None

    def send(self, frame: bytes | bytearray, *, others: bool) -> None:
        """Write `frame`; `others`: calls other than this frame's are in flight."""
        out = self._out
        if out:
            out.append(frame)
            if len(out) >= BATCH_FRAMES:
                self.flush()
        elif others:
            out.append(frame)
            self._loop.call_soon(self.flush)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def flush(self) -> None:
        """Write what waits, now."""
        out, self._out = self._out, []
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
