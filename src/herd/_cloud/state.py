"""The state file through which `herd up` tells other `herd` commands how to reach it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from herd._process.config import settings


def state_file() -> Path:
    """Where `herd up` tells other `herd` commands how to reach it (and its admin token)."""
    return settings().home / "cloud.json"


def write_state(state: dict[str, Any]) -> None:
    """Write this cloud's `state` (with its pid), readable by its owner only."""
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps({**state, "pid": os.getpid()}))


def remove_state() -> None:
    """Remove the state file if this cloud wrote it: one that failed to start must not cut the
    running cloud off from the `herd` command."""
    path = state_file()
    try:
        ours = json.loads(path.read_text()).get("pid") == os.getpid()
    except (OSError, ValueError, AttributeError):
        return
    if ours:
        path.unlink(missing_ok=True)
