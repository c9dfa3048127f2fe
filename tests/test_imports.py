"""No import cycle between the package's modules, counting imports inside functions as well as top-level ones.

An import inside a function still ties the two modules together: the cycle only moves from import time to
call time (a half-initialised module, or a layer reaching up into one that depends on it). Every `sweep.*`
import of every module under src/sweep is read with `ast` (top level, functions, classes, try blocks),
relative imports resolved, `from sweep.x import y` taken as the module sweep.x.y when that is a module and
as sweep.x otherwise.

Packages: importing sweep.a.b runs sweep/a/__init__.py first, but that implicit step is not an edge (else
every package __init__ that re-exports a submodule would be a cycle); an explicit import of a package is an
edge to its __init__, so sweep.a.b importing sweep.a is a cycle only when sweep.a's __init__ imports
sweep.a.b back (directly or through others).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sweep"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for f in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports_of(name: str, path: Path, modules: set[str]) -> dict[str, int]:
    """The package modules `name` imports anywhere in its file -> the line of the first such import."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]  # the package relative imports start from
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target != name and (target == PACKAGE or target.startswith(PACKAGE + ".")):
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in modules else source, node.lineno)
    return found


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    files = module_files()
    names = set(files)
    graph = {}
    for name, path in files.items():
        graph[name] = {t: line for t, line in imports_of(name, path, names).items() if t in names}
    return graph, files


def cycles(graph: dict[str, dict[str, int]], limit: int = 100) -> list[list[str]]:
    """Every elementary cycle (up to `limit`), each as [a, b, ..., a] starting at its smallest module name: the
    strongly connected components first (Tarjan), then a depth-first walk inside each from each start module
    through larger-named modules only, so that every cycle is found once."""
    found: list[list[str]] = []
    for comp in components(graph):
        inside = {v: sorted(w for w in graph[v] if w in comp) for v in comp}
        for start in sorted(comp):
            path, stack = [start], [iter(inside[start])]
            while stack and len(found) < limit:
                w = next(stack[-1], None)
                if w is None:
                    stack.pop()
                    path.pop()
                elif w == start:
                    found.append([*path, start])
                elif w > start and w not in path:
                    path.append(w)
                    stack.append(iter(inside[w]))
    return found


def components(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    u = stack.pop()
                    on.discard(u)
                    comp.add(u)
                    if u == v:
                        break
                if len(comp) > 1:
                    comps.append(comp)
    return comps


def describe(cycle: list[str], graph: dict[str, dict[str, int]], files: dict[str, Path]) -> str:
    hops = [f"{a} -> {b}  ({files[a].relative_to(SRC.parent)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return "\n  ".join(hops)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "sweep"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "b.py").write_text("def f():\n    from . import c\n    from ..d import x\n    import sweep.a\n")
    (pkg / "a" / "c.py").write_text("from sweep.a.b import f\n")
    (pkg / "d.py").write_text("x = 1\n")
    names = {"sweep", "sweep.a", "sweep.a.b", "sweep.a.c", "sweep.d"}
    assert set(imports_of("sweep.a.b", pkg / "a" / "b.py", names)) == {"sweep.a.c", "sweep.d", "sweep.a"}
    graph = {"sweep": {}, "sweep.a": {}, "sweep.a.b": {"sweep.a.c": 2, "sweep.d": 3, "sweep.a": 4},
             "sweep.a.c": {"sweep.a.b": 1}, "sweep.d": {}}
    assert cycles(graph) == [["sweep.a.b", "sweep.a.c", "sweep.a.b"]]
    graph["sweep.a.c"] = {}
    assert cycles(graph) == []  # sweep.a.b importing its parent package sweep.a, which imports nothing back
    graph["sweep.a"] = {"sweep.a.b": 1}
    assert cycles(graph) == [["sweep.a", "sweep.a.b", "sweep.a"]]  # the parent importing the child back is one
    # one strongly connected component, three cycles (the one this test was written for: schema -> gguf ->
    # provenance -> loader -> schema, with gguf <-> provenance and provenance -> loader -> gguf inside it)
    g = {"s": {"g": 1}, "g": {"p": 1}, "p": {"l": 1, "g": 2}, "l": {"s": 1, "g": 2}}
    assert cycles(g) == [["g", "p", "g"], ["g", "p", "l", "g"], ["g", "p", "l", "s", "g"]]


def test_no_import_cycle_between_package_modules():
    graph, files = import_graph()
    assert len(graph) > 50 and any(graph.values())  # the walk found the package
    found = cycles(graph)
    assert not found, "import cycles (imports inside functions count):\n" + "\n".join(
        "  " + describe(c, graph, files) for c in found)
