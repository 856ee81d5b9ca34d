"""The layout ARCHITECTURE.md describes: imports run one way (the command line and deployments →
flows → tasks → the segflow package), no module imports itself back through others, and no module
grows past 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder in the repository -> the package it is installed as (pyproject.toml's package-dir)
PACKAGES = {
    "segflow": "segflow",
    "tasks": "segflow.tasks",
    "flows": "segflow.flows",
    "deployments": "segflow.deployments",
}
MAX_LINES = 600


def layer(module: str) -> int:
    """0: the segflow package; 1: tasks; 2: flows; 3: the edge (command line, deployments)."""
    if module == "segflow.cli" or module.startswith("segflow.deployments"):
        return 3
    if module.startswith("segflow.flows"):
        return 2
    if module.startswith("segflow.tasks"):
        return 1
    return 0


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join([package, *parts])] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """segflow modules a file imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known}


def test_the_layout_is_found():
    found = modules()
    assert {"segflow.config", "segflow.tasks.cluster", "segflow.flows.segmentation", "segflow.cli"} <= set(
        found
    )
    assert len(found) > 40


def test_every_package_is_installed():
    """A package missing from pyproject.toml works in an editable install and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module for module, path in modules().items() if path.name == "__init__.py"}
    assert packages - listed == set()


def test_imports_run_one_way():
    found = modules()
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, path in found.items()
        for target in imports(path, set(found))
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_no_module_imports_itself_back_through_others():
    found = modules()
    # imports inside functions count: a lazy import that breaks a circle at load time is still one
    graph = {module: imports(path, set(found)) - {module} for module, path in found.items()}
    # a package's __init__ is imported by each of its modules: that is not a circle of the code
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    state: dict[str, str] = {}
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "visiting"
        for target in sorted(graph[module]):
            if state.get(target) == "visiting":
                circles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_over_600_lines(module):
    lines = modules()[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it along its seams (STYLE.md)"
