"""The criticality the front door gives each request from outside, by the app file's rules.

A client's own `x-herd-*` headers are stripped at the front door, so an outside client never
names its criticality directly: the app decides from what the request is (its path, a header
such as a prefetch marker), as Zuul does at Netflix's edge.
"""

from __future__ import annotations

from aiohttp import web

from herd._cloud.app import CriticalitySpec
from herd._model import criticality


class CriticalityRules:
    """The app file's criticality rules, parsed once."""

    __slots__ = ("_default", "_rules")

    def __init__(self, spec: CriticalitySpec) -> None:
        self._default = str(criticality.parse(spec.default))
        self._rules = [
            (rule.path, rule.header, rule.value, str(criticality.parse(rule.level)))
            for rule in spec.rules
        ]

    def level(self, request: web.BaseRequest) -> str:
        """The level of the first rule `request` matches, else the default, as the routing
        context's value."""
        for path, header, value, level in self._rules:
            if path and not request.path.startswith(path):
                continue
            if header:
                sent = request.headers.get(header)
                if sent is None or (value and sent != value):
                    continue
            return level
        return self._default

    def entries(self, request: web.BaseRequest) -> dict[str, str]:
        """The routing entry that carries the request's criticality."""
        return {criticality.KEY: self.level(request)}
