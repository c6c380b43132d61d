"""Process-level logging defaults, applied only by herd's own entry points."""

from __future__ import annotations

import logging
import os

import structlog


def configure() -> None:
    """Log at INFO (or `HERD_LOG_LEVEL`) unless the application configured structlog itself."""
    if structlog.is_configured():
        return
    level = logging.getLevelNamesMapping().get(os.environ.get("HERD_LOG_LEVEL", "INFO").upper())
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level or logging.INFO))
