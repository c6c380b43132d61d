"""One classification of failures: the caller's fault is never a dependency's failure."""

from __future__ import annotations

import pytest

import herd
from herd._client.metrics import DependencyMetrics, raised_by
from herd._model.outcome import Blame, ErrorKind, blame, blame_of_status


class Missing(herd.ServiceError):
    key: int


@pytest.mark.parametrize("kind", [kind for kind in ErrorKind if kind.blame is Blame.CALLER])
async def test_fallback_never_hides_the_callers_own_fault(kind: str) -> None:
    async def failing() -> str:
        raise herd.BadRequest("svc", "get", "your fault", kind)

    with pytest.raises(herd.RemoteError) as caught:
        await herd.fallback(failing(), "fallback")
    assert caught.value.kind == kind


async def test_fallback_never_hides_a_declared_answer() -> None:
    async def failing() -> str:
        raise Missing("no such key", key=3)

    with pytest.raises(Missing):
        await herd.fallback(failing(), "fallback")


@pytest.mark.parametrize(
    "error",
    [
        herd.Unavailable("down"),
        herd.DeadlineExceeded("late"),
        herd.CircuitOpen("open"),
        herd.RemoteError("svc", "get", "boom", "internal"),
        herd.RemoteError("svc", "get", "its dependency failed", "dependency"),
    ],
)
async def test_fallback_covers_what_the_dependency_failed_at(error: herd.HerdError) -> None:
    async def failing() -> str:
        raise error

    assert await herd.fallback(failing(), "fallback") == "fallback"
    assert await herd.fallback(failing(), lambda exc: f"from {type(exc).__name__}") == (
        f"from {type(error).__name__}"
    )


def test_blame_of_errors_and_statuses() -> None:
    assert blame(herd.Forbidden("svc", "m", "no", "forbidden")) is Blame.CALLER
    assert blame(herd.RemoteError("svc", "m", "x", "too_large")) is Blame.CALLER
    assert blame(Missing("gone", key=1)) is Blame.ANSWER
    # Refused for want of capacity: nobody's failure (the limits answer load, not ejection).
    assert blame(herd.Overloaded("busy")) is Blame.LOAD
    assert blame(herd.RemoteError("svc", "m", "x", "dependency")) is Blame.SERVICE
    assert blame_of_status(200) is None
    assert blame_of_status(404) is Blame.CALLER
    assert blame_of_status(502) is Blame.SERVICE
    assert blame_of_status(500) is Blame.INSTANCE
    assert blame_of_status(503) is Blame.LOAD


async def test_fallback_counts_in_the_metrics_of_the_dependency_that_failed() -> None:
    metrics = DependencyMetrics()
    failed = herd.Unavailable("down")
    raised_by(failed, metrics)

    async def failing() -> str:
        raise failed

    async def broken_fallback(exc: Exception) -> str:
        raise RuntimeError("no stale copy either")

    assert await herd.fallback(failing(), "fallback") == "fallback"
    with pytest.raises(RuntimeError):
        await herd.fallback(failing(), broken_fallback)
    assert (metrics.fallback_success, metrics.fallback_failure) == (1, 1)
    # An error no driver raised is counted nowhere.
    assert await herd.fallback(_raise(herd.Unavailable("elsewhere")), "fallback") == "fallback"
    assert (metrics.fallback_success, metrics.fallback_failure) == (1, 1)


async def _raise(error: herd.HerdError) -> str:
    raise error
