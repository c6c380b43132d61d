"""Routes: which server groups of a service get which traffic.

A route is published by the control plane (through the registry) while a deploy moves traffic,
and read by every driver and the front door. It splits the 100 buckets of visitors over a
service's groups, first split first: a request whose routing context holds `bucket=17` goes to
the group whose share covers bucket 17, at every hop, so a visitor sees one consistent set of
versions. A deploy lists the new group first, so growing its share only adds visitors to it and
never moves one back. A `pin=VERSION` entry sends a request to that version wherever the service
has it (a test cell), and to the route's split elsewhere.

A service with no route sends its traffic to every UP instance, as before any deploy.
"""

from __future__ import annotations

import zlib

import msgspec

#: The routing-context keys the front door sets and every driver reads.
BUCKET = "bucket"
PIN = "pin"
#: Visitors are hashed into this many buckets: a share is a percentage.
BUCKETS = 100


class Split(msgspec.Struct, frozen=True):
    """One group's share of a service's buckets (0 to 100)."""

    group: str
    share: int


class Route(msgspec.Struct, frozen=True):
    """A service's traffic split over its groups, first split first; shares sum to 100.

    A group with share 0 gets no traffic but pinned requests for its version.
    """

    service: str
    splits: list[Split]

    def problems(self) -> list[str]:
        """What makes this route unusable; empty when it is fine."""
        found = []
        if sum(split.share for split in self.splits) != BUCKETS:
            found.append(f"route of {self.service}: shares must sum to {BUCKETS}")
        if any(not 0 <= split.share <= BUCKETS for split in self.splits):
            found.append(f"route of {self.service}: every share is from 0 to {BUCKETS}")
        if len({split.group for split in self.splits}) != len(self.splits):
            found.append(f"route of {self.service}: a group appears twice")
        return found

    def share_of(self, group: str) -> int:
        """The group's share of the buckets (0 when it is not in the route)."""
        return next((split.share for split in self.splits if split.group == group), 0)


def bucket_of(visitor: str) -> int:
    """The visitor's bucket, 0 to 99: a stable hash, the same in every process and release."""
    return zlib.crc32(visitor.encode()) % BUCKETS
