"""The app description: a system's services, server groups and zones, in one TOML file.

::

    name = "flix"
    root = "../.."                  # where `module`s import from, relative to this file
    # run_dir = "/tmp/flix"         # logs, data; relative to this file; default {root}/run/{name}
    zones = ["a", "b", "c"]
    setup = [["python", "-m", "examples.flix.store", "seed", "{run}/flix.db"]]

    [env]                           # for every instance; {run} is the app's run directory
    FLIX_DB = "{run}/flix.db"

    [[groups]]                      # a server group: one build of one service
    service = "movie"
    version = "v001"                # the group is named movie-v001
    module = "examples.flix.movie.service"
    instances = 3

    [front_door]                    # one fixed address in front of the edge instances
    service = "edge"
    port = 8080
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from herd._model.errors import ConfigurationError

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


class GroupSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One server group: an immutable set of instances of one build of a service."""

    service: str
    module: str
    args: list[str] = msgspec.field(default_factory=list)
    version: str = "v001"
    instances: int = 1
    env: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def name(self) -> str:
        """`service-version`, e.g. `movie-v001`."""
        return f"{self.service}-{self.version}"


class FrontDoorSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The one fixed address users reach: it spreads requests over a service's instances."""

    service: str
    port: int = 8080
    host: str = "127.0.0.1"
    timeout_s: float = 2.0


class AppSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A whole system, as `herd up` runs it."""

    name: str
    groups: list[GroupSpec]
    root: str = "."
    zones: list[str] = msgspec.field(default_factory=lambda: ["a", "b", "c"])
    env: dict[str, str] = msgspec.field(default_factory=dict)
    setup: list[list[str]] = msgspec.field(default_factory=list)
    front_door: FrontDoorSpec | None = None
    registry_port: int = 8500
    control_port: int = 8400
    run_dir: str | None = None


class App:
    """A loaded app description, with its paths resolved."""

    def __init__(self, spec: AppSpec, source: Path) -> None:
        self.spec = spec
        self.source = source
        self.root = (source.parent / spec.root).resolve()
        self.run_dir = (
            (source.parent / spec.run_dir).resolve()
            if spec.run_dir
            else self.root / "run" / spec.name
        )

    def expand(self, value: str) -> str:
        """Replace `{run}` and `{root}` in a setting."""
        return value.replace("{run}", str(self.run_dir)).replace("{root}", str(self.root))


def load(path: str | Path) -> App:
    """Read and check an app description; errors name the file and the problem."""
    source = Path(path)
    if source.is_dir():
        source = source / "app.toml"
    try:
        spec = msgspec.toml.decode(source.read_bytes(), type=AppSpec)
    except FileNotFoundError:
        raise ConfigurationError(f"{source}: no such app description") from None
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
    _check(spec, source)
    return App(spec, source)


def _check(spec: AppSpec, source: Path) -> None:
    if not spec.zones or len(set(spec.zones)) != len(spec.zones):
        raise ConfigurationError(f"{source}: zones must be distinct and not empty")
    seen: set[str] = set()
    for group in spec.groups:
        if not _NAME.match(group.service) or not re.match(r"^v\d{3}$", group.version):
            raise ConfigurationError(
                f"{source}: group {group.name!r}: service is lowercase letters, digits and -;"
                " version looks like v001"
            )
        if group.name in seen:
            raise ConfigurationError(f"{source}: group {group.name} is declared twice")
        if group.instances < 0:
            raise ConfigurationError(f"{source}: group {group.name}: instances must be >= 0")
        seen.add(group.name)
    services = {g.service for g in spec.groups}
    if spec.front_door is not None and spec.front_door.service not in services:
        raise ConfigurationError(
            f"{source}: the front door's service {spec.front_door.service!r} has no group"
        )
