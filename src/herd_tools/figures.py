"""A figure drawn to a PNG: every plot of the experiments and the simulation is one.

matplotlib is imported on the first figure, with a backend that needs no display, so that
`herd` starts without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def subplots(rows: int, cols: int, **options: Any) -> tuple[Any, Any]:
    """A new figure and its `rows` x `cols` axes (`plt.subplots`)."""
    figure, axes = _pyplot().subplots(rows, cols, **options)
    return figure, axes


def save(figure: Any, path: Path) -> None:
    """Lay `figure` out, write it to `path` as a PNG and let it go."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
