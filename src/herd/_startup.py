"""What an instance of the local cloud imports as it starts: no more than it uses.

Every replacement instance starts on the cores its group is serving on, so the CPU of its start
is taken from their calls (issue 27: the tail under kills). structlog imports its development
renderer, and with it rich (about 60 ms of CPU), whenever rich is installed, which herd's
command line needs. An instance the cloud started writes its log to a file through structlog's
plain renderer (`herd._process.logging`), so there structlog is imported with rich hidden: it
then renders without rich, and rich stays importable for anything that asks for it later.
"""

from __future__ import annotations

import os
import sys


def _import_structlog_without_rich() -> None:
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # import rich: ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


if os.environ.get("HERD_INSTANCE") and not sys.stderr.isatty():
    _import_structlog_without_rich()
