"""Imports run one way: no cycle among the modules of grokbench/ and analysis/, and each imports alone.

The fast test reads the source, not the running interpreter: an import inside a function counts (it is still a
dependency, only a later one), one under `if TYPE_CHECKING:` does not (it never runs). `from pkg import name`
imports the module pkg.name where one exists, else pkg itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("grokbench", "analysis")


def module_files() -> dict[str, Path]:
    """Dotted module name → its file, for every module of the packages (a package is its __init__.py)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(node: ast.AST):
    """Every import statement below node, skipping the bodies of `if TYPE_CHECKING:` (but not their `else`)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        if _type_checking_only(child):
            for stmt in child.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]))
        else:
            yield from _imports(child)


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the packages that module `name` (in `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = package.rsplit(".", node.level - 1)[0] if node.level else ""
        source = ".".join(part for part in (base, node.module) if part)
        found.update(f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan's algorithm), as the
    path a → b → ... → a."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on_stack.discard(w)
                component.append(w)
            on_stack.discard(v)
            if component:
                components.append({v, *component})

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_within(component, graph) for component in components]


def _cycle_within(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first search back to it)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{component} is not strongly connected")


def test_the_walk_sees_imports_of_every_kind(tmp_path):
    """Relative, function-level and `from pkg import module` imports count; TYPE_CHECKING ones do not."""
    modules = {name: tmp_path for name in ("grokbench", "grokbench.a", "grokbench.b", "grokbench.c", "grokbench.d")}
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "def f():\n    from grokbench.c import something\n"
        "if TYPE_CHECKING:\n    import grokbench.d\n"
    )
    assert imported_modules("grokbench.a", source, modules) == {"grokbench.b", "grokbench.c"}


def test_find_cycles_names_each_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_grokbench_or_analysis():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(cycle) for cycle in cycles)


def third_party_packages() -> list[str]:
    """The top-level packages outside the standard library that the modules import (torch, ray, mlflow, ...)."""
    found = set()
    for path in module_files().values():
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.partition(".")[0] for alias in node.names)
            elif not node.level and node.module:
                found.add(node.module.partition(".")[0])
    return sorted(found - set(PACKAGES) - set(sys.stdlib_module_names))


# Imports the third-party packages once, then each module in a child forked from that state: the child holds no
# module of grokbench/ or analysis/ but the one it imports, and pays for torch, Ray and MLflow no more.
FORK_EACH = """
import importlib, os, sys
for package in sys.argv[2].split(","):
    importlib.import_module(package)
for name in sys.argv[1].split(","):
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = ""
        except BaseException as error:
            message = f"{name}: {type(error).__name__}: {error}\\n"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        sys.stdout.write(answer.read())
    os.wait()
"""


@pytest.mark.slow
def test_each_module_imports_alone():
    """A module that imports only because another of the packages was imported first fails here. The third-party
    packages are imported first, each only as its top-level package (`import ray`, never `ray.tune`), which any
    module importing it does the same way."""
    modules, packages = ",".join(sorted(module_files())), ",".join(third_party_packages())
    done = subprocess.run(
        [sys.executable, "-c", FORK_EACH, modules, packages], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert not done.stdout, "modules that do not import alone:\n" + done.stdout
