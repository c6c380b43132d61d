"""Cohorts: the routing context the front door gives each request from outside.

Every request gets a `bucket` (0-99): a stable hash of its visitor id when the app file says
where the visitor id is, else a random one. A request may also get a `pin` to a version: from a
header or a cookie the app file names, or because its visitor is in a named test cell. Drivers at
every hop pick the server group from these two entries (`herd._client.routes`), so a visitor sees
one consistent set of versions on every request for the whole deploy.
"""

from __future__ import annotations

import random
import re

from aiohttp import web

from herd._cloud.app import CohortSpec
from herd._model.route import BUCKET, BUCKETS, PIN, bucket_of

_VERSION = re.compile(r"v\d{3}")


class Cohorts:
    """Assigns the routing entries of requests from outside, by the app file's rules."""

    def __init__(self, spec: CohortSpec, rng: random.Random | None = None) -> None:
        self._spec = spec
        self._rng = rng or random.Random()
        self._cells = {
            str(visitor): cell.version for cell in spec.cells for visitor in cell.visitors
        }

    def entries(self, request: web.BaseRequest) -> dict[str, str]:
        """`bucket` and, when a rule pins the request, `pin`."""
        spec = self._spec
        visitor = self._visitor(request)
        bucket = bucket_of(visitor) if visitor else self._rng.randrange(BUCKETS)
        entries = {BUCKET: str(bucket)}
        pin = (spec.pin_header and request.headers.get(spec.pin_header)) or (
            spec.pin_cookie and request.cookies.get(spec.pin_cookie)
        )
        if not pin and visitor:
            pin = self._cells.get(visitor)
        # From outside: anything but a version is ignored, never an error.
        if pin and _VERSION.fullmatch(pin):
            entries[PIN] = pin
        return entries

    def _visitor(self, request: web.BaseRequest) -> str:
        spec = self._spec
        found = (
            (spec.visitor_query and request.query.get(spec.visitor_query))
            or (spec.visitor_header and request.headers.get(spec.visitor_header))
            or (spec.visitor_cookie and request.cookies.get(spec.visitor_cookie))
        )
        return found[:128] if found else ""
