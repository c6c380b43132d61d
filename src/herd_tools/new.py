"""`herd new NAME`: write a service package in the shape flix uses, with everything wired.

The package holds `interface.py` (the typed interface: an example method pair, an id type, a
facet, a declared error), `service.py` (the implementation, run with ``python -m``),
`library.py` (a look-aside cache and a stale fallback over the driver, and the drivers of the
services it calls), `fake.py` (a fake driver for callers' tests), a README, and tests: unit
tests against the fake, integration tests against the service as a process. The new group is
added to the app file of the folder (made if missing), so ``herd up DIR`` runs it.

Everything is decided and checked before anything is written, and nothing that exists is
overwritten: the package folder must be new, and the app file only gets a group appended
(its comments and layout stay as they were).

Templates are plain `string.Template` files in ``templates/new/`` with ``${name}``
placeholders. What varies between services is names and a few generated lines (import
blocks sorted the way ruff's isort sorts them, the drivers `--calls` wires), which a few lines
of Python render; `string.Template` fills the rest with no dependency, and its ``$`` never
clashes with Python source. A template engine (Jinja2) would add loops and conditionals that
these files do not need, and a project generator (cookiecutter, copier) a questionnaire,
hooks and an update flow around what is one command's output; herd installs neither.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import keyword
import re
import shutil
import string
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

import tomli_w

from herd._cloud.app import App, load
from herd._model.errors import ConfigurationError

TEMPLATES = Path(__file__).parent / "templates" / "new"
NAME_RULE = "lowercase letters, digits and single hyphens, starting with a letter"
INSTANCES = 2  # two, so a retry has a different instance to go to
LINE_LENGTH = 88  # ruff's default: the generated code passes `ruff format` with no settings

_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# It becomes class, variable and group names: the generated lines that hold two of them stay
# within LINE_LENGTH.
MAX_NAME = 24
# Package names that would hide herd itself or a test folder from imports.
_TAKEN = frozenset({"herd", "herd_tools", "tests"})
# Names `Dependencies` has of its own: a field cannot take them.
_DEPENDENCIES_OWN = frozenset({"from_env", "aclose"})

# (template, path in the package, the first-party imports it needs as {module: names}).
# Module and name placeholders are filled with `_values`.
_FILES: tuple[tuple[str, str, dict[str, tuple[str, ...]]], ...] = (
    ("package_init.py.tmpl", "__init__.py", {}),
    ("interface.py.tmpl", "interface.py", {}),
    (
        "service.py.tmpl",
        "service.py",
        {
            "{package}.interface": ("{Camel}", "Item", "ItemId", "NotFound"),
            "{package}.library": ("Dependencies",),
        },
    ),
    ("library.py.tmpl", "library.py", {"{package}.interface": ("{Camel}", "Item", "ItemId")}),
    ("fake.py.tmpl", "fake.py", {"{package}.interface": ("{Camel}", "Item", "ItemId", "NotFound")}),
    ("README.md.tmpl", "README.md", {}),
    ("tests_init.py.tmpl", "tests/__init__.py", {}),
    (
        "test_unit.py.tmpl",
        "tests/test_unit.py",
        {
            "{package}.fake": ("Fake{Camel}",),
            "{package}.interface": ("Item", "ItemId", "NotFound"),
            "{package}.library": ("{Camel}Library",),
        },
    ),
    (
        "test_integration.py.tmpl",
        "tests/test_integration.py",
        {"{package}.interface": ("{Camel}", "ItemId", "NotFound")},
    ),
)


@dataclasses.dataclass(frozen=True)
class Dependency:
    """A service the new one calls, and where its interface is."""

    service: str
    field: str
    interface: str
    module: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything `herd new` will write, decided and checked before it writes anything."""

    package_dir: Path
    files: dict[Path, str]
    app_file: Path
    app_text: str
    app_exists: bool


