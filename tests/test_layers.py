"""The package's layering: each module imports only modules above it (see CONTRIBUTING.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "course_helpers"

# Lower number = higher layer. A module may import modules with a level <= its own
# (siblings of the same level only where listed in ALLOWED_SIBLINGS).
LEVEL = {
    "_utils": 0, "measure": 0.5,  # measure imports only _utils
    "vocab": 1,
    "data": 2,
    "tokenize": 3,
    "model": 4,
    "embed": 5, "attention": 5, "perturb": 5, "finetune": 5,
    "networks": 6, "baselines": 6,
    "plotting": 7, "widgets": 8, "exercises": 9, "doctor": 9,
}
ALLOWED_SIBLINGS = {("perturb", "embed")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level and node.level > 0:  # relative: from .x import y / from . import x
                if mod:
                    found.add(mod.split(".")[0])
                else:
                    found.update(a.name.split(".")[0] for a in node.names)
            elif mod.startswith("course_helpers"):
                parts = mod.split(".")
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "course_helpers" and len(parts) > 1:
                    found.add(parts[1])
    return found


MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
# Sub-packages count as one layer: every file inside must respect the package's level.
PACKAGES = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())


def _files(name: str):
    return sorted((PKG / name).glob("*.py")) if name in PACKAGES else [PKG / f"{name}.py"]


@pytest.mark.parametrize("name", MODULES + PACKAGES)
def test_no_import_from_lower_layers(name):
    assert name in LEVEL, f"{name} has no layer in tests/test_layers.py; add it (and to CONTRIBUTING.md)"
    deps = set().union(*(_imports(f) for f in _files(name)))
    for dep in deps:
        if dep not in LEVEL:
            continue
        ok = LEVEL[dep] < LEVEL[name] or (name, dep) in ALLOWED_SIBLINGS
        assert ok, f"course_helpers.{name} imports course_helpers.{dep}, which is a lower layer"


def test_layer_checker_detects_violation(tmp_path):
    bad = tmp_path / "vocab.py"
    bad.write_text("from course_helpers.widgets import AttentionExplorer\nfrom . import model\n")
    assert _imports(bad) == {"widgets", "model"}
