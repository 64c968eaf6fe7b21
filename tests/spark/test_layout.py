"""The job's layout (issue 19): spark_jobs/ grouped by concern, and no import cycle among its modules."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

from spark_jobs.packaging import spark_package_zip

ROOT = Path(__file__).resolve().parents[2] / "spark_jobs"
TOP_LEVEL = {"__init__", "main", "job", "manifest", "storage", "session", "packaging", "release"}
PACKAGES = {
    "featurize": {
        "__init__", "engines", "fidelity", "images", "models", "network", "one_pass", "quantization"
    },
    "pca": {
        "__init__", "aggregate", "projection", "stats", "table_stats", "versions"
    },
    "lakehouse": {
        "__init__", "erasure", "liveness", "near_duplicates", "reports", "tables", "time_to_feature",
        "vector_scan"
    },
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (function-level ones included), except those under
    ``if TYPE_CHECKING:`` (annotations only: never executed)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """spark_jobs module -> the spark_jobs modules it imports (``from pkg import module`` resolves to the module)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                           for a in node.names]
            else:
                raise AssertionError(f"{path}: relative import (the EMR entry point runs main.py as a script)")
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan 1972), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_cycle_finder_finds_a_lazy_import_circle(tmp_path: Path) -> None:
    # GIVEN a package whose modules import each other, one of them inside a function (as engines and models did)
    pkg = tmp_path / "spark_jobs"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from spark_jobs.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from spark_jobs.sub.a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from spark_jobs.sub import a\n")
    # WHEN the graph and its cycles are computed
    graph = import_graph(pkg)
    # THEN the lazy circle is found, and the annotation-only import is not an edge
    assert cycles(graph) == [["spark_jobs.sub.a", "spark_jobs.sub.b"]]
    assert graph["spark_jobs.c"] == set()


def test_no_import_cycle() -> None:
    # GIVEN every module of spark_jobs WHEN its imports (function-level ones too) form a graph
    graph = import_graph()
    # THEN the layers import one way: no circle (engines <-> models, engines <-> quantization were the last ones)
    assert cycles(graph) == []
    # AND the executors' layer never reaches into the lake; of the PCA it folds only the pure-numpy statistics
    featurize = {m for m in graph if m.startswith("spark_jobs.featurize")}
    reached = {t for m in featurize for t in graph[m] if t.split(".")[1] in ("lakehouse", "pca")}
    assert reached <= {"spark_jobs.pca.stats"}


def test_modules_are_grouped_by_concern() -> None:
    # GIVEN the source tree WHEN its modules are listed per directory
    top = {p.stem for p in ROOT.glob("*.py")}
    packages = {d.name: {p.stem for p in d.glob("*.py")} for d in ROOT.iterdir()
                if d.is_dir() and d.name != "__pycache__"}
    # THEN only the entry point, the run and shared infrastructure stay at the top, the rest is in its package
    assert top == TOP_LEVEL
    assert packages == PACKAGES


def test_py_files_zip_imports_every_module_from_the_zip_alone(tmp_path: Path) -> None:
    # GIVEN the --py-files zip the job ships with (packages included)
    zip_path = tmp_path / "spark_jobs.zip"
    zip_path.write_bytes(spark_package_zip())
    names = set(zipfile.ZipFile(zip_path).namelist())
    assert {f"spark_jobs/{package}/__init__.py" for package in PACKAGES} <= names
    # WHEN a fresh interpreter imports the entry point and every package's modules from the zip alone
    modules = sorted(f"spark_jobs.{package}.{m}" for package, ms in PACKAGES.items() for m in ms - {"__init__"})
    code = (f"import importlib, spark_jobs.main as m; assert m.__file__.startswith({str(zip_path)!r}), m.__file__; "
            f"[importlib.import_module(n) for n in {modules!r}]; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(zip_path)}, cwd=tmp_path,
                          capture_output=True, text=True)
    # THEN every module imports
    assert done.returncode == 0 and done.stdout.split() == ["ok"], done.stderr[-2000:]
