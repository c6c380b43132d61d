"""What flix's services tell each other happened (`herd.events`, on the engine of their
writes: `examples.flix.writes.where`). The owner of a write publishes it once stored, with the
write's idempotency key as the event id."""

from __future__ import annotations

import msgspec

#: history published a visitor's play.
PLAYED = "played"
#: merch published a visitor's rating.
RATED = "rated"


class Played(msgspec.Struct, frozen=True):
    visitor: int
    video: int
    at_ms: int


class Rated(msgspec.Struct, frozen=True):
    visitor: int
    video: int
    thumbs: int
    at_ms: int
