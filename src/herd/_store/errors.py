"""The store's errors: every one a `herd.StoreError`, so a caller can catch the store's failures
in one clause and still tell a conflict from an outage."""

from __future__ import annotations

from herd._model.errors import HerdError, Unavailable


class StoreError(HerdError):
    """Root of the errors `herd.Store` and `herd.Events` raise (besides `DeadlineExceeded`)."""


class Conflict(StoreError):
    """A compare-and-set found another revision than the one given, or an append's id was
    already used for a different value: nothing was written.

    `revision` is the record's revision now (0: absent), for the caller to read and try again.
    """

    def __init__(self, message: str, revision: int = 0) -> None:
        super().__init__(message)
        self.revision = revision


class InvalidKey(StoreError, ValueError):
    """A key, id or name with characters the store does not take, or too long: nothing was sent."""


class TooLarge(StoreError, ValueError):
    """A value whose encoding is over the store's `max_value_bytes`: nothing was sent."""


class StoreUnavailable(StoreError, Unavailable):
    """The store did not answer in time (down, no quorum, no leader yet): the write may or may
    not have been applied, and retrying it with the same key or id is safe."""
