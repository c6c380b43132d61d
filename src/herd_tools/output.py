"""Where the `herd` command writes, and its one error path.

Data (tables, JSON, reports) goes to stdout; progress, messages and errors go to stderr, so
`herd ps --json | jq` reads only data whatever goes wrong. Nothing is hard-wrapped: rich only
decorates a real terminal (colour, bold), and a line longer than the terminal is the terminal's
to fold, never broken by us, so a log, a pipe or CI gets whole lines.

Every error reaches the user as one line on stderr, `herd: <what went wrong>: <what to do>`.
Exit codes follow click's convention:

- 0: the work was done (an experiment met its targets; a deploy was promoted);
- 1: the work failed (no cloud running, a refused action, a target missed, a deploy rolled
  back): `Failure`, or any `herd.HerdError`;
- 2: a usage mistake (an unknown command or flag, a malformed value): `UsageMistake`, or one
  click found while parsing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console

from herd._model.errors import HerdError

#: Exit code of a command whose work failed.
FAILED = 1
#: Exit code of a usage mistake (click's convention).
USAGE = 2
#: Exit code of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


class UsageMistake(Exception):
    """The command was given something it cannot use: exit code 2.

    `hint` says what to do instead; the message says what was wrong.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class Failure(Exception):
    """The command's work failed, and the message says how: exit code 1."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def _console(stream: TextIO) -> Console:
    # soft_wrap: rich never inserts line breaks of its own; highlight off: no colour guessed
    # into numbers and paths of plain messages.
    return Console(file=stream, soft_wrap=True, highlight=False)


def out() -> Console:
    """A console on stdout, for data (looked up per call: tests swap sys.stdout)."""
    return _console(sys.stdout)


def err() -> Console:
    """A console on stderr, for progress and messages."""
    return _console(sys.stderr)


def say(message: str, style: str | None = None) -> None:
    """Tell the user something on stderr: progress, what was done. Never markup."""
    err().print(message, style=style, markup=False)


def error_line(message: str, hint: str = "") -> str:
    """The one shape of every error: `herd: <what went wrong>: <what to do>`, on one line."""
    text = " ".join(message.split())
    if hint:
        text = f"{text}: {' '.join(hint.split())}"
    return f"herd: {text}"


def report_error(message: str, hint: str = "") -> None:
    """Print an error line on stderr (red on a terminal)."""
    say(error_line(message, hint), style="red")


@contextlib.contextmanager
def fails_cleanly() -> Iterator[None]:
    """herd's own errors (no cloud running, a cloud already running, ...) become `Failure`:
    one line on stderr and exit code 1, not a traceback."""
    try:
        yield
    except HerdError as exc:
        raise Failure(str(exc)) from None


def usage(message: str, hint: str = "") -> UsageMistake:
    """A usage mistake to raise: `raise usage("--set takes KEY=VALUE", "e.g. --set A=1")`."""
    return UsageMistake(message, hint)


@dataclass(frozen=True)
class Column:
    """One column of a `Table`: its header, and how readily it goes when the screen is narrow.

    Columns with a higher `drop` go first; 0 never goes. A cell is never cut or wrapped.
    """

    header: str
    drop: int = 0
    right: bool = False


def numbers(*headers: str, drop: int = 0) -> list[Column]:
    """Columns of figures: right-aligned, so that digits line up, each going at `drop`."""
    return [Column(header, drop=drop, right=True) for header in headers]


def _width() -> int | None:
    """The width to fit, or None in a pipe (a pipe takes every column)."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        return None
    return shutil.get_terminal_size().columns


def _fit(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None) -> list[int]:
    """Indexes of the columns to show: drop the most droppable until the rest fit `width`."""
    shown = list(range(len(columns)))
    widths = [
        max([len(columns[i].header), *(len(row[i]) for row in rows)]) for i in range(len(columns))
    ]
    while width is not None:
        total = sum(widths[i] for i in shown) + 2 * (len(shown) - 1)
        droppable = [i for i in shown if columns[i].drop > 0]
        if total <= width or not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    return shown


def render_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    width: int | None,
) -> list[str]:
    """Plain aligned text: a header line and a line per row, columns two spaces apart.

    Names are never split: when `width` is too narrow, droppable columns go first, and what
    is still too wide is left for the terminal to fold whole.
    """
    shown = _fit(columns, rows, width)
    widths = {i: max([len(columns[i].header), *(len(row[i]) for row in rows)]) for i in shown}

    def line(cells: Sequence[str]) -> str:
        parts = [
            cells[i].rjust(widths[i]) if columns[i].right else cells[i].ljust(widths[i])
            for i in shown
        ]
        return "  ".join(parts).rstrip()

    return [line([column.header.upper() for column in columns]), *(line(row) for row in rows)]


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """Print a titled table on stdout: fitted to a terminal, whole in a pipe."""
    console = out()
    console.print(title, style="bold", markup=False)
    lines = render_table(columns, rows, _width())
    console.print(lines[0], style="dim", markup=False)
    for row in lines[1:]:
        console.print(row, markup=False)
    if not rows:
        console.print("(none)", style="dim", markup=False)
    console.print()
