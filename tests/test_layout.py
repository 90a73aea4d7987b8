"""The shape of the code a newcomer reads: a Prefect-free library with a public face, no import circles, small
modules and classes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import archive

LIBRARY = Path(archive.__file__).resolve().parent
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    """The modules of this package that the module imports (at its top level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_the_public_api_resolves_every_name_it_lists():
    for name in archive.__all__:
        assert getattr(archive, name) is not None, name
    assert callable(archive.open_store) and callable(archive.open_source) and callable(archive.open_dataset)
    assert issubclass(archive.StoreError, archive.TransientError)


def test_importing_the_library_loads_neither_prefect_nor_the_heavy_libraries():
    code = ("import sys, archive, archive.claims; "
            "print(sorted(m for m in ('prefect', 'archive_flows', 'pyarrow', 'boto3') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_nothing_in_the_library_imports_prefect_or_the_flows():
    for name, path in _modules().items():
        bad = {m for m in _imports(name, path, top_level_only=False)
               if m.split(".")[0] in ("prefect", "prefect_dask", "archive_flows", "flows")}
        assert not bad, f"{path} imports {sorted(bad)}"


def test_the_library_has_no_import_circle():
    modules = _modules()
    graph = {name: {m for m in _imports(name, path, top_level_only=True) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ re-exporting its own modules is not a circle; a module importing its package is.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_modules_and_classes_stay_small_enough_to_read_in_one_sitting():
    too_long = []
    for _name, path in _modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(LIBRARY.parent)}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_long.append(f"{path.relative_to(LIBRARY.parent)}: class {node.name}, "
                                f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long
