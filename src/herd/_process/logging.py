"""Process-level logging defaults, applied only by herd's own entry points."""

from __future__ import annotations

import logging
import sys

import structlog

from herd._process.config import settings
from herd._trace.setup import add_trace_ids


def configure() -> None:
    """Log at INFO (or `HERD_LOG_LEVEL`) unless the application configured structlog itself.

    Exceptions are rendered as plain tracebacks: structlog's default, with rich installed, prints
    every frame's local variables, which costs milliseconds on the event loop per logged error
    and writes whatever the locals hold (request bodies, keys) into the log.
    """
    if structlog.is_configured():
        return
    level = logging.getLevelNamesMapping().get(settings().log_level)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level or logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(
                colors=sys.stdout.isatty(),
                exception_formatter=structlog.dev.plain_traceback,
            ),
        ],
    )
