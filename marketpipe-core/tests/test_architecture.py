"""The core's layout keeps its promises: each stage imports only from the stages below it, no
two modules import each other (directly or round a loop), and no module hides its names behind a
module-level ``__getattr__``. Imports under ``if TYPE_CHECKING:`` are for annotations only and
do not count. (The lint session checks the stage order again with import-linter.)"""

from __future__ import annotations

import ast
from pathlib import Path

import marketpipe

#: Lowest first: a stage may import the ones before it, never one after it.
STAGES = (
    "model",
    "plugins",
    "fetch",
    "validate",
    "storage",
    "jobs",
    "run",
    "dataset",
    "cli",
    "testing",
    "ingestion",  # the seed's import paths: re-exports only, the top of the graph
)
SRC = Path(marketpipe.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path) -> list[tuple[str, int]]:
    """Absolute ``marketpipe`` imports of ``path`` (anywhere in it), but not those made for
    type checkers only."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in found if name.split(".")[0] == "marketpipe"]


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {}
    for module, path in mods.items():
        targets = set()
        for name, _ in imports(path):
            while name not in mods and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in mods and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def test_every_module_is_in_a_stage() -> None:
    loose = [m for m in modules() if stage(m) is None and m not in ("marketpipe",)]
    assert loose == []


def test_each_stage_imports_only_from_the_stages_below_it() -> None:
    upward = []
    for module, path in sorted(modules().items()):
        mine = stage(module)
        for name, line in imports(path):
            theirs = stage(name)
            if mine and theirs and STAGES.index(theirs) > STAGES.index(mine):
                upward.append(f"{module}:{line} imports {name}")
    assert upward == []


def test_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_level_getattr() -> None:
    hidden = [
        module
        for module, path in modules().items()
        if any(
            isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__")
            for node in ast.parse(path.read_text()).body
        )
    ]
    assert hidden == []


def test_the_seed_paths_are_plain_re_exports() -> None:
    """Nothing but imports (and ``__all__``) under ``marketpipe.ingestion``: no logic hides
    there, and nothing of MarketPipe imports it."""
    for module, path in modules().items():
        if stage(module) != "ingestion":
            continue
        for node in ast.parse(path.read_text()).body:
            kinds = (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign, ast.Try)
            assert isinstance(node, kinds), f"{module}: {ast.unparse(node)[:60]}"
    users = [
        f"{module}:{line}"
        for module, path in modules().items()
        if stage(module) != "ingestion"
        for name, line in imports(path)
        if stage(name) == "ingestion"
    ]
    assert users == []


def test_the_commands_that_only_open_a_dataset_load_none_of_the_ingest_pipeline() -> None:
    """``mp status``, ``verify``, ``compact``, ``delete`` and ``marketpipe.read`` open a
    dataset (:func:`marketpipe.jobs.upgrade.open_dataset`) without the coordinator, Dask's
    tasks and the HTTP client the pipeline imports (0.1 s of every such command's start)."""
    import subprocess
    import sys

    code = (
        "import sys, marketpipe.dataset.operations, marketpipe.dataset.read; "
        "print(sorted(m for m in ('marketpipe.run.pipeline', 'marketpipe.run.coordinator', "
        "'marketpipe.run.dask.tasks', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
