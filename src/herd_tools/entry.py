"""The `herd` console script: a clear message when the `cli` extra is not installed."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the `herd` command."""
    try:
        from herd_tools.cli import main as cli_main
    except ImportError as exc:
        sys.exit(f"herd: the command needs the cli extra ({exc}): pip install 'herd[cli]'")
    cli_main()
