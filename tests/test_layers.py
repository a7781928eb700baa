"""Each third-party engine enters bench through one module, and the record schema is spelled once.

Read from the source (AST), so imports inside functions count too: Lightning only in the runner layer
(`bench/run.py`, `bench/monitor.py`, `bench/distributed.py`), MLflow only in `bench/track.py`, Optuna only in
`bench/search.py`; a tag name of `bench.records` appears in no other module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench import records

BENCH = Path(__file__).resolve().parents[1] / "bench"
MODULES = sorted(BENCH.rglob("*.py"))

ENGINES = {
    "lightning": (
        {"lightning", "pytorch_lightning", "lightning_fabric"},
        {"run.py", "monitor.py", "distributed.py"},
    ),
    "mlflow": ({"mlflow"}, {"track.py"}),
    "optuna": ({"optuna", "optuna_integration"}, {"search.py"}),
}


def imported(path: Path) -> set[str]:
    """Top-level package names `path` imports anywhere (module level, functions, TYPE_CHECKING)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import os\n\ndef f():\n    from mlflow.entities import Metric\n    import optuna.trial\n"
    )
    assert imported(source) == {"os", "mlflow", "optuna"}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_each_engine_is_imported_by_its_own_module_only(engine: str) -> None:
    packages, allowed = ENGINES[engine]
    importers = {str(p.relative_to(BENCH)) for p in MODULES if imported(p) & packages}
    assert importers <= allowed, f"{engine} imported outside {sorted(allowed)}: {sorted(importers - allowed)}"
    assert importers, f"no module imports {engine}: is the scan looking at bench/?"


def test_tag_names_are_spelled_only_in_records() -> None:
    names = {
        v for k, v in vars(records).items() if k.isupper() and isinstance(v, str) and v.startswith("bench.")
    }
    assert {records.KIND, records.OUTCOME, records.TRIAL_ID} <= names
    spelled: dict[str, set[str]] = {}
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                spelled.setdefault(node.value, set()).add(str(path.relative_to(BENCH)))
    elsewhere = {name: where - {"records.py"} for name, where in spelled.items() if where - {"records.py"}}
    assert elsewhere == {}


def runtime_imports(path: Path) -> set[str]:
    """The `bench.*` modules `path` imports when it runs: at module level or inside functions, but not
    under `if TYPE_CHECKING:` (annotations only, never executed)."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    package = ".".join(path.relative_to(BENCH.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bench")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            if base.startswith("bench"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}  # `from bench import x`: x may be a module
    return found


def test_the_import_graph_has_no_cycle() -> None:
    modules = {
        ".".join(p.relative_to(BENCH.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in MODULES
    }
    graph = {
        name: {m for m in runtime_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, f"import cycle: {' -> '.join([*visiting[visiting.index(name) :], name])}"
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
