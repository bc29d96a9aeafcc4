"""The import graph, read statically: no cycle between files or folders, and the layers import downward only.

Every ``import`` and ``from ... import`` in the repo's packages counts, at module level or inside a function
(a lazy import is still a dependency; it only runs later). An edge goes to the module whose namespace the
statement reads: ``import a.b`` and ``from a.b import name`` read ``a.b``; ``from a import b`` reads the
package ``a`` (its ``__init__`` runs and is asked for ``b`` first) and, when ``b`` is a submodule, ``a.b``
too. A package's ``__init__`` is a file like any other, so a registry in an ``__init__`` that imports its
providers is a cycle as soon as a provider imports ``from`` that package; providers import their siblings by
module path instead (``import agent.tee.snp_report as snp_report``).

Not seen: ``importlib.import_module`` with a name computed at run time (cocoon/cli.py's SUBSYSTEMS table);
cocoon/ is the top layer, so such an edge can only point down.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The repo's Python packages, bottom layer first. Folders not yet created are skipped.
PACKAGES = ("agent", "igvm", "verifier", "launcher", "image", "cocoon", "generator", "coordinator", "shim",
            "bench")

# Which folder may import which: the layering, as data. agent/ is the guest (what the image runs) and imports
# nothing outside itself; host code imports agent/'s formats downward, and the host services to come
# (generator: policy generator, coordinator: key broker, shim: containerd shim) sit on agent, igvm and the
# verifier. Adding an edge here must keep this table acyclic (test_the_layering_itself_has_no_cycle).
ALLOWED: dict[str, frozenset[str]] = {
    "agent": frozenset(),
    "igvm": frozenset({"agent"}),
    "verifier": frozenset({"agent"}),
    "launcher": frozenset({"agent", "igvm", "verifier"}),
    "image": frozenset({"agent", "igvm", "launcher"}),
    "cocoon": frozenset({"agent", "igvm", "verifier", "launcher", "image", "generator", "coordinator"}),
    "generator": frozenset({"agent", "igvm", "verifier"}),
    "coordinator": frozenset({"agent", "igvm", "verifier", "generator"}),  # generator.manifest: the format
    "shim": frozenset({"agent", "igvm", "verifier", "launcher", "generator"}),
    "bench": frozenset({"agent", "igvm", "verifier", "launcher", "image", "cocoon", "generator", "shim",
                        "coordinator"}),
}

# Known exceptions to the layering, file -> folders it may import against ALLOWED (none since issue 24 moved
# the host tools out of agent/). The test fails on a line that no longer matches a file, so an entry cannot
# outlive its reason.
KNOWN_UPWARD: dict[str, set[str]] = {}

# What guest code must not reach: the other packages, and the tests' and bench's modules, which their
# scripts import by bare name through sys.path (standard library names aside).
OUTSIDE_AGENT = ({p for p in PACKAGES if p != "agent"} | {"tests", "qemu_tests"}
                 | ({p.stem for d in ("tests", "bench", "qemu-tests") for p in (ROOT / d).glob("*.py")}
                    - set(sys.stdlib_module_names)))


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the packages (``a/__init__.py`` is ``a``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, name: str) -> Iterator[tuple[str, int]]:
    """(absolute dotted name read, line) for every import statement in the file, nested ones included."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base, node.lineno
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}", node.lineno


def _owner(dotted: str) -> str | None:
    """The repo module a dotted name lives in (the longest known prefix), or None for the standard library
    and third-party packages."""
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = {_owner(dotted) for dotted, _ in _imports(path, name)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative: the graph is a few hundred files deep at most)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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
                    out.append(sorted(component))
    return out


def _folder(module: str) -> str:
    return module.split(".")[0]


def _rel(module: str) -> str:
    return MODULES[module].relative_to(ROOT).as_posix()


def test_the_graph_sees_the_packages() -> None:
    graph = _graph()
    assert {"agent", "agent.tee", "agent.tee.sim", "verifier.tdx", "igvm"} <= set(graph)
    assert "agent.tee.sim" in graph["agent.tee"]  # the registry's lazy import, inside a function
    assert "agent.errors" in graph["verifier.snp"]


def test_no_cycle_between_files() -> None:
    cycles = [c for c in _components(_graph()) if len(c) > 1]
    assert not cycles, "import cycles between files: " + "; ".join(" <-> ".join(map(_rel, c)) for c in cycles)


def _folder_edges(graph: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    """(from folder, to folder) -> the file imports behind it, known upward imports of agent/ left out."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            src, dst = _folder(module), _folder(target)
            if src != dst and dst not in KNOWN_UPWARD.get(_rel(module), ()):
                edges.setdefault((src, dst), []).append(f"{_rel(module)} -> {_rel(target)}")
    return edges


def test_no_cycle_between_folders() -> None:
    edges = _folder_edges(_graph())
    folders = {_folder(m) for m in MODULES}
    cycles = [c for c in _components({f: {d for s, d in edges if s == f} for f in folders}) if len(c) > 1]
    assert not cycles, "import cycles between folders: " + "; ".join(
        " <-> ".join(c) + " (" + ", ".join(i for (s, d), v in edges.items() if s in c and d in c for i in v) + ")"
        for c in cycles)


def test_folders_import_only_the_layers_below() -> None:
    assert set(ALLOWED) == set(PACKAGES), "every package has a row in ALLOWED"
    wrong = {edge: why for edge, why in _folder_edges(_graph()).items() if edge[1] not in ALLOWED[edge[0]]}
    assert not wrong, "imports the layering does not allow (ALLOWED): " + "; ".join(
        f"{s} -> {d}: {', '.join(v)}" for (s, d), v in sorted(wrong.items()))


def test_the_layering_itself_has_no_cycle() -> None:
    cycles = [c for c in _components({f: set(to) for f, to in ALLOWED.items()}) if len(c) > 1]
    assert not cycles, f"ALLOWED permits a cycle between {cycles}"


def test_agent_imports_nothing_outside_agent() -> None:
    """By name, resolved or not: a guest module must not reach host code, tests or bench, not even by sys.path."""
    wrong = []
    for name, path in MODULES.items():
        if _folder(name) != "agent":
            continue
        allowed = KNOWN_UPWARD.get(_rel(name), set())
        for dotted, line in _imports(path, name):
            top = dotted.split(".")[0]
            if top in OUTSIDE_AGENT and top not in allowed:
                wrong.append(f"{_rel(name)}:{line} imports {dotted}")
    assert not wrong, "the guest imports host code: " + "; ".join(wrong)


def test_known_upward_imports_still_exist() -> None:
    """KNOWN_UPWARD lists only files that still exist in agent/ and still make the import listed."""
    graph = _graph()
    by_path = {_rel(m): m for m in MODULES}
    stale = []
    for path, folders in KNOWN_UPWARD.items():
        module = by_path.get(path)
        reached = {_folder(t) for t in graph.get(module, set())} if module else set()
        stale += [f"{path} -> {f}" for f in sorted(folders - reached)]
    assert not stale, f"delete from KNOWN_UPWARD (moved or fixed): {stale}"
