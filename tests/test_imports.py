"""Imports run one way: no cycle among the modules of grokbench/ and analysis/, and each imports alone.

The fast test reads the source, not the running interpreter: an import inside a function counts (it is still a
dependency, only a later one), one under `if TYPE_CHECKING:` does not (it never runs). `from pkg import name`
imports the module pkg.name where one exists, else pkg itself.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
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


def _imports(node: ast.AST, functions: bool = True):
    """Every import statement below node, in source order, skipping the bodies of `if TYPE_CHECKING:` (but not their
    `else`), and those of functions unless `functions`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        if not functions and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if _type_checking_only(child):
            for stmt in child.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), functions)
        else:
            yield from _imports(child, functions)


def imported_names(name: str, path: Path, modules: dict[str, Path], functions: bool = True) -> list[str]:
    """What module `name` (in `path`) imports, in source order: a module of the packages by its dotted name, any
    other module as written (`ray.tune`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _imports(ast.parse(path.read_text(), str(path)), functions):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
            continue
        base = package.rsplit(".", node.level - 1)[0] if node.level else ""
        source = ".".join(part for part in (base, node.module) if part)
        found += [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
    return found


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the packages that module `name` (in `path`) imports."""
    return {m for m in imported_names(name, path, modules) if m in modules and m != name}


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


def third_party_on_import(name: str, modules: dict[str, Path]) -> tuple[str, ...]:
    """The modules outside the standard library that importing module `name` imports (`ray.tune`, `torch`), through
    the modules of the packages it imports too, in the order it first imports them; not those its functions
    import."""
    found: list[str] = []
    seen: set[str] = set()

    def visit(module: str) -> None:
        parts = module.split(".")
        for enclosing in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):  # a, a.b, then a.b.c
            if enclosing in modules and enclosing not in seen:
                seen.add(enclosing)
                for target in imported_names(enclosing, modules[enclosing], modules, functions=False):
                    top = target.partition(".")[0]
                    if top in PACKAGES:
                        visit(target)
                    elif top not in sys.stdlib_module_names and target not in found:
                        found.append(target)

    visit(name)
    return tuple(found)


# Before each of our modules, its interpreter has imported exactly the third-party modules (torch, Ray Tune: seconds
# each) that importing the module would import, and nothing of ours: what decides whether a module leans on an import
# it does not make is that set, not its order. So every module's set is imported in one shared order, the most widely
# imported first, down a tree of the prefixes they share: each next one in a child forked from the state its prefix
# reached, and each of our modules in a child forked from the state its own set reaches. torch is so imported once,
# not once a module (nor once for each order in which modules reach it). A clash between third-party packages that
# only one order of their imports shows is tried in the shared order alone. Each child tells what went wrong below it
# through a pipe: an import that raised, or the exit status of one that ended its process.
FORK_TREE = """
import importlib, json, os, sys

def in_child(work, name, *args):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            message = work(*args)
        except BaseException as error:
            message = f"{name}: {type(error).__name__}: {error}\\n"
        with os.fdopen(write, "w") as answer:
            answer.write(message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        message = answer.read()
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return message or (f"{name}: its import ended with exit status {code}\\n" if code else "")

def import_module(name):
    importlib.import_module(name)
    return ""

def import_then_visit(package, node, path):
    importlib.import_module(package)
    return visit(node, [*path, package])

def visit(node, path):
    ours = sorted(m for m in sys.modules if m.partition(".")[0] in ("grokbench", "analysis"))
    if ours:
        return f"importing {path} imported {ours}\\n"
    found = [in_child(import_module, name, name) for name in node["modules"]]
    found += [in_child(import_then_visit, f"importing {p}", p, child, path) for p, child in node["then"].items()]
    return "".join(found)

path = json.loads(sys.argv[2])
for package in path:
    importlib.import_module(package)
failures = visit(json.loads(sys.argv[1]), path)
if failures:
    sys.exit(failures)
"""


def import_tree(modules: dict[str, Path]) -> dict:
    """A tree of the modules' third-party imports, each module's in the shared order (the most widely imported
    first, then by name): {"modules": those whose imports end here, "then": {next third-party module: node}}."""
    imports = {name: third_party_on_import(name, modules) for name in sorted(modules)}
    reach = Counter(package for packages in imports.values() for package in packages)
    root: dict = {"modules": [], "then": {}}
    for name, packages in imports.items():
        node = root
        for package in sorted(packages, key=lambda p: (-reach[p], p)):
            node = node["then"].setdefault(package, {"modules": [], "then": {}})
        node["modules"].append(name)
    return root


def _import_below(node: dict, path: list[str]) -> str:
    """What went wrong importing each module of the tree below `node`, in an interpreter that imported `path` first
    ("" if nothing)."""
    argv = [sys.executable, "-c", FORK_TREE, json.dumps(node), json.dumps(path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    return (
        f"below the import of {path or 'no third-party module'} (exit {done.returncode}):\n{done.stderr}"
        if done.returncode
        else ""
    )


@pytest.mark.slow
def test_each_module_imports_alone():
    """A module that imports only because another was imported first fails here, as one that crashes its
    interpreter does. Before a module, its interpreter has imported only the third-party modules that importing the
    module imports (in the order the tree shares)."""
    root = import_tree(module_files())
    # an interpreter for the modules that import no third-party module, and one for each first one imported
    branches = [({"modules": root["modules"], "then": {}}, [])]
    branches += [(child, [package]) for package, child in root["then"].items()]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        failures = "".join(pool.map(lambda branch: _import_below(*branch), branches))
    assert not failures, "modules that do not import alone:\n" + failures
