"""The package's house: layers, no arrows back up, no import cycles (see CONTRIBUTING.md).

Each top-level module or subpackage of ``course_helpers`` has a layer. A file may import only
from layers above its own (siblings of the same layer only where ``ALLOWED_SIBLINGS`` says so),
and the file-level import graph — every import, including the ones inside functions — has no
cycles.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "course_helpers"

# Lower number = higher layer. A module may import modules with a level <= its own
# (siblings of the same level only where listed in ALLOWED_SIBLINGS).
LEVEL = {
    "_utils": 0, "measure": 0.5,  # measure imports only _utils (CourseInputError)
    "vocab": 1,
    "data": 2,
    "tokenize": 3,
    "model": 4,
    "embed": 5, "attention": 5, "perturb": 5, "finetune": 5,
    "networks": 6, "baselines": 6,
    "plotting": 7, "widgets": 8, "exercises": 9, "doctor": 9,
}
ALLOWED_SIBLINGS = {("perturb", "embed")}


def _module_name(path: Path) -> str:
    """``course_helpers/perturb/engine.py`` -> ``course_helpers.perturb.engine``."""
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package_of(path: Path) -> list[str]:
    """The package a file's relative imports start from."""
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return parts[:-1]


def _runtime_nodes(tree):
    """Every node except what sits under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None) if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _absolute_imports(path: Path) -> set[str]:
    """Every ``course_helpers...`` module a file imports (absolute dotted names).

    ``from .x import y`` counts as importing ``pkg.x`` (and ``pkg.x.y`` when that is a module);
    ``from . import x`` as importing ``pkg.x``.
    """
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path)
                base = base[: len(base) - node.level + 1]
                if not base:
                    continue
            else:
                base = []
            mod = base + (node.module.split(".") if node.module else [])
            if not mod or mod[0] != "course_helpers":
                continue
            for alias in node.names:
                candidate = [*mod, alias.name]
                as_module = PKG.parent.joinpath(*candidate)
                if as_module.with_suffix(".py").is_file() or (as_module / "__init__.py").is_file():
                    found.add(".".join(candidate))
                else:
                    found.add(".".join(mod))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "course_helpers":
                    found.add(alias.name)
    return found


def _top(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


FILES = sorted(PKG.rglob("*.py"))
TOP = sorted({p.relative_to(PKG).parts[0].removesuffix(".py") for p in FILES} - {"__init__"})


def _files(name: str) -> list[Path]:
    return sorted((PKG / name).rglob("*.py")) if (PKG / name).is_dir() else [PKG / f"{name}.py"]


@pytest.mark.parametrize("name", TOP)
def test_no_import_from_lower_layers(name):
    assert name in LEVEL, f"{name} has no layer in tests/test_layers.py; add it (and to CONTRIBUTING.md)"
    for f in _files(name):
        for dep in {_top(d) for d in _absolute_imports(f)} - {None, name}:
            if dep not in LEVEL:
                continue
            ok = LEVEL[dep] < LEVEL[name] or (name, dep) in ALLOWED_SIBLINGS
            assert ok, (f"{f.relative_to(PKG.parent)} imports course_helpers.{dep}, which is not "
                        "above it in the layers")


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(f): f for f in FILES}
    graph = {}
    for name, f in modules.items():
        deps = set()
        for dep in _absolute_imports(f):
            while dep not in modules and "." in dep:  # a name inside a module
                dep = dep.rsplit(".", 1)[0]
            if dep != name and dep in modules:
                deps.add(dep)
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_checkers_detect_violations(tmp_path):
    pkg = tmp_path / "course_helpers" / "vocab"
    pkg.mkdir(parents=True)
    (pkg.parent / "model.py").write_text("")
    bad = pkg / "files.py"
    bad.write_text("from ..widgets import AttentionExplorer\nfrom .. import model\n"
                   "from .hub import x\nif TYPE_CHECKING:\n    from ..plotting import y\n")
    global PKG
    old, PKG = PKG, tmp_path / "course_helpers"
    try:
        assert _absolute_imports(bad) == {"course_helpers.widgets", "course_helpers.model",
                                          "course_helpers.vocab.hub"}
    finally:
        PKG = old
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
