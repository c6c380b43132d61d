"""The ids entities travel as: plain integers on the wire, distinct types to the type checker."""

from __future__ import annotations

from typing import NewType

VideoId = NewType("VideoId", int)
VisitorId = NewType("VisitorId", int)