class BadName(ConfigurationError):
    """The name cannot be a service's: a usage mistake, whatever the folder holds."""


def package_name(name: str) -> str:
    """The Python package of the service `name` (``user-profile`` -> ``user_profile``).

    Raises `BadName` when `name` is not a service name or its package would be a
    keyword or hide a module (the standard library's, herd's).
    """
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise BadName(
            f"{name!r} is not a service name: use {NAME_RULE}, at most {MAX_NAME} characters "
            "(e.g. ratings, user-profile)"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package):
        raise BadName(f"{name!r} would make the package {package!r}, a keyword")
    if package in sys.stdlib_module_names or package in _TAKEN:
        raise BadName(
            f"{name!r} would make the package {package!r}, which hides the module of that name"
        )
    return package


def plan(name: str, directory: Path, calls: Sequence[str] = ()) -> Plan:
    """Decide what `herd new` writes for service `name` in `directory`, calling `calls`.

    Raises `ConfigurationError` (nothing written) for a bad name, anything already there, an
    app file that does not load, or a called service whose interface cannot be found.
    """
    package = package_name(name)
    app_file = directory / "app.toml"
    app = load(app_file) if app_file.exists() else None
    if app is not None and any(g.service == name for g in app.spec.groups):
        raise ConfigurationError(f"{app_file} already has a group of service {name!r}")
    package_dir = directory / package
    for taken in (package_dir, package_dir.with_suffix(".py")):
        if taken.exists():
            raise ConfigurationError(
                f"{taken} already exists: herd new overwrites nothing, choose another name"
            )
    root = app.root if app is not None else directory.resolve()
    module = _import_path(directory, root, package)
    dependencies = [_dependency(app, app_file, service) for service in dict.fromkeys(calls)]
    app_path = app_file.resolve().relative_to(root).as_posix()
    values = _values(name, module, app_path, dependencies)
    called = {d.module: (d.interface,) for d in dependencies}
    files = {
        package_dir / target: _render(
            template,
            values,
            _first_party(imports | (called if target == "library.py" else {}), values),
        )
        for template, target, imports in _FILES
    }
    for path, text in files.items():
        if path.suffix == ".py":
            _check_names(name, path, text)
    if _pytest_config(directory) is None:
        files[directory / "pytest.ini"] = _render("pytest.ini.tmpl", values)
    group: dict[str, str | int] = {
        "service": name,
        "module": f"{module}.service",
        "version": "v001",
        "instances": INSTANCES,
    }
    if app is None:
        app_text = (
            _render("app_header.toml.tmpl", values)
            + tomli_w.dumps({"name": _app_name(directory), "root": ".", "zones": ["a", "b", "c"]})
            + _group_table(group)
        )
    else:
        app_text = _appended(app_file, group)
    return Plan(package_dir, files, app_file, app_text, app is not None)


def write(plan: Plan) -> None:
    """Write what `plan` decided: the package folder (new), a pytest.ini if the folder had no
    pytest settings, then the app file's group.

    If writing fails half-way, what it made is removed again.
    """
    plan.package_dir.parent.mkdir(parents=True, exist_ok=True)
    plan.package_dir.mkdir()  # fails if it appeared since `plan` looked
    made: list[Path] = []
    try:
        for path, text in plan.files.items():
            path.parent.mkdir(exist_ok=True)
            with path.open("x") as out:  # "x": never overwrite, even what appeared since
                made.append(path)
                out.write(text)
        if plan.app_exists:
            with plan.app_file.open("a") as out:
                out.write(plan.app_text)
        else:
            with plan.app_file.open("x") as out:
                out.write(plan.app_text)
    except BaseException:
        shutil.rmtree(plan.package_dir, ignore_errors=True)
        for path in made:
            path.unlink(missing_ok=True)
        raise


