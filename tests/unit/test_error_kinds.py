"""One vocabulary of error kinds: each kind's name, status, blame and retryability, the same on
the server that answers it, on the wire, and in the driver that reads it."""

from __future__ import annotations

import pytest

from herd._model.outcome import (
    Blame,
    ErrorKind,
    Retryable,
    blame_of_kind,
    blame_of_status,
    is_server_failure,
)
from herd._wire.protocol import decode_error, error_reply


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_kind_maps_to_its_status_and_back(kind: ErrorKind) -> None:
    # kind -> wire -> kind: the answer carries the kind's status, and its body names the kind.
    reply = error_reply(kind, "m")
    assert reply.status == kind.status
    assert ErrorKind.parse(decode_error(reply.body).kind) is kind
    # status -> kind: a reader that sees only the status (a proxy, the front door) judges it
    # as the kind does.
    seen = ErrorKind.of_status(kind.status)
    assert seen.status == kind.status
    assert (seen.blame, seen.retryable) == (kind.blame, kind.retryable)
    # ... and reads it as its own kind unless another one has that status first.
    first = next(other for other in ErrorKind if other.status == kind.status)
    assert seen is first
    assert blame_of_kind(kind) is kind.blame
    assert is_server_failure(kind) == (kind.status >= 500)


def test_statuses_that_no_kind_has_read_as_the_nearest_kind() -> None:
    assert ErrorKind.of_status(418) is ErrorKind.BAD_REQUEST
    assert ErrorKind.of_status(501) is ErrorKind.INTERNAL
    assert blame_of_status(418) is Blame.CALLER
    assert blame_of_status(501) is Blame.INSTANCE
    assert blame_of_status(204) is None


def test_unknown_names_are_no_kind_and_the_services_fault() -> None:
    assert ErrorKind.parse("from_a_newer_server") is None
    assert blame_of_kind("from_a_newer_server") is Blame.SERVICE
    assert not is_server_failure("ok")
    assert not is_server_failure("cancelled")


def test_only_refusals_and_timeouts_are_retried_elsewhere() -> None:
    retried = {kind: kind.retryable for kind in ErrorKind if kind.retryable is not Retryable.NEVER}
    assert retried == {
        ErrorKind.OVERLOADED: Retryable.ALWAYS,
        ErrorKind.DEADLINE_EXCEEDED: Retryable.IDEMPOTENT,
    }
    # What would fail at any instance is never retried.
    assert all(
        kind.retryable is Retryable.NEVER for kind in ErrorKind if kind.blame is Blame.CALLER
    )
