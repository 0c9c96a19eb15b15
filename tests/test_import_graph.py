"""The import graph of ``tlsearch``: no module cycles, no upward imports, Ray where searches run.

Every ``import`` and ``from ... import`` of every module under ``tlsearch/`` counts, at module
level or inside a function (also under ``if TYPE_CHECKING:``), resolved to the ``tlsearch``
module it names (``from tlsearch.search.run import driver`` -> ``tlsearch.search.run.driver``; names
imported from a package's ``__init__`` -> the package). Imports through ``importlib`` are not
seen: do not hide dependencies that way.

Layer order, lowest first (:data:`LAYERS`). A package (``tlsearch.<name>``) may import its own
modules and packages of lower layers, never a package of its own layer or of a higher one::

     0  lazy, logutil, yamlfile,      shared utilities
        storage
     1  tlsearch                      the root package: version, the API's lazy names
     2  structures                    records in
     3  graphs                        graphs and their cache
     4  model                         ALIGNN (and the kernels)
     5  training                      the training recipe, checkpoints
     6  transfer                      PT, FT strategies, MPT
     7  prediction, plots             a trained model applied to new structures, one run's plots
     8  results                       the Parquet run log: written by search, read by analysis
     9  jobs                          job identity, the one adapter to training (no Ray)
    10  search, search.plan           the spec and the compiled plan (no Ray)
    11  search.watch                  status, console, trackers: read the plan and the rows
    12  search.run                    Ray Tune, Ray Train: runs the plan
    13  analysis, bench               read the run log / measure searches and training
    14  api                           the Python API: runs, searches, analysis, prediction
    15  cli                           the command on top of the API; nothing imports it...
    16  __main__                      ...but ``python -m tlsearch``

The search package counts as three: ``tlsearch.search.plan``, ``.watch`` and ``.run`` are placed
as packages of their own (``search.plan`` ...), in that order.

``results`` sits below ``search`` because the search writes its rows (``results`` imports no other
tlsearch package). A package that is not in :data:`LAYERS` fails the check until it is placed.

Ray: only ``tlsearch.search.run`` and ``tlsearch.search.watch`` import ``ray`` (``search.plan``
never does), and ``tlsearch.bench``,
which starts and stops Ray around the searches and packed trials it measures. The packages below
the search layer and ``analysis`` also may not import (anywhere) a tlsearch module that uses Ray:
one that imports ``ray`` (anywhere in it), or one whose module-level imports bring in such a
module. The analysis reads results; it never starts a search (``best_pair(search=...)`` runs
one from the API layer).

Known violations owned by other parts of issue 33 are listed in :data:`KNOWN_CYCLES` and
:data:`KNOWN_UPWARD`; the check fails on any violation not listed and on a listed one that no
longer occurs, so the lists can only shrink.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tlsearch"

LAYERS: list[set[str]] = [
    {"lazy", "logutil", "yamlfile", "storage"},
    {"tlsearch"},
    {"structures"},
    {"graphs"},
    {"model"},
    {"training"},
    {"transfer"},
    {"prediction", "plots"},
    {"results"},
    {"jobs"},
    {"search", "search.plan"},
    {"search.watch"},
    {"search.run"},
    {"analysis", "bench"},
    {"api"},
    {"cli"},
    {"__main__"},
]

#: The parts of the search package, each placed in LAYERS as ``search.<part>``.
SEARCH_PARTS = {"plan", "watch", "run"}

#: Packages allowed to ``import ray`` (themselves and their subpackages).
RAY_PACKAGES = {"search.watch", "search.run", "bench"}
#: Packages above the search layer that, like those below it, may not import a module using Ray.
RAY_FREE_ABOVE_SEARCH = {"analysis"}

#: Module cycles owned by other helpers of issue 33 (each a set of modules; remove when fixed).
KNOWN_CYCLES: dict[frozenset[str], str] = {}

#: Upward imports owned by other helpers of issue 33: (importer, imported) -> owner.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int
    module_level: bool  # executed when ``source`` is imported (not in a function/TYPE_CHECKING)

    def where(self) -> str:
        return f"{self.path}:{self.line}: {self.source} imports {self.target}"


@dataclass
class Graph:
    """Modules under a package root and the imports between them (plus external top names)."""

    modules: dict[str, Path]
    edges: list[Edge] = field(default_factory=list)
    external: dict[str, list[Edge]] = field(default_factory=dict)  # by top-level name
    missing: list[Edge] = field(default_factory=list)  # imports of modules that do not exist


def module_name(path: Path, root: Path) -> str:
    parts = (root.name, *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parse_graph(root: Path) -> Graph:
    """Every module under ``root`` (a package folder) and every import it makes."""
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = Graph(modules)
    top = root.name
    seen: set[Edge] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        rel = str(path.relative_to(root.parent))
        for node, module_level in _imports(tree):
            for target in _targets(name, path, node):
                if target == top or target.startswith(top + "."):
                    resolved = _known(target, modules)
                    named = target if isinstance(node, ast.Import) else target.rsplit(".", 1)[0]
                    missing = Edge(name, named, rel, node.lineno, module_level)
                    # import a.b / from a.b import c: a.b must be a module
                    if named not in modules and missing not in seen:
                        seen.add(missing)
                        graph.missing.append(missing)
                    edge = Edge(name, resolved, rel, node.lineno, module_level)
                    if resolved != name and edge not in seen:
                        seen.add(edge)
                        graph.edges.append(edge)
                elif target:
                    edge = Edge(name, target, rel, node.lineno, module_level)
                    graph.external.setdefault(target.split(".")[0], []).append(edge)
    return graph


def _imports(tree: ast.Module):
    """(import node, runs at import time) for every import in ``tree``."""

    def visit(node: ast.AST, module_level: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, module_level
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:  # never executed: imports for annotations
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), module_level)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from visit(child, False)
            else:
                yield from visit(child, module_level)

    yield from visit(tree, True)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names]


def _known(target: str, modules: dict[str, Path]) -> str:
    """The module ``target`` names (``pkg.mod.function`` -> ``pkg.mod``)."""
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def package_of(module: str) -> str:
    """``tlsearch.graphs.store`` -> ``graphs``; ``tlsearch.search.run.driver`` -> ``search.run``
    (the search's parts count as packages); the root package -> ``tlsearch``."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "search" and parts[2] in SEARCH_PARTS:
        return f"search.{parts[2]}"
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(package: str) -> int | None:
    return next((i for i, names in enumerate(LAYERS) if package in names), None)


def cycles(graph: Graph) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    succ: dict[str, set[str]] = defaultdict(set)
    for e in graph.edges:
        succ[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in graph.modules:
        if start in index:
            continue
        work = [(start, iter(sorted(succ[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(succ[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def cycle_problems(graph: Graph, known: dict[frozenset[str], str]) -> list[str]:
    problems = []
    found = {frozenset(c) for c in cycles(graph)}
    for component in sorted(found - set(known), key=sorted):
        inside = [e for e in graph.edges if e.source in component and e.target in component]
        lines = "\n    ".join(e.where() for e in sorted(inside, key=lambda e: (e.path, e.line)))
        problems.append(f"import cycle among {sorted(component)}:\n    {lines}")
    for component in sorted(set(known) - found, key=sorted):
        problems.append(
            f"KNOWN_CYCLES lists {sorted(component)} ({known[component]}), which is no longer a "
            "cycle: remove it from the list"
        )
    return problems


def upward_problems(graph: Graph, known: dict[tuple[str, str], str]) -> list[str]:
    problems = []
    seen = set()
    for e in graph.edges:
        src, dst = package_of(e.source), package_of(e.target)
        if src == dst:
            continue
        ls, ld = layer_of(src), layer_of(dst)
        if ls is None or ld is None:
            continue  # reported by unplaced_packages
        if ld >= ls:
            seen.add((e.source, e.target))
            if (e.source, e.target) not in known:
                kind = "same-layer" if ld == ls else "upward"
                problems.append(f"{e.where()} ({kind}: {src} is layer {ls}, {dst} layer {ld})")
    for pair in sorted(set(known) - seen):
        problems.append(
            f"KNOWN_UPWARD lists {pair[0]} -> {pair[1]} ({known[pair]}), which no longer "
            "occurs: remove it from the list"
        )
    return problems


def unplaced_packages(graph: Graph) -> list[str]:
    packages = {package_of(m) for m in graph.modules}
    return sorted(p for p in packages if layer_of(p) is None)


def ray_users(graph: Graph) -> set[str]:
    """Modules that import ``ray`` (anywhere in them), and those whose import brings one in
    (module-level tlsearch imports; importing a module also runs its packages' ``__init__``)."""
    direct = {e.source for e in graph.external.get("ray", [])}
    runs: dict[str, set[str]] = defaultdict(set)
    for e in graph.edges:
        if e.module_level:
            runs[e.source].add(e.target)
    for name in graph.modules:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in graph.modules:
                runs[name].add(parent)
    pulls = set(direct)
    changed = True
    while changed:
        changed = False
        for name in graph.modules:
            if name not in pulls and runs[name] & pulls:
                pulls.add(name)
                changed = True
    return pulls


def ray_problems(graph: Graph) -> list[str]:
    problems = []
    for e in graph.external.get("ray", []):
        if package_of(e.source) not in RAY_PACKAGES:
            problems.append(f"{e.where()} (only {sorted(RAY_PACKAGES)} may)")
    search_layer = layer_of("search.watch")
    pulls = ray_users(graph)
    for e in graph.edges:
        src = package_of(e.source)
        below = (layer_of(src) or 0) < search_layer
        outside = package_of(e.target) != src  # inside: the module itself is reported
        if (below or src in RAY_FREE_ABOVE_SEARCH) and outside and e.target in pulls:
            problems.append(f"{e.where()}, which uses ray (imports it, or a module that does)")
    return problems


@functools.cache
def tlsearch_graph() -> Graph:
    return parse_graph(ROOT)


def _fail(problems: list[str]) -> None:
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_every_package_has_a_layer():
    unplaced = unplaced_packages(tlsearch_graph())
    assert not unplaced, f"place these packages in LAYERS of {__file__}: {unplaced}"


def test_every_import_names_an_existing_module():
    """A stale import (of a moved module) inside a function fails only when it runs."""
    _fail([f"{e.where()}, which does not exist" for e in tlsearch_graph().missing])


def test_no_import_cycles():
    _fail(cycle_problems(tlsearch_graph(), KNOWN_CYCLES))


def test_no_upward_imports():
    _fail(upward_problems(tlsearch_graph(), KNOWN_UPWARD))


def test_only_the_search_layer_and_the_bench_import_ray():
    _fail(ray_problems(tlsearch_graph()))


def test_the_checks_find_cycles_upward_and_missing_imports_and_stale_entries(tmp_path):
    """The checker itself, on a made-up package: a cycle hidden in a function, a relative import
    from ``structures`` up to ``search``, an import of a module that does not exist."""
    pkg = tmp_path / "tlsearch"
    files = {
        "__init__.py": "",
        "structures/__init__.py": "",
        "structures/a.py": "def f():\n    from ..search import b\n",
        "search/__init__.py": "",
        "search/b.py": "import tlsearch.structures.a\nfrom tlsearch.search.c import g\n",
        "search/c.py": "def g():\n    from tlsearch.search import b\n",
        "search/d.py": "def h():\n    from tlsearch.search.gone import x\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    graph = parse_graph(pkg)
    assert [sorted(c) for c in cycles(graph)] in (
        [["tlsearch.search.b", "tlsearch.search.c", "tlsearch.structures.a"]],
    )
    problems = upward_problems(graph, {("tlsearch.graphs.x", "tlsearch.search.y"): "gone"})
    assert problems[0].startswith(
        "tlsearch/structures/a.py:2: tlsearch.structures.a imports tlsearch.search.b (upward"
    )
    assert "no longer occurs" in problems[1] and len(problems) == 2
    stale = frozenset({"tlsearch.x", "tlsearch.y"})
    problems = cycle_problems(graph, {stale: "fixed"})
    assert "tlsearch/search/c.py:2: tlsearch.search.c imports tlsearch.search.b" in problems[0]
    assert "no longer a cycle" in problems[1]
    assert [e.where() for e in graph.missing] == [
        "tlsearch/search/d.py:2: tlsearch.search.d imports tlsearch.search.gone"
    ]
