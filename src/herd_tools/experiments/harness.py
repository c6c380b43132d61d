"""What every `herd experiment` shares: running on the local cloud, the command's run, and its end.

An experiment is a coroutine that returns its figures. `on_cloud` starts an app on the local
cloud, runs a body once everything is up and stops the cloud whatever happened; `run` runs the
coroutine the way every command does (herd's logging, uvloop, herd's errors as one line); and
`conclude` writes the figures where asked and turns the targets missed into the exit code: 0
only when every target was met, `Failure` (exit 1) naming each one missed.

Progress goes to stderr (`herd_tools.output.say`), figures to stdout (`print_table`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import typer
import uvloop

from herd._cloud.app import App
from herd._cloud.controller import Controller
from herd._cloud.up import up
from herd._process.logging import configure
from herd_tools import options
from herd_tools.output import Failure, fails_cleanly, say

T = TypeVar("T")
R = TypeVar("R")

#: How an experiment tells the user what it is doing (`herd_tools.output.say`).
Say = Callable[[str], None]


async def on_cloud(
    app: Path | App, body: Callable[[Controller], Awaitable[T]], *, say: Say = say
) -> T:
    """Start `app` on the local cloud, run `body` on its controller once everything is up,
    stop the cloud (whether `body` returned or raised), and return what `body` returned."""
    outcome: list[T] = []

    async def ready(controller: Controller) -> None:
        try:
            outcome.append(await body(controller))
        finally:
            controller.stopped.set()

    await up(app, say=say, on_ready=ready)
    if not outcome:
        raise Failure("the app stopped before the experiment finished", "was it interrupted?")
    return outcome[0]


def run(experiment: Coroutine[Any, Any, T]) -> T:
    """Run an experiment to its end with herd's logging on uvloop; herd's own errors (a cloud
    already running, a port taken) become one line and exit code 1."""
    configure()
    with fails_cleanly():
        return uvloop.run(experiment)


def conclude(
    result: R,
    missed: Sequence[str],
    *,
    json_path: Path | None = None,
    plot: Callable[[R, Path], None] | None = None,
    plot_path: Path | None = None,
) -> None:
    """Write `result` as JSON and draw it where asked; then fail (exit 1) if any target was
    `missed`, naming each."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
        say(f"wrote {json_path}")
    if plot_path is not None and plot is not None:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot(result, plot_path)
        say(f"wrote {plot_path}")
    if missed:
        raise Failure(
            f"{len(missed)} target(s) missed: {'; '.join(missed)}",
            "the figures are on stdout",
        )


#: The options every experiment on flix shares.
APP = typer.Option(
    Path("examples/flix/app.toml"), "--app", metavar="APP.toml", help="The app to run (flix)."
)
JSON = typer.Option(None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE.")
RATE = options.per_second(200.0, "Requests per second through the front door.")


def plot_option(what: str) -> Any:
    """The `--plot FILE.png` option of an experiment that draws `what`."""
    return typer.Option("--plot", metavar="FILE.png", help=f"Draw {what} to FILE.png.")


def target_option(default: float, flag: str, what: str, docs: str) -> Any:
    """A `--FLAG PERCENT` option setting one of a run's targets (a short run's own)."""
    return options.percent(default, f"{what} (a short run's own; see {docs}).", flag)
