"""The house has no back-stairs: no two modules of src/rlrun (or of scripts/) import each other, directly or
round a longer circle, and the report does not reach up to the command-line module.

The graph is read from the source with ast, so it holds every import, at module level and inside
functions (a function-level import is still an arrow: the circle is there the moment it runs).
`from package import name` is an arrow to package.name where that is a module, else to the package;
a package's own __init__ is not an arrow from its submodules (Python imports it first anyway).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_names(folder: Path, prefix: str = "") -> dict[str, Path]:
    names = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[prefix + ".".join(parts)] = path
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of `modules` it imports (anywhere in its file)."""
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                            for alias in node.names}
        edges = set()
        for target in targets:
            while target and target not in modules:  # import a.b.c -> the nearest module we know
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(found: list[list[str]], graph: dict[str, set[str]]) -> str:
    return "; ".join(" / ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in found)


def test_the_graph_reader_sees_function_level_imports_and_circles(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from .c import g\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\nfrom pkg import b as _b\n")
    (tmp_path / "pkg" / "d.py").write_text("from pkg.a import something\nimport os\n")
    graph = import_graph(module_names(tmp_path))
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a", "pkg.b"}
    assert graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_circles_in_src():
    graph = import_graph(module_names(ROOT / "src"))
    assert "rlrun.bench.report" in graph and graph["rlrun.cli"], "the graph reader found rlrun's modules"
    found = cycles(graph)
    assert not found, f"import circles in src/: {describe(found, graph)}"


def test_no_import_circles_in_scripts():
    # Scripts import each other by their file names (scripts/ is on sys.path when one runs).
    graph = import_graph(module_names(ROOT / "scripts"))
    assert "bench_common" in graph["bench_speed"], "the graph reader found the scripts' imports"
    found = cycles(graph)
    assert not found, f"import circles in scripts/: {describe(found, graph)}"


def test_the_report_does_not_import_the_command_line_module():
    code = ("import sys, rlrun.bench.report, rlrun.bench.suite\n"
            "print(sorted(m for m in sys.modules if m == 'rlrun.cli' or m.startswith('rlrun.cli.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_conf_dir_comes_from_rlrun_resources_only():
    # rlrun.resources finds conf/; every other module asks it, never the command-line module.
    for path in sorted((ROOT / "src" / "rlrun").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and any(alias.name == "CONF_DIR" for alias in node.names):
                assert node.module == "rlrun.resources", f"{path.relative_to(ROOT)} imports CONF_DIR from {node.module}"
