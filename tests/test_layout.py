"""The package's shape, enforced: layers that only point down, no import circles, files and functions
that fit in a reader's head.

Imports are read with ``ast`` from the source text (module level, inside functions and under
``TYPE_CHECKING`` alike), so a lazy import inside a function cannot hide an upward arrow or a circle.
The layer order is the one ``docs/architecture.md`` draws; a new package must be given a layer here.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "mobilenets"

# Bottom to top: a module may import its own layer and the layers below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("mobilenets._validate", "mobilenets.constants", "mobilenets.fileio", "mobilenets.tables")),
    ("config", ("mobilenets.config",)),
    ("models", ("mobilenets.models",)),
    ("cost", ("mobilenets.cost",)),
    ("weights", ("mobilenets.weights",)),
    ("data", ("mobilenets.data",)),
    ("engine", ("mobilenets.engine",)),
    ("deploy", ("mobilenets.deploy",)),
    ("analysis", ("mobilenets.analysis",)),
    ("adapt", ("mobilenets.adapt",)),
    ("study", ("mobilenets.study",)),
    ("cli", ("mobilenets.cli", "mobilenets.__main__", "mobilenets")),
]

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
# "module.qualname": why it may be longer than MAX_FUNCTION_LINES. Keep this empty unless splitting
# would make the code harder to follow than reading one long function.
LONG_FUNCTIONS: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> list[str]:
    """The project modules an ``from X import a, b`` names: X itself, or X.a where a is a submodule."""
    if node.level:
        base = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if target.split(".")[0] != "mobilenets":
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in _modules() else target)
    return [m for m in found if m in _modules()]


@cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in _modules().items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                targets.update(_resolve(name, node))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in _modules())
        targets.discard(name)
        graph[name] = targets
    return graph


def _layer(module: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer index): the longest matching prefix wins
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in {__file__}")
    return best[1]


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_imports_point_down():
    upward = [
        f"{importer} ({LAYERS[_layer(importer)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for importer, targets in _graph().items()
        for target in sorted(targets)
        if _layer(target) > _layer(importer)
    ]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_deploy_and_analysis_do_not_import_training():
    offenders = [
        f"{importer} imports mobilenets.engine.train"
        for importer, targets in _graph().items()
        if importer.split(".")[1:2] in (["deploy"], ["analysis"]) and "mobilenets.engine.train" in targets
    ]
    assert not offenders, "\n".join(offenders)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    circles = _circles(_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_file_size(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(SRC)} has {lines} lines (at most {MAX_FILE_LINES})"


def _long_functions(path: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = (child.end_lineno or child.lineno) - child.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found.append((name, length))
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text()), "")
    return found


def test_functions_fit_a_screen():
    too_long = []
    for module, path in _modules().items():
        for name, length in _long_functions(path):
            if f"{module}.{name}" not in LONG_FUNCTIONS:
                too_long.append(f"{module}.{name}: {length} lines")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)


def test_listed_exceptions_still_exist_and_say_why():
    for qualname, why in LONG_FUNCTIONS.items():
        assert why.strip(), qualname
        module, _, name = qualname.rpartition(".")
        while module and module not in _modules():
            module, _, outer = module.rpartition(".")
            name = f"{outer}.{name}"
        assert module in _modules(), f"{qualname}: no such module"
        assert any(n == name for n, _ in _long_functions(_modules()[module])), f"{qualname} is short now: drop it"
