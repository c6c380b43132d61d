"""The one way every part of the control plane keeps a change in the history."""

from __future__ import annotations

from typing import Protocol


class Recorder(Protocol):
    """Keeps one change to the cloud in its history: the `History` itself, or the control plane,
    which also logs it. Chaos, the instance watch, deploys and supervision record through it."""

    def record(
        self,
        kind: str,
        *,
        cause: str = "",
        group: str | None = None,
        instance: str | None = None,
        **detail: object,
    ) -> object:
        """Record a change of `kind` (`instance.launched`, `chaos.kill`...), `cause` saying why,
        about `group` and `instance` where it concerns one, with `detail` as JSON."""
        ...
