"""The `herd` console script: a clear message when the `cli` extra is not installed."""

from __future__ import annotations

import sys

#: What the `cli` extra brings; an ImportError of anything else is a bug to show, not hide.
_CLI_EXTRA = {"typer", "rich", "tomli_w"}


def main() -> None:
    """Run the `herd` command."""
    try:
        from herd_tools.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _CLI_EXTRA:
            raise
        sys.exit(f"herd: the command needs the cli extra ({exc}): pip install 'herd[cli]'")
    cli_main()
