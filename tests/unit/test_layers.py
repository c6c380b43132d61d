"""The folder layout is the architecture: packages import only downwards, and `import herd`
pulls in none of the tools' dependencies."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Layer of each package, lowest first. A module may import its own package and lower layers.
LAYERS: dict[str, int] = {
    "herd._model": 1,
    "herd._wire": 2,
    "herd._trace": 2,
    "herd._cache": 3,
    "herd._client": 3,
    "herd._server": 3,
    "herd._process": 4,
    "herd._registry": 5,
    "herd._store": 5,
    "herd._cloud": 6,
    "herd": 7,
    "herd_tools": 8,
}


def _package(module: str) -> str:
    """The layered package a module belongs to (the longest matching prefix)."""
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every herd module `module` imports, at any depth of its code (lazy imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    modules = _modules()
    return {
        name for name in names if name in modules and name.split(".")[0] in ("herd", "herd_tools")
    }


def _edges() -> dict[str, set[str]]:
    """Package → packages it imports."""
    edges: dict[str, set[str]] = {name: set() for name in LAYERS}
    for module, path in _modules().items():
        source = _package(module)
        for target in _imports(module, path):
            if _package(target) != source:
                edges[source].add(_package(target))
    return edges


def test_every_module_belongs_to_a_layer() -> None:
    for module in _modules():
        _package(module)


def test_packages_import_only_downwards() -> None:
    upward = []
    for module, path in _modules().items():
        source = _package(module)
        for target in _imports(module, path):
            destination = _package(target)
            if destination != source and LAYERS[destination] >= LAYERS[source]:
                upward.append(f"{module} imports {target} ({source} → {destination})")
    assert not upward, "\n".join(upward)


def test_no_circle_between_packages() -> None:
    edges = _edges()
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        assert node not in visiting, " → ".join([*visiting[visiting.index(node) :], node])
        if node in done:
            return
        visiting.append(node)
        for target in edges[node]:
            visit(target)
        visiting.pop()
        done.add(node)

    for node in edges:
        visit(node)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself can fail: an upward import written into a model module is caught."""
    module = "herd._model.errors"
    path = _modules()[module]
    probe = tmp_path / "errors.py"
    probe.write_text(path.read_text() + "\nfrom herd._client.driver import make_driver\n")
    assert "herd._client.driver" in _imports(module, probe)


def test_import_herd_needs_none_of_the_tools() -> None:
    """A service process imports herd without the tools' dependencies installed (structlog
    uses rich only when it happens to be there)."""
    tools = ("typer", "rich", "httpx", "tenacity", "matplotlib", "herd_tools")
    probe = f"""
import importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {tools!r}:
            raise ImportError(f"{{name}} is not installed")
        return None

sys.meta_path.insert(0, Absent())
import herd
print(sorted(m for m in sys.modules if m.split(".")[0] in {tools!r}))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