def new_command(name: str, directory: Path, calls: Iterable[str]) -> None:
    """`herd new`: plan, write, and say what was written and what to do next."""
    from herd_tools.output import fails_cleanly, say, usage

    services = [s.strip() for value in calls for s in value.split(",") if s.strip()]
    with fails_cleanly():
        try:
            decided = plan(name, directory, services)
        except BadName as exc:
            raise usage(str(exc)) from None
        write(decided)
    for path in decided.files:
        print(f"wrote {path}")
    verb = "added group" if decided.app_exists else "wrote"
    print(f"{verb} {name}-v001 to {decided.app_file}")
    say(f"next: write the logic in {decided.package_dir / 'service.py'}; then")
    say(f"  python -m pytest {decided.package_dir}  # its tests")
    say(f"  herd up {directory}  # run it on the local cloud")


def _import_path(directory: Path, root: Path, package: str) -> str:
    """`package`'s import path from the app's root (``examples.flix.ratings``)."""
    try:
        parts = directory.resolve().relative_to(root).parts
    except ValueError:
        raise ConfigurationError(
            f"{directory} is outside its app's root {root}: its modules could not be imported"
        ) from None
    bad = [p for p in parts if not p.isidentifier() or keyword.iskeyword(p)]
    if bad:
        raise ConfigurationError(
            f"{directory}: {bad[0]!r} (between the app's root {root} and here) cannot be part "
            "of a module's import path"
        )
    return ".".join((*parts, package))


def _dependency(app: App | None, app_file: Path, service: str) -> Dependency:
    """Where the interface of `service`, a group of the app, is declared."""
    group = next((g for g in app.spec.groups if g.service == service), None) if app else None
    if app is None or group is None:
        raise ConfigurationError(f"--calls {service}: {app_file} has no group of that service")
    package, _, last = group.module.rpartition(".")
    if last != "service" or not package:
        raise ConfigurationError(
            f"--calls {service}: its module {group.module} is not PACKAGE.service, so its "
            "interface (PACKAGE.interface) cannot be found"
        )
    module = f"{package}.interface"
    path = app.root.joinpath(*module.split(".")).with_suffix(".py")
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError) as exc:
        raise ConfigurationError(f"--calls {service}: cannot read its interface: {exc}") from None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            k.arg == "name" and isinstance(k.value, ast.Constant) and k.value.value == service
            for k in node.keywords
        ):
            field = service.replace("-", "_")
            if keyword.iskeyword(field) or field in _DEPENDENCIES_OWN:
                raise ConfigurationError(f"--calls {service}: {field!r} cannot name a field")
            return Dependency(service, field, node.name, module)
    raise ConfigurationError(
        f"--calls {service}: {path} declares no class (herd.Interface, name={service!r})"
    )


def _values(
    name: str, module: str, app_path: str, dependencies: list[Dependency]
) -> dict[str, str]:
    """What the templates' placeholders stand for."""
    package = module.rpartition(".")[2]
    if dependencies:
        doc = (
            "Use them in the implementation as ``self.dependencies.FIELD``; give calls whose"
            "\n    answer is optional a `herd.fallback`, so the service answers without them."
        )
        readme = " (" + ", ".join(f"`{d.service}`" for d in dependencies) + ")"
    else:
        doc = (
            "None yet: ``herd new NAME --calls SERVICE`` wires them. By hand, add a\n"
            "    field (``movie: Movies``) and set it in `from_env` with\n"
            '    ``connect(Movies, "movie")``.'
        )
        readme = ""
    return {
        "service": name,
        "package": module,
        "Camel": "".join(part.capitalize() for part in name.split("-")),
        "env": package.upper(),
        "root_depth": str(module.count(".") + 2),
        "package_path": module.replace(".", "/"),
        "app_path": app_path,
        "dependencies_doc": doc,
        "dependencies_readme": readme,
        "dependency_fields": "".join(f"\n    {d.field}: {d.interface}" for d in dependencies)
        + ("\n" if dependencies else ""),
        "dependency_args": "".join(_dependency_arg(d) for d in dependencies)
        + ("\n        " if dependencies else ""),
        "dependency_env": "".join(
            f"    # No {d.service} runs here: a closed port refuses calls at once.\n"
            f'    env["{d.field.upper()}_ADDR"] = "127.0.0.1:1"\n'
            for d in dependencies
        ),
    }


