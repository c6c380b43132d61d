"""Process-level logging defaults, applied only by herd's own entry points."""

from __future__ import annotations

import logging

import structlog

from herd._process.config import settings


def configure() -> None:
    """Log at INFO (or `HERD_LOG_LEVEL`) unless the application configured structlog itself."""
    if structlog.is_configured():
        return
    level = logging.getLevelNamesMapping().get(settings().log_level)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level or logging.INFO))
