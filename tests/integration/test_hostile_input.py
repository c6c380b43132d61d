"""Hostile input against every port of a running flix cloud (`herd up`): an instance's RPCs, the
edge's web routes (direct and through the front door), the registry and the control API.

Every bad request gets a typed answer (its kind in the body), never a 500 or a traceback, and
every process keeps serving. docs/security.md lists these cases; a fuzz test then throws random
bytes, random msgpack and random headers at a live instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herd._wire import frames
from herd._wire.frames import CALL, CANCEL, DRAIN, HEADER, PREFACE, call_frame, control_frame
from herd._wire.protocol import decode_error
from tests.integration.cloud_helpers import Cloud, write_app

pytestmark = pytest.mark.timeout(240)

MSGPACK = "application/x-msgpack"
MiB = 1 << 20


def pack(*args: Any) -> bytes:
    return msgspec.msgpack.encode(list(args))


def nested(depth: int) -> bytes:
    """A msgpack list nested `depth` deep: `[[[...]]]`."""
    return b"\x91" * depth + b"\xc0"


@dataclass
class Case:
    """One hostile request, the port it goes to, and the answers it may get."""

    name: str
    port: str  # "rpc" (a movie instance), "edge", "door", "registry", "control"
    path: str
    statuses: set[int]
    kind: str | None = None  # the error kind the body must carry (None: not a herd answer)
    method: str = "POST"
    body: bytes = b""
    headers: dict[str, str | bytes] = field(default_factory=lambda: {"Content-Type": MSGPACK})


def rpc_headers(**extra: str | bytes) -> dict[str, str | bytes]:
    return {"Content-Type": MSGPACK, **extra}


#: A well-formed registry entry, as a caller could send it.
ENTRY = {
    "id": "intruder-1",
    "service": "movie",
    "group": "movie-v001",
    "version": "v001",
    "zone": "a",
    "host": "127.0.0.1",
    "port": 9,
    "status": "UP",
}
PRESENT = "/rpc/movie/presentation"
RENEW = "/rpc/registry/renew"
SCALE = "/rpc/cloud/scale"

CASES = [
    # -- an instance's RPCs (movie) --------------------------------------------------------
    Case(
        "unknown service",
        "rpc",
        "/rpc/nosuch/presentation",
        {404},
        "unknown_method",
        body=pack([1]),
    ),
    Case("unknown method", "rpc", "/rpc/movie/delete_all", {404}, "unknown_method", body=pack([1])),
    Case("private method", "rpc", "/rpc/movie/__init__", {404}, "unknown_method", body=pack()),
    Case("reserved aclose", "rpc", "/rpc/movie/aclose", {404}, "unknown_method", body=pack()),
    Case("empty method name", "rpc", "/rpc/movie/", {404}, "unknown_method", body=pack()),
    Case("no method part", "rpc", "/rpc/movie", {404}, "unknown_method", body=pack()),
    Case("not msgpack", "rpc", PRESENT, {400}, "bad_request", body=b"\xc1\xc1"),
    Case("truncated msgpack", "rpc", PRESENT, {400}, "bad_request", body=pack([1, 2])[:-1]),
    Case("empty body", "rpc", PRESENT, {400}, "bad_request"),
    Case("string for a list", "rpc", PRESENT, {400}, "bad_request", body=pack("7")),
    Case("strings in an id list", "rpc", PRESENT, {400}, "bad_request", body=pack(["7"])),
    Case("float id", "rpc", PRESENT, {400}, "bad_request", body=pack([7.5])),
    Case(
        "id over 64 bits",
        "rpc",
        PRESENT,
        {400},
        "bad_request",
        body=b"\x91\x91\xcf" + b"\xff" * 8 + b"\x00",
    ),
    Case(
        "map for the argument list",
        "rpc",
        PRESENT,
        {400},
        "bad_request",
        body=msgspec.msgpack.encode({"videos": [1]}),
    ),
    Case("missing argument", "rpc", PRESENT, {400}, "bad_request", body=pack()),
    Case("extra argument", "rpc", PRESENT, {400}, "bad_request", body=pack([1], 2)),
    Case("nested 100,000 deep", "rpc", PRESENT, {400}, "bad_request", body=nested(100_000)),
    Case("invalid UTF-8 in a string", "rpc", PRESENT, {400}, "bad_request", body=b"\x91\xa2a\xff"),
    Case("oversized body", "rpc", PRESENT, {413}, "too_large", body=pack([1] * (MiB + 1))),
    Case(
        "claimed length over the limit",
        "rpc",
        PRESENT,
        {413},
        "too_large",
        body=b"",
        headers=rpc_headers(**{"Content-Length": str(8 * MiB)}),
    ),
    Case(
        "deadline not a number",
        "rpc",
        PRESENT,
        {400},
        "bad_request",
        body=pack([1]),
        headers=rpc_headers(**{"x-herd-deadline-ms": "soon"}),
    ),
    Case(
        "deadline with 400 zeros",
        "rpc",
        PRESENT,
        {400},
        "bad_request",
        body=pack([1]),
        headers=rpc_headers(**{"x-herd-deadline-ms": "1" + "0" * 400}),
    ),
    Case(
        "deadline in Arabic-Indic digits",
        "rpc",
        PRESENT,
        {400},
        "bad_request",
        body=pack([1]),
        headers=rpc_headers(**{"x-herd-deadline-ms": "\u0661\u0662"}),
    ),
    Case(
        "deadline fractional",
        "rpc",
        PRESENT,
        {400},
        "bad_request",
        body=pack([1]),
        headers=rpc_headers(**{"x-herd-deadline-ms": "1.5"}),
    ),
    Case(
        "deadline passed",
        "rpc",
        PRESENT,
        {504},
        "deadline_exceeded",
        body=pack([1]),
        headers=rpc_headers(**{"x-herd-deadline-ms": "0"}),
    ),
    Case(
        "negative deadline",
        "rpc",
        PRESENT,
        {504},
        "deadline_exceeded",
        body=pack([1]),
        headers=rpc_headers(**{"x-herd-deadline-ms": "-5"}),
    ),
    Case(
        "attempt not a number",
        "rpc",
        PRESENT,
        {400},
        "bad_request",
        body=pack([1]),
        headers=rpc_headers(**{"x-herd-attempt": "second"}),
    ),
    Case(
        "wrong content type",
        "rpc",
        PRESENT,
        {415},
        "unsupported_media_type",
        body=pack([1]),
        headers={"Content-Type": "application/json"},
    ),
    Case(
        "no content type",
        "rpc",
        PRESENT,
        {415},
        "unsupported_media_type",
        body=pack([1]),
        headers={},
    ),
    Case("GET on an RPC", "rpc", PRESENT, {405}, "method_not_allowed", method="GET", headers={}),
    Case("DELETE on an RPC", "rpc", PRESENT, {405}, "method_not_allowed", method="DELETE"),
    Case(
        "a web route on an RPC-only service",
        "rpc",
        "/api/home",
        {404},
        "not_found",
        method="GET",
    ),
    # -- the edge's web routes, direct ---------------------------------------------------------
    Case(
        "visitor in superscript digits",
        "edge",
        "/api/home?visitor=%C2%B2",
        {400},
        "bad_request",
        method="GET",
    ),
    Case(
        "visitor over 63 bits",
        "edge",
        "/api/home?visitor=9223372036854775808",
        {400},
        "bad_request",
        method="GET",
    ),
    Case("visitor not UTF-8", "edge", "/api/home?visitor=%ff", {400}, "bad_request", method="GET"),
    Case(
        "video over 64 bits",
        "edge",
        "/boxshot.svg?video=18446744073709551616",
        {400},
        None,
        method="GET",
    ),
    Case("unknown page", "edge", "/admin", {404}, "not_found", method="GET"),
    Case(
        "POST to a GET route",
        "edge",
        "/api/home?visitor=1",
        {405},
        "method_not_allowed",
        body=b"{}",
    ),
    Case(
        "oversized body to a web route",
        "edge",
        "/api/home",
        {405, 413},
        None,
        body=b"x" * (2 * MiB),
    ),
    # -- the front door ------------------------------------------------------------------------
    Case("RPC through the front door", "door", PRESENT, {404}, None, body=pack([1])),
    Case("metrics through the front door", "door", "/metrics", {404}, None, method="GET"),
    Case(
        "operations through the front door", "door", "/herd/dependencies", {404}, None, method="GET"
    ),
    Case("health through the front door", "door", "/health", {404}, None, method="GET"),
    Case(
        "bad visitor through the front door",
        "door",
        "/api/home?visitor=-1",
        {400},
        "bad_request",
        method="GET",
    ),
    Case(
        "oversized body through the front door",
        "door",
        "/api/home",
        {413},
        None,
        body=b"x" * (2 * MiB),
    ),
    Case(
        "a forged deadline through the front door",
        "door",
        "/api/home?visitor=1",
        {200},
        None,
        method="GET",
        headers={"X-Herd-Deadline-Ms": "0"},
    ),
    # -- the registry --------------------------------------------------------------------------
    Case(
        "renew with invalid UTF-8", "registry", RENEW, {400}, "bad_request", body=b"\x91\xa2a\xff"
    ),
    Case(
        "register a map of junk",
        "registry",
        "/rpc/registry/register",
        {400},
        "bad_request",
        body=pack({"id": 1}),
    ),
    Case(
        "watch with a string version",
        "registry",
        "/rpc/registry/watch",
        {400},
        "bad_request",
        body=pack("", "latest"),
    ),
    Case(
        "register with an extra argument",
        "registry",
        "/rpc/registry/register",
        {400},
        "bad_request",
        body=pack(ENTRY, "0" * 64),
    ),
    Case(
        "register another instance's entry",
        "registry",
        "/rpc/registry/register",
        {422},
        "service_error",
        body=pack(ENTRY),
    ),
    Case(
        "register port 70000",
        "registry",
        "/rpc/registry/register",
        {422},
        "service_error",
        body=pack({**ENTRY, "port": 70_000}),
    ),
    Case(
        "register a 70 KB id",
        "registry",
        "/rpc/registry/register",
        {422},
        "service_error",
        body=pack({**ENTRY, "id": "x" * 70_000}),
    ),
    Case(
        "renew someone else's entry",
        "registry",
        RENEW,
        {422},
        "service_error",
        body=pack("movie-v001-a1"),
    ),
    Case(
        "unknown registry method",
        "registry",
        "/rpc/registry/drop_all",
        {404},
        "unknown_method",
        body=pack(),
    ),
    # -- the control API -----------------------------------------------------------------------
    Case(
        "scale without the token", "control", SCALE, {403}, "forbidden", body=pack("movie-v001", 0)
    ),
    Case(
        "scale with a wrong token",
        "control",
        SCALE,
        {403},
        "forbidden",
        body=pack("movie-v001", 0),
        headers=rpc_headers(**{"x-herd-token": "guess"}),
    ),
    Case(
        "scale with a token that is not UTF-8",
        "control",
        SCALE,
        {403},
        "forbidden",
        body=pack("movie-v001", 0),
        headers=rpc_headers(**{"x-herd-token": b"\xff\xfe\x80"}),
    ),
    Case("down without the token", "control", "/rpc/cloud/down", {403}, "forbidden", body=pack()),
    Case(
        "kill without the token",
        "control",
        "/rpc/cloud/kill",
        {403},
        "forbidden",
        body=pack("movie-v001-a1"),
    ),
    Case(
        "ps with junk arguments",
        "control",
        "/rpc/cloud/ps",
        {400},
        "bad_request",
        body=pack(1, 2, 3),
    ),
]


@dataclass
class FrameCase:
    """Hostile frames sent to an instance after a well-formed preface, and what must follow:
    `closed` (the connection is dropped), `served` (a good call after them is still answered),
    or the error kind the first answer carries (and the connection serves on, unless `closes`)."""

    name: str
    frames: bytes
    answer: str
    closes: bool = False  # after the answer


DEADLINE = {"x-herd-deadline-ms": "5000"}


def present(call_id: int, body: bytes | None = None, **metadata: str) -> bytearray:
    """A call frame to `movie.presentation` (a good one unless told otherwise)."""
    meta = {**DEADLINE, **metadata}
    return call_frame(call_id, "movie", "presentation", meta, pack([1]) if body is None else body)


def raw_frame(kind: int, call_id: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), kind, call_id) + payload


FRAME_CASES = [
    FrameCase("unknown frame type", raw_frame(99, 1, b""), "closed"),
    FrameCase("a reply frame from a client", frames.reply_frame(1, 200, b""), "closed"),
    FrameCase("a drain frame from a client", control_frame(DRAIN), "closed"),
    FrameCase("call id 0", present(0), "closed"),
    FrameCase("duplicate call id in flight", present(5) + present(5), "closed"),
    FrameCase("cancel with a payload", raw_frame(CANCEL, 1, b"abc"), "closed"),
    FrameCase("HTTP after the preface", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "closed"),
    FrameCase("cancel of an unknown call", control_frame(CANCEL, 77), "served"),
    FrameCase("call frame not msgpack", raw_frame(CALL, 1, b"\xc1\xc1"), "bad_request"),
    FrameCase(
        "call frame a map",
        raw_frame(CALL, 1, msgspec.msgpack.encode({"service": "movie"})),
        "bad_request",
    ),
    FrameCase(
        "call frame missing its body",
        raw_frame(CALL, 1, pack("movie", "presentation", DEADLINE)),
        "bad_request",
    ),
    FrameCase(
        "metadata values not strings",
        raw_frame(CALL, 1, pack("movie", "presentation", {"x-herd-deadline-ms": 5}, pack([1]))),
        "bad_request",
    ),
    FrameCase(
        "body a string, not bytes",
        raw_frame(CALL, 1, pack("movie", "presentation", DEADLINE, "[1]")),
        "bad_request",
    ),
    FrameCase(
        "frame over the size limit",
        raw_frame(CALL, 1, b"\x00" * (MiB + 128 * 1024)),
        "too_large",
    ),
    FrameCase(
        "frame length claiming 4 GiB", HEADER.pack(2**32 - 1, CALL, 1), "too_large", closes=True
    ),
    FrameCase(
        "unknown service in a call",
        call_frame(1, "nosuch", "presentation", DEADLINE, pack([1])),
        "unknown_method",
    ),
    FrameCase(
        "unknown method in a call",
        call_frame(1, "movie", "drop_all", DEADLINE, pack([1])),
        "unknown_method",
    ),
    FrameCase("arguments not msgpack", present(1, b"\xc1"), "bad_request"),
    FrameCase("arguments of the wrong type", present(1, pack(["7"])), "bad_request"),
    FrameCase("arguments nested 100,000 deep", present(1, nested(100_000)), "bad_request"),
    FrameCase(
        "deadline not a number in the metadata",
        present(1, **{"x-herd-deadline-ms": "soon"}),
        "bad_request",
    ),
    FrameCase(
        "deadline passed in the metadata",
        present(1, **{"x-herd-deadline-ms": "0"}),
        "deadline_exceeded",
    ),
    FrameCase(
        "attempt not a number in the metadata",
        present(1, **{"x-herd-attempt": "first"}),
        "bad_request",
    ),
]


def send_frames(
    address: str, data: bytes, context: ssl.SSLContext, *, probe: bool = False
) -> tuple[bytes, bool]:
    """Open a connection (mutual TLS, as the control plane), send the preface and `data` (and a
    good call with id 2**31 when `probe`; without one, end the sending side with TLS's
    close_notify, as a half-close); return what came back before the server closed, and whether
    it closed (rather than answering the probe and waiting for more).

    The TLS is driven by hand (memory BIOs), so the frames are exactly the bytes given, and the
    sending side can end while answers are still read."""
    host, port = address.rsplit(":", 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = context.wrap_bio(incoming, outgoing)
    with socket.create_connection((host, int(port)), timeout=10) as raw:

        def pump() -> bool:
            """Send what TLS wrote; read once more from the server. False at its end."""
            if pending := outgoing.read():
                raw.sendall(pending)
            try:
                chunk = raw.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return False
            incoming.write(chunk)
            return True

        while True:
            try:
                tls_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not pump():
                    return b"", True
        tls_object.write(PREFACE + data + (present(2**31) if probe else b""))
        if not probe:
            with contextlib.suppress(ssl.SSLWantReadError):
                tls_object.unwrap()
        received = b""
        while True:
            try:
                while chunk := tls_object.read(65536):
                    received += chunk
                return received, True  # the server's close_notify
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return received, True
            if probe and _replies(received).get(2**31) is not None:
                return received, False
            try:
                if not pump():
                    return received, True
            except TimeoutError:
                return received, False


def _replies(received: bytes) -> dict[int, tuple[int, bytes]]:
    """The complete reply frames in what a server sent after its preface, by call id."""
    assert received[: len(PREFACE)] == PREFACE[: len(received)], received[:40]
    view = received[len(PREFACE) :]
    replies = {}
    pos = 0
    while len(view) - pos >= frames.HEADER_SIZE:
        length, kind, call_id = HEADER.unpack_from(view, pos)
        end = pos + frames.HEADER_SIZE + length
        if end > len(view):
            break
        if kind == frames.REPLY:
            replies[call_id] = frames.decode_reply(view[pos + frames.HEADER_SIZE : end])
        pos = end
    return replies


#: The ports behind mutual TLS: the test speaks to them as the control plane (the hostile
#: caller here is one that holds a certificate; test_identity.py refuses those without one).
INSIDE = frozenset({"rpc", "edge", "registry"})


def send(address: str, case: Case, context: ssl.SSLContext | None = None) -> tuple[int, str, bytes]:
    """One raw HTTP request (stdlib: no client-side checks between us and the server), over
    TLS with `context`.

    Header values go out as UTF-8 bytes, or as given when they are bytes (not UTF-8 at all).
    """
    host, port = address.rsplit(":", 1)
    connection = (
        http.client.HTTPConnection(host, int(port), timeout=30)
        if context is None
        else http.client.HTTPSConnection(host, int(port), timeout=30, context=context)
    )
    try:
        connection.putrequest(case.method, case.path, skip_accept_encoding=True)
        headers = dict(case.headers)
        if "Content-Length" not in headers and (case.body or case.method == "POST"):
            headers["Content-Length"] = str(len(case.body))
        for name, value in headers.items():
            connection.putheader(name, value if isinstance(value, bytes) else value.encode())
        connection.endheaders(case.body or None)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def kind_of(content_type: str, body: bytes) -> str | None:
    """The error kind an answer carries, in msgpack (RPC) or JSON (web)."""
    try:
        if content_type.startswith(MSGPACK):
            decoded = msgspec.msgpack.decode(body)
            return decoded.get("kind") if isinstance(decoded, dict) else None
        if content_type.startswith("application/json"):
            decoded = json.loads(body)
            return decoded.get("error") if isinstance(decoded, dict) else None
    except (msgspec.DecodeError, ValueError):
        return None
    return None


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    app = write_app(tmp_path_factory.mktemp("hostile"), "flix", instances={"movie": 1})
    running = Cloud(app).start()
    try:
        yield running
    finally:
        running.close()


def addresses(cloud: Cloud) -> dict[str, str]:
    async def instances() -> dict[str, str]:
        async with cloud.api() as api:
            views = await api.ps()
        return {view.service: view.address for view in views}

    by_service = asyncio.run(instances())
    state = cloud.state()
    assert state is not None
    return {
        "rpc": by_service["movie"],
        "edge": by_service["edge"],
        "door": cloud.front_door.removeprefix("http://"),
        "registry": cloud.registry,
        "control": str(state["control"]),
    }


def test_the_table_lists_at_least_fifty_kinds_of_bad_input() -> None:
    assert len(CASES) >= 50
    assert len({case.name for case in CASES}) == len(CASES)


def test_every_port_answers_bad_input_with_a_typed_error(cloud: Cloud) -> None:
    ports = addresses(cloud)
    context = cloud.tls()
    wrong = []
    for case in CASES:
        inside = context if case.port in INSIDE else None
        status, content_type, body = send(ports[case.port], case, inside)
        kind = kind_of(content_type, body)
        if status not in case.statuses or (case.kind is not None and kind != case.kind):
            wrong.append(f"{case.name}: {status} {content_type} {body[:120]!r}")
        if b"Traceback" in body:
            wrong.append(f"{case.name}: a traceback in the answer")
    assert not wrong, "\n".join(wrong)
    # Everything still serves: a good page through the front door, and nothing was restarted.
    good = Case("good", "door", "/api/home?visitor=1", {200}, method="GET", headers={})
    assert send(ports["door"], good)[0] == 200
    assert addresses(cloud) == ports


def test_every_bad_frame_is_refused_and_kills_nothing(cloud: Cloud) -> None:
    ports = addresses(cloud)
    context = cloud.tls()
    wrong = []
    for case in FRAME_CASES:
        if case.answer == "closed":
            _, closed = send_frames(ports["rpc"], case.frames, context, probe=True)
            if not closed:
                wrong.append(f"{case.name}: the connection stayed open")
            continue
        received, closed = send_frames(ports["rpc"], case.frames, context, probe=True)
        replies = _replies(received)
        if case.answer == "served":
            answered = replies.get(2**31)
            if answered is None or answered[0] != 200:
                wrong.append(f"{case.name}: the next call got {answered!r}, closed={closed}")
            continue
        answered = replies.get(1)
        if answered is None or decode_error(answered[1]).kind != case.answer:
            wrong.append(f"{case.name}: answered {answered!r}")
        elif case.closes != closed:
            wrong.append(f"{case.name}: closed={closed}")
        elif not case.closes and replies.get(2**31, (0,))[0] != 200:
            wrong.append(f"{case.name}: the connection did not serve the next call")
    assert not wrong, "\n".join(wrong)
    assert addresses(cloud) == ports


def test_http_level_garbage_is_refused_by_the_server_and_kills_nothing(cloud: Cloud) -> None:
    ports = addresses(cloud)
    garbage = [
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /rpc/movie/presentation HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"b" * 20_000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ]
    context = cloud.tls()
    for port in ("rpc", "edge", "door", "registry", "control"):
        host, number = ports[port].rsplit(":", 1)
        for payload in garbage:
            with socket.create_connection((host, int(number)), timeout=10) as raw:
                conn = context.wrap_socket(raw) if port in INSIDE else raw
                conn.sendall(payload)
                answer = conn.recv(4096)
            assert answer.startswith(b"HTTP/1.") and b" 500 " not in answer[:16], (port, answer)
    assert addresses(cloud) == ports


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from([PRESENT, "/rpc/movie/nosuch", "/health", "/rpc/movie/"]),
    body=st.one_of(
        st.binary(max_size=512),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(min_value=-(2**63), max_value=2**64 - 1)
            | st.floats()
            | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(msgspec.msgpack.encode),
    ),
    headers=st.dictionaries(
        st.sampled_from(
            ["x-herd-deadline-ms", "x-herd-attempt", "x-herd-token", "Content-Type", "Accept"]
        ),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=24),
        max_size=4,
    ),
)
def test_fuzz_never_gets_an_untyped_500(
    cloud: Cloud, fuzz_target: dict[str, Any], path: str, body: bytes, headers: dict[str, str]
) -> None:
    address = fuzz_target["address"]
    case = Case("fuzz", "rpc", path, set(), body=body, headers=headers)
    status, content_type, answer = send(address, case, fuzz_target["tls"])
    assert status < 500 or status in (503, 504), (status, answer[:200])
    if status >= 400:
        assert kind_of(content_type, answer) is not None or path == "/health", answer[:200]
    fuzz_target["sent"] += 1


def _frame_bytes(kind: int, call_id: int, payload: bytes, length: int | None) -> bytes:
    return HEADER.pack(len(payload) if length is None else length, kind, call_id) + payload


_ids = st.sampled_from([0, 1, 2, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)
_metadata = st.dictionaries(
    st.sampled_from(["x-herd-deadline-ms", "x-herd-attempt", "x-herd-token", "x-other"]),
    st.text(max_size=12),
    max_size=3,
)
_calls = st.builds(
    lambda call_id, service, method, metadata, body: bytes(
        call_frame(call_id, service, method, metadata, body)
    ),
    _ids,
    st.sampled_from(["movie", "nosuch", ""]) | st.text(max_size=8),
    st.sampled_from(["presentation", "aclose", "__init__", ""]) | st.text(max_size=8),
    _metadata,
    st.binary(max_size=64)
    | st.lists(st.integers(-(2**63), 2**64 - 1), max_size=3).map(msgspec.msgpack.encode),
)
_raw_frames = st.builds(
    _frame_bytes,
    st.sampled_from([CALL, frames.REPLY, CANCEL, DRAIN, 0, 5, 255]),
    _ids,
    st.binary(max_size=64),
    st.none() | st.none() | st.integers(0, 2**32 - 1),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=st.lists(_calls | _raw_frames | st.binary(min_size=1, max_size=16), max_size=6))
def test_fuzz_frames_never_crash_the_instance(
    cloud: Cloud, fuzz_target: dict[str, Any], stream: list[bytes]
) -> None:
    # Half-closed after sending: the server answers what it can, then sees the end.
    received, _ = send_frames(fuzz_target["address"], b"".join(stream), fuzz_target["tls"])
    for status, body in _replies(received).values():
        assert status < 500 or status in (503, 504), (status, body[:200])
        if status >= 400:
            assert decode_error(body).kind != "internal", body[:200]
    fuzz_target["frames_sent"] += 1


def test_the_fuzzed_instance_kept_serving_with_flat_memory(
    cloud: Cloud, fuzz_target: dict[str, Any]
) -> None:
    assert fuzz_target["sent"] >= 400
    assert fuzz_target["frames_sent"] >= 400
    # The same process answered everything (not a replacement), and its memory did not grow
    # with what it was sent.
    movie = [view for view in asyncio.run(_ps(cloud)) if view.service == "movie"]
    assert [view.pid for view in movie] == [fuzz_target["pid"]]
    assert _rss_kib(fuzz_target["pid"]) - fuzz_target["rss_before"] < 32 * 1024


@pytest.fixture(scope="module")
def fuzz_target(cloud: Cloud) -> dict[str, Any]:
    """The movie instance under fuzz, with its resident memory before and after."""
    address = addresses(cloud)["rpc"]
    pid = next(view.pid for view in asyncio.run(_ps(cloud)) if view.service == "movie")
    return {
        "address": address,
        "pid": pid,
        "sent": 0,
        "frames_sent": 0,
        "rss_before": _rss_kib(pid),
        "tls": cloud.tls(),
    }


async def _ps(cloud: Cloud) -> list[Any]:
    async with cloud.api() as api:
        return list(await api.ps())


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_docs_security_lists_every_case() -> None:
    listed = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    names = [case.name for case in CASES] + [case.name for case in FRAME_CASES]
    missing = [name for name in names if f"| {name} |" not in listed]
    assert not missing, f"docs/security.md does not list: {missing}"
