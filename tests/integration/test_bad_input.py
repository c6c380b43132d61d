"""Bad input gets a typed error answer, the server keeps serving, and nothing logs a crash."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
import structlog

import herd
from tests.helpers import MSGPACK, RawAnswer, raw_request

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


class Point(msgspec.Struct):
    x: int
    y: int


class Probe(herd.Interface, name="probe"):
    async def add(self, a: int, b: int) -> int: ...

    async def norm(self, point: Point, scale: float = 1.0) -> float: ...

    async def size(self, blob: bytes) -> int: ...

    async def boom(self) -> str: ...


class ProbeService(Probe):
    def __init__(self) -> None:
        self.calls = 0

    async def add(self, a: int, b: int) -> int:
        self.calls += 1
        return a + b

    async def norm(self, point: Point, scale: float = 1.0) -> float:
        self.calls += 1
        return (abs(point.x) + abs(point.y)) * scale

    async def size(self, blob: bytes) -> int:
        self.calls += 1
        return len(blob)

    async def boom(self) -> str:
        raise RuntimeError("a bug")


def pack(*args: Any) -> bytes:
    return msgspec.msgpack.encode(list(args))


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body sent with chunked transfer encoding: no Content-Length to refuse it early."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"\x00" * piece


@dataclass
class Case:
    name: str
    status: int
    kind: str
    path: str = "/rpc/probe/add"
    method: str = "POST"
    body: Any = field(default_factory=lambda: pack(1, 2))
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": MSGPACK})


JSON = {"Content-Type": "application/json"}


def with_deadline(value: str) -> dict[str, str]:
    return {"Content-Type": MSGPACK, "x-herd-deadline-ms": value}


CASES = [
    Case("unknown service", 404, "unknown_method", path="/rpc/nosuch/add"),
    Case("unknown method", 404, "unknown_method", path="/rpc/probe/subtract"),
    Case("private method", 404, "unknown_method", path="/rpc/probe/__init__"),
    Case("malformed body, not msgpack", 400, "bad_request", body=b"\xc1\xc1\xc1"),
    Case("truncated msgpack", 400, "bad_request", body=pack(1, 2)[:-1]),
    Case("empty body", 400, "bad_request", body=b""),
    Case("wrong type", 400, "bad_request", body=pack("one", 2)),
    Case("bool for int", 400, "bad_request", body=pack(True, 2)),
    Case("map instead of argument list", 400, "bad_request", body=msgspec.msgpack.encode({"a": 1})),
    Case("missing argument", 400, "bad_request", body=pack(1)),
    Case("too many arguments", 400, "bad_request", body=pack(1, 2, 3)),
    Case(
        "wrong nested type",
        400,
        "bad_request",
        path="/rpc/probe/norm",
        body=pack({"x": 1, "y": "2"}),
    ),
    Case(
        "missing nested field",
        400,
        "bad_request",
        path="/rpc/probe/norm",
        body=pack({"x": 1}),
    ),
    Case(
        "wrong type for a defaulted argument",
        400,
        "bad_request",
        path="/rpc/probe/norm",
        body=pack({"x": 1, "y": 2}, "big"),
    ),
    Case("oversized body", 413, "too_large", path="/rpc/probe/size", body=pack(b"x" * MiB)),
    Case("oversized chunked body", 413, "too_large", path="/rpc/probe/size", body=None),
    Case("non-integer deadline header", 400, "bad_request", headers=with_deadline("soon")),
    Case("fractional deadline header", 400, "bad_request", headers=with_deadline("1.5")),
    Case("expired deadline", 504, "deadline_exceeded", headers=with_deadline("0")),
    Case("negative deadline", 504, "deadline_exceeded", headers=with_deadline("-100")),
    Case("wrong content type", 415, "unsupported_media_type", headers=JSON),
    Case("no content type", 415, "unsupported_media_type", headers={}),
    Case("GET on an rpc path", 405, "method_not_allowed", method="GET", body=None),
    Case("PUT on an rpc path", 405, "method_not_allowed", method="PUT"),
]


@pytest.fixture
async def server() -> AsyncIterator[herd.Server]:
    async with herd.serve(ProbeService()) as served:
        yield served


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Any:
    """Everything logged while the test runs, through structlog and through stdlib logging."""
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        yield events, caplog


def errors_in(logged: Any) -> list[str]:
    events, caplog = logged
    found = [repr(event) for event in events if event.get("log_level") in {"error", "critical"}]
    found += [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.ERROR
    ]
    return found


def decode(answer: RawAnswer) -> dict[str, Any]:
    """The answer as an error body, or what it was instead."""
    if answer.content_type != MSGPACK:
        return {"content_type": answer.content_type, "body": answer.body[:100]}
    try:
        decoded = msgspec.msgpack.decode(answer.body)
    except msgspec.DecodeError:
        return {"undecodable": answer.body[:100]}
    return decoded if isinstance(decoded, dict) else {"value": decoded}


async def send(session: aiohttp.ClientSession, address: str, case: Case) -> RawAnswer:
    body = chunks(2 * MiB) if case.name == "oversized chunked body" else case.body
    return await raw_request(
        session, address, case.path, method=case.method, body=body, headers=case.headers
    )


async def test_every_bad_request_gets_a_typed_answer_and_the_server_keeps_serving(
    server: herd.Server, logged: Any
) -> None:
    assert len(CASES) >= 12
    impl = server.impl
    assert isinstance(impl, ProbeService)
    mismatches = []
    async with aiohttp.ClientSession() as session:
        for case in CASES:
            answer = await send(session, server.address, case)
            decoded = decode(answer)
            if (answer.status, decoded.get("kind")) != (case.status, case.kind) or not decoded.get(
                "message"
            ):
                mismatches.append(
                    f"{case.name}: expected {case.status} {case.kind}, "
                    f"got {answer.status} {decoded}"
                )
        assert not mismatches, "\n".join(mismatches)
        assert impl.calls == 0  # no bad request reached a handler

        # Still serving: a good raw call and a good driver call answer correctly.
        answer = await raw_request(
            session,
            server.address,
            "/rpc/probe/add",
            body=pack(2, 3),
            headers=with_deadline("5000"),
        )
        assert (answer.status, msgspec.msgpack.decode(answer.body)) == (200, 5)
    probe = herd.driver(Probe, address=server.address)
    try:
        with herd.deadline(5.0):
            assert await probe.add(40, 2) == 42
            assert await probe.norm(Point(3, -4), 2.0) == 14.0
            assert await probe.size(b"x" * (MiB - 64)) == MiB - 64
    finally:
        await probe.aclose()
    assert impl.calls == 4
    assert server.inflight == 0
    assert errors_in(logged) == []


async def test_the_driver_raises_bad_request_for_a_refused_call(server: herd.Server) -> None:
    probe = herd.driver(Probe, address=server.address)
    try:
        with pytest.raises(herd.BadRequest) as caught, herd.deadline(5.0):
            await probe.size(b"x" * (2 * MiB))
    finally:
        await probe.aclose()
    assert caught.value.kind == "too_large"
    assert (caught.value.service, caught.value.method) == ("probe", "size")


async def test_a_crashing_handler_is_logged_so_the_log_check_above_can_fail(
    server: herd.Server, logged: Any
) -> None:
    probe = herd.driver(Probe, address=server.address)
    try:
        with pytest.raises(herd.RemoteError), herd.deadline(5.0):
            await probe.boom()
    finally:
        await probe.aclose()
    assert errors_in(logged) != []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_the_body_limit_is_configurable(chunked: bool) -> None:
    limit = 1024
    small, large = pack(b"x" * (limit - 64)), pack(b"x" * (limit + 1))
    async with (
        herd.serve(ProbeService(), max_body=limit) as strict,
        herd.serve(ProbeService()) as lenient,
        aiohttp.ClientSession() as session,
    ):

        async def size(address: str, body: bytes) -> Any:
            async def stream() -> AsyncIterator[bytes]:
                for start in range(0, len(body), 100):
                    yield body[start : start + 100]

            return await raw_request(
                session,
                address,
                "/rpc/probe/size",
                body=stream() if chunked else body,
                headers=with_deadline("5000"),
            )

        refused = await size(strict.address, large)
        assert refused.status == 413
        assert refused.error()["kind"] == "too_large"
        assert str(limit) in refused.error()["message"]

        for address, body, expected in (
            (strict.address, small, limit - 64),
            (lenient.address, large, limit + 1),
        ):
            answer = await size(address, body)
            assert answer.status == 200, answer.body
            assert msgspec.msgpack.decode(answer.body) == expected
