"""The ids entities travel as: plain integers on the wire, distinct types to the type checker.

Every id that comes from outside (a query parameter, a cookie) goes through `parse_id`, so a
bad one is answered with a 400 at the edge and never reaches a service or the store.
"""

from __future__ import annotations

import re
from typing import NewType

VideoId = NewType("VideoId", int)
VisitorId = NewType("VisitorId", int)

#: The largest id: the store keeps ids as SQLite's signed 64-bit integers. Ids start at 1 (the
#: store seeds videos and visitors from 1; 0 is the store's own "everyone" partition).
MAX_ID = 2**63 - 1

#: One spelling per id: ASCII digits, no sign, no space, no leading zero, at most 19 of them.
_ID = re.compile(r"[1-9][0-9]{0,18}")
_SHOWN = 24  # characters of a bad value repeated in the error


class BadId(ValueError):
    """An id from outside is not one flix can have; the message names it and the rule."""


def parse_id(raw: str, name: str) -> int:
    """The id `raw` spells, for an id called `name` in error messages; raises `BadId`.

    Accepted: the canonical decimal spelling of 1..`MAX_ID` (2**63 - 1), ASCII digits ``0-9``
    only, without sign, spaces, leading zeros or any other character (``str.isdigit`` would let
    ``'²'`` or ``'١٢'`` through, and ``int`` would take ``' +5 '``).
    """
    if _ID.fullmatch(raw) is None or int(raw) > MAX_ID:
        shown = repr(raw[:_SHOWN]) + (f" ({len(raw)} characters)" if len(raw) > _SHOWN else "")
        raise BadId(
            f"{name} must be an id from 1 to {MAX_ID} in ASCII digits "
            f"(no sign, spaces or leading zeros), not {shown}"
        )
    return int(raw)