def _dependency_arg(dependency: Dependency) -> str:
    """One keyword argument of `Dependencies.from_env`, laid out as ruff format lays it."""
    call = f'{dependency.interface}, "{dependency.service}"'
    line = f"\n            {dependency.field}=connect({call}),"
    if len(line) - 1 <= LINE_LENGTH:
        return line
    return f"\n            {dependency.field}=connect(\n                {call}\n            ),"


def _first_party(imports: dict[str, tuple[str, ...]], values: dict[str, str]) -> str:
    """The first-party import block, sorted as ruff's isort sorts it (modules, then names:
    constants, classes, the rest; case-insensitive), wrapped as ruff format wraps it."""
    wanted: dict[str, set[str]] = collections.defaultdict(set)
    for module, names in imports.items():
        wanted[module.format(**values)].update(n.format(**values) for n in names)
    lines = []
    for module in sorted(wanted):
        ordered = sorted(wanted[module], key=_member_order)
        line = f"from {module} import {', '.join(ordered)}"
        if len(line) > LINE_LENGTH:
            line = f"from {module} import (\n" + "".join(f"    {n},\n" for n in ordered) + ")"
        lines.append(line)
    return "\n".join(lines)


def _member_order(name: str) -> tuple[int, str, str]:
    kind = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name.lower(), name


def _render(template: str, values: dict[str, str], imports: str = "") -> str:
    return string.Template((TEMPLATES / template).read_text()).substitute(values, imports=imports)


def _check_names(name: str, path: Path, source: str) -> None:
    """Refuse a name whose classes would clash with another name in the generated module
    (``path`` makes a class ``Path``, which the integration test imports)."""
    bound: collections.Counter[str] = collections.Counter()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            bound[node.name] += 1
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).partition(".")[0] for a in node.names)
    clashes = sorted(n for n, count in bound.items() if count > 1)
    if clashes:
        raise BadName(
            f"{name!r}: the generated {path.name} would bind {clashes[0]!r} twice; "
            "choose another name"
        )


def _appended(app_file: Path, group: dict[str, str | int]) -> str:
    """What to append to an existing app file to add `group`, checked to still parse."""
    text = app_file.read_text()
    addition = ("" if text.endswith("\n") or not text else "\n") + _group_table(group)
    try:
        tomllib.loads(text + addition)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"{app_file}: cannot append a [[groups]] table ({exc}); add the group by hand"
        ) from None
    return addition


def _pytest_config(directory: Path) -> Path | None:
    """The file pytest would take its settings from for tests below `directory`, looking the
    way pytest does: upwards, for a pytest.ini, or a pyproject.toml, tox.ini or setup.cfg with a
    pytest section. A pytest.ini written where one of those holds would shadow it."""
    sections = {
        "pyproject.toml": "[tool.pytest.ini_options]",
        "tox.ini": "[pytest]",
        "setup.cfg": "[tool:pytest]",
    }
    for folder in (directory.resolve(), *directory.resolve().parents):
        if (folder / "pytest.ini").is_file():
            return folder / "pytest.ini"
        for file, section in sections.items():
            candidate = folder / file
            if candidate.is_file() and section in candidate.read_text(errors="replace"):
                return candidate
    return None


def _group_table(group: dict[str, str | int]) -> str:
    """`group` as a ``[[groups]]`` table (tomli_w would write a short one inline, and an inline
    array cannot be appended to)."""
    return "\n[[groups]]\n" + tomli_w.dumps(group)


def _app_name(directory: Path) -> str:
    """The app's name from its folder's (it names the run directory)."""
    name = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")
    return name or "app"
