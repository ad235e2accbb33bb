"""No import cycle in `bmip/`: every module's imports, read statically (those inside functions and
under `if TYPE_CHECKING:` too), form a graph without cycles, so each module can be read, imported
and tested on its own.

A cycle fails the test with its chain, one import per step, e.g.
`bmip.a (bmip/a.py:3) -> bmip.b (bmip/b.py:12, inside load) -> bmip.a`. `from pkg import name` is an
import of the submodule `pkg.name` where there is one, else of `pkg` itself; importing a submodule
is not counted as importing its parent packages (their `__init__` re-exports would make every
package a cycle).
"""
from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PACKAGE = Path(__file__).resolve().parents[1] / "bmip"


@dataclass(frozen=True)
class Import:
    target: str
    file: str
    line: int
    function: str | None  # the enclosing function, for an import that runs only when it is called
    typing_only: bool = False  # under `if TYPE_CHECKING:`: a dependency all the same, though never run


def modules(package: Path) -> dict[str, Path]:
    """Module name -> file, for every .py under `package` (a package is its __init__.py)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, with a relative one resolved against `module`."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, known: set[str]) -> str | None:
    """`name` or its longest prefix that is a module of the package, or None (outside it)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path, known: set[str], root: Path) -> list[Import]:
    """The package modules `module` imports: anywhere in the file, at module level or in a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(root).as_posix()
    found: list[Import] = []

    def visit(nodes: Iterable[ast.AST], function: str | None, typing_only: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, function, True)
                visit(node.orelse, function, typing_only)
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, path.name == "__init__.py", node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            for target in dict.fromkeys(targets):
                resolved = _known(target, known)
                if resolved is not None and resolved != module:
                    found.append(Import(resolved, rel, node.lineno, function, typing_only))
            inside = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            visit(ast.iter_child_nodes(node), inside, typing_only)

    visit([tree], None, False)
    return found


def import_graph(package: Path) -> dict[str, list[Import]]:
    """Module -> the package modules it imports, one entry per target: its strongest import (at
    module level before inside a function, run before type checking only; then the first)."""
    files = modules(package)
    known = set(files)
    graph = {}
    for module, path in files.items():
        strongest: dict[str, Import] = {}
        for imp in sorted(imports(module, path, known, package.parent),
                          key=lambda i: (i.typing_only, i.function is not None, i.line)):
            strongest.setdefault(imp.target, imp)
        graph[module] = sorted(strongest.values(), key=lambda i: i.line)
    return graph


def _components(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected components of more than one
    module; Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def enter(node: str) -> tuple[str, Iterable[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(sorted(i.target for i in graph[node]))

    for start in sorted(graph):
        if start in index:
            continue
        work = [enter(start)]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    work.append(enter(child))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _shortest_cycle(graph: dict[str, list[Import]], start: str, within: set[str]) -> list[Import]:
    """The shortest chain of imports from `start` back to `start`, through modules of `within`."""
    previous: dict[str, tuple[str, Import]] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for imp in sorted(graph[node], key=lambda i: i.target):
            if imp.target not in within:
                continue
            if imp.target == start:
                chain = [imp]
                while node != start:
                    node, step = previous[node]
                    chain.append(step)
                return chain[::-1]
            if imp.target not in previous:
                previous[imp.target] = (node, imp)
                queue.append(imp.target)
    return []


def cycles(graph: dict[str, list[Import]]) -> list[str]:
    """Every cycle as a readable chain: for each group of modules that import each other, the
    shortest cycle through each of its modules (each cycle once)."""
    chains = []
    for component in _components(graph):
        seen = set()
        for start in component:
            chain = _shortest_cycle(graph, start, set(component))
            members = [start] + [imp.target for imp in chain[:-1]]
            first = members.index(min(members))
            key = tuple(members[first:] + members[:first])
            if key in seen:
                continue
            seen.add(key)
            steps = [start]
            for imp in chain:
                where = f"{imp.file}:{imp.line}" + (f", inside {imp.function}" if imp.function else "") + (
                    ", type checking only" if imp.typing_only else "")
                steps.append(f"({where}) -> {imp.target}")
            chains.append(" ".join(steps))
    return chains


def test_bmip_has_no_import_cycle():
    found = cycles(import_graph(PACKAGE))
    assert not found, (f"{len(found)} import cycle(s) in bmip/; each step is a module, where it imports the next, "
                       "and the module it imports:\n" + "\n".join(found))


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_a_cycle_through_imports_inside_functions_and_relative_ones_is_found_with_its_chain(tmp_path):
    package = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import thing\n",
        "b.py": "import os\n\n\ndef thing():\n    from . import c\n    return c\n",
        "c.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .a import thing as x\n",
        "d.py": "import pkg.a\n",
    })
    assert cycles(import_graph(package)) == [
        "pkg.a (pkg/a.py:1) -> pkg.b (pkg/b.py:5, inside thing) -> pkg.c (pkg/c.py:4, type checking only) -> pkg.a"]


def test_submodules_imported_from_their_package_and_parent_re_exports_are_no_cycle(tmp_path):
    package = _package(tmp_path, {
        "__init__.py": "from pkg.sub import helper\n",
        "sub/__init__.py": "from .tool import helper\n",
        "sub/tool.py": "from pkg.sub import other\nfrom .. import io\n\n\ndef helper():\n    pass\n",
        "sub/other.py": "",
        "io.py": "",
    })
    graph = import_graph(package)
    assert [i.target for i in graph["pkg.sub.tool"]] == ["pkg.sub.other", "pkg.io"]
    assert cycles(graph) == []


def test_configs_are_read_without_knowing_the_ablations():
    """`bmip.config` reads and validates a config file; what ablation variants add to a run (its
    recipe layers, its torch seed) is resolved above it, in `bmip.recipes` and `bmip.config_checks`."""
    graph = import_graph(PACKAGE)
    reached, todo = set(), ["bmip.config"]
    while todo:
        for imp in graph[todo.pop()]:
            if imp.target not in reached:
                reached.add(imp.target)
                todo.append(imp.target)
    assert "bmip.ablations" not in reached and "bmip.recipes" not in reached
    assert {"bmip.ablations", "bmip.config"} <= {i.target for i in graph["bmip.recipes"]}
