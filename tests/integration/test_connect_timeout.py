"""The connect timeout is separate and short: a dead address costs little of the deadline."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest

import herd
from herd._wire import tls
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(60)

POLICY = herd.CallPolicy(connect_timeout=0.25, attempts=1)


class Nothing(herd.Interface, name="nothing"):
    async def ping(self) -> str: ...


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port whose connects hang: a listener that never accepts, its queue full.

    With the accept queue full, Linux drops further SYNs, so a connect waits (for SYN
    retransmits) instead of being refused: what a host that is down or partitioned looks like.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    try:
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break  # the queue is full: this connect hung
        else:
            pytest.skip("this kernel never stopped accepting connections into the queue")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def call_with_deadline(port: int, seconds: float) -> tuple[herd.HerdError, float]:
    nothing = herd.driver(Nothing, address=f"127.0.0.1:{port}", policy=POLICY)
    started = time.monotonic()
    try:
        with pytest.raises(herd.HerdError) as caught, herd.deadline(seconds):
            await nothing.ping()
    finally:
        await nothing.aclose()
    return caught.value, time.monotonic() - started


async def test_nothing_listening_is_unavailable_at_once() -> None:
    error, elapsed = await call_with_deadline(free_port(), 5.0)
    assert type(error) is not herd.DeadlineExceeded
    assert isinstance(error, herd.Unavailable)
    assert (error.service, error.method) == ("nothing", "ping")
    assert elapsed < 0.25


async def test_a_hanging_connect_gives_up_after_the_connect_timeout(black_hole: int) -> None:
    error, elapsed = await call_with_deadline(black_hole, 5.0)
    assert isinstance(error, herd.Unavailable), repr(error)
    assert "connect" in str(error)
    # The connect timeout (0.25 s) ended it, not the deadline (5 s).
    assert 0.2 <= elapsed < 1.0


async def test_under_tls_a_hanging_connect_costs_the_connect_timeout_not_the_handshakes(
    black_hole: int,
) -> None:
    # A partitioned host never answers the SYN: the TLS handshake's allowance (1 s) is for
    # hosts that answered, and must not be added to the wait (docs/network.md).
    context = ssl.create_default_context()
    context.check_hostname = False
    previous = tls.set_client_context(context)
    try:
        error, elapsed = await call_with_deadline(black_hole, 5.0)
    finally:
        tls.set_client_context(previous)
    assert isinstance(error, herd.Unavailable), repr(error)
    assert 0.2 <= elapsed < 1.0
