"""Conventions of ``course_helpers`` that a newcomer can rely on (see CONTRIBUTING.md).

Modelled on scanpy's ``test_package_structure.py``: the rules are checked here, so the map in
CONTRIBUTING.md stays true.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "course_helpers"
TESTS = ROOT / "tests"

MAX_LINES = 700              # one concern per file
MAX_POSITIONAL = 4           # parameters after the first four are keyword-only
SUBPACKAGES = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())
TOP_MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
TOP_NAMES = set(SUBPACKAGES) | set(TOP_MODULES)
PUBLIC = [m for m in SUBPACKAGES + TOP_MODULES if not m.startswith("_") and m != "exercises"]
# `layer` means an AnnData layer, and only there; hidden layers are `emb_layer`, attention layers
# `attn_layer(s)`.
ANNDATA_LAYER_MODULES = {"tokenize", "baselines", "data"}
# Test files at the top of tests/ that check the repository rather than one file of the package.
REPO_TESTS = {"test_layers.py", "test_package_structure.py", "test_book_prose.py"}
TEST_SUPPORT_DIRS = {"browser", "__pycache__"}


def _public_objects():
    for modname in PUBLIC:
        mod = importlib.import_module(f"course_helpers.{modname}")
        for name in getattr(mod, "__all__", []):
            yield modname, name, getattr(mod, name)


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_one_concern_per_file(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, (f"{path.relative_to(ROOT)} has {n} lines (limit {MAX_LINES}): split it "
                            "into files of one concern each behind the package __init__")


@pytest.mark.parametrize("pkg", SUBPACKAGES)
def test_subpackage_init_only_reexports(pkg):
    """``__init__.py`` holds the file map (docstring), imports and ``__all__``: no logic."""
    tree = ast.parse((PKG / pkg / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc, f"course_helpers/{pkg}/__init__.py needs a docstring with the file map"
    files = sorted(p.stem for p in (PKG / pkg).glob("*.py") if p.stem != "__init__")
    missing = [f for f in files if f"{f}.py" not in doc and f"{f}/" not in doc]
    assert not missing, f"course_helpers/{pkg}/__init__.py's file map does not list {missing}"
    for node in tree.body:
        ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
            isinstance(node, (ast.Assign, ast.AnnAssign)) and all(
                isinstance(t, ast.Name) and t.id.startswith("__")
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])))
        assert ok, (f"course_helpers/{pkg}/__init__.py line {node.lineno}: only imports, the "
                    "docstring and __all__ belong there; move the code into a file of the package")


@pytest.mark.parametrize("pkg", SUBPACKAGES)
def test_file_names_do_not_shadow_top_level_names(pkg):
    clash = sorted(p.stem for p in (PKG / pkg).glob("*.py") if p.stem in TOP_NAMES)
    assert not clash, f"course_helpers/{pkg}/ has files named like top-level modules: {clash}"


def test_lazy_submodule_list_is_complete():
    import course_helpers as ch

    assert set(ch._SUBMODULES) == set(PUBLIC) - {"doctor"} | {"exercises"}


def _private_cross_imports(path: Path) -> list[str]:
    own = path.relative_to(PKG).parts[0].removesuffix(".py")
    depth = len(path.relative_to(PKG).parts) - 1
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            if node.level <= depth:  # stays inside the own subpackage
                continue
            target = (node.module or "").split(".")[0]
        elif (node.module or "").startswith("course_helpers."):
            target = node.module.split(".")[1]
        else:
            continue
        if target in ("", own, "_utils"):
            names = [a.name for a in node.names] if not target else []
            bad += [f"{n} (module)" for n in names if n.startswith("_") and n != "_utils"]
            continue
        bad += [f"{target}.{a.name}" for a in node.names if a.name.startswith("_")]
    return bad


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_private_imports_across_packages(path):
    bad = _private_cross_imports(path)
    assert not bad, (f"{path.relative_to(ROOT)} imports private names of another package: {bad}. "
                     "Make them public in their owner, or move the code to the owner.")


def test_private_import_checker(tmp_path):
    f = PKG / "perturb" / "x.py" if (PKG / "perturb").is_dir() else None
    if f is None:
        pytest.skip("perturb is not a subpackage")
    code = "from ..embed import _Cells\nfrom .rule import _helper\nfrom .._utils import progress\n"
    tmp = f.with_name("_probe_structure.py")
    tmp.write_text(code)
    try:
        assert _private_cross_imports(tmp) == ["embed._Cells"]
    finally:
        tmp.unlink()


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def _callables(obj):
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj) or not getattr(obj.__init__, "__module__", "").startswith(
                "course_helpers"):  # result containers built by the package; pandas subclasses
            members = []
        else:
            members = [("__init__", obj.__init__)]
        members += [(n, m) for n, m in vars(obj).items()
                    if not n.startswith("_") and inspect.isfunction(m)]
        return [(f"{obj.__name__}.{n}", m) for n, m in members]
    if inspect.isfunction(obj):
        return [(obj.__name__, obj)]
    return []


def test_keyword_only_after_the_first_four():
    too_many = []
    for modname, _, obj in _public_objects():
        for qual, fn in _callables(obj):
            fn = inspect.unwrap(fn)
            try:
                params = inspect.signature(fn).parameters.values()
            except (TypeError, ValueError):
                continue
            pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                   and p.name not in ("self", "cls")]
            if len(pos) > MAX_POSITIONAL:
                too_many.append(f"{modname}.{qual} ({len(pos)})")
    assert not too_many, ("these take more than four positional parameters; make the rest "
                          f"keyword-only (after `*`): {sorted(set(too_many))}")


def test_one_name_per_meaning_for_layers():
    wrong = []
    for modname, _, obj in _public_objects():
        for qual, fn in _callables(obj):
            try:
                names = inspect.signature(inspect.unwrap(fn)).parameters
            except (TypeError, ValueError):
                continue
            if modname not in ANNDATA_LAYER_MODULES and ("layer" in names or "layers" in names):
                wrong.append(f"{modname}.{qual}")
    assert not wrong, ("`layer` is kept for AnnData layers; use emb_layer (hidden states) or "
                       f"attn_layer(s) (attention) in: {sorted(set(wrong))}")


def test_all_names_exist_and_have_examples():
    missing, no_example = [], []
    for modname, name, obj in _public_objects():
        if obj is None:
            missing.append(f"{modname}.{name}")
            continue
        if dataclasses.is_dataclass(obj):  # result containers: the function making them shows them
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not name.startswith("_"):
            doc = inspect.getdoc(obj) or ""
            if "Examples" not in doc and ">>>" not in doc:
                no_example.append(f"{modname}.{name}")
    assert not missing, missing
    assert not no_example, f"public names without a docstring example: {sorted(no_example)}"


# ----------------------------------------------------------------------------------------------
# tests mirror the package
# ----------------------------------------------------------------------------------------------
def test_tests_mirror_the_package():
    problems = []
    for d in sorted(p for p in TESTS.iterdir() if p.is_dir() and p.name not in TEST_SUPPORT_DIRS):
        if d.name not in SUBPACKAGES:
            problems.append(f"tests/{d.name}/ has no course_helpers/{d.name}/")
            continue
        files = {p.stem for p in (PKG / d.name).glob("*.py")}
        for t in sorted(d.glob("test_*.py")):
            stem = t.stem.removeprefix("test_")
            if not any(stem == f or stem.startswith(f + "_") for f in files | {"package"}):
                problems.append(f"tests/{d.name}/{t.name} is not named after a file of "
                                f"course_helpers/{d.name}/ (test_<file>[_<topic>].py)")
    for t in sorted(TESTS.glob("test_*.py")):
        if t.name in REPO_TESTS:
            continue
        stem = t.stem.removeprefix("test_")
        if stem not in TOP_MODULES:
            problems.append(f"tests/{t.name} belongs in tests/<subpackage>/ (or is not named after "
                            "a top-level module)")
    assert not problems, "\n".join(problems)


def test_every_subpackage_has_tests():
    untested = [p for p in SUBPACKAGES if not (TESTS / p).is_dir()]
    assert not untested, f"no tests/<name>/ folder for {untested}"


def test_contributing_maps_every_file():
    """CONTRIBUTING.md's map has a line for every file of the package (and no stale ones)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    files = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
             if p.name != "__init__.py" and "exercises" not in p.parts]
    missing = [f for f in files if f not in text]
    assert not missing, f"CONTRIBUTING.md's map does not mention {missing}"
    import re

    mapped = set(re.findall(r"^([a-z_]+/[a-z_0-9]+\.py|[a-z_]+\.py) ", text, flags=re.MULTILINE))
    stale = sorted(m for m in mapped if not (PKG / m).is_file())
    assert not stale, f"CONTRIBUTING.md maps files that do not exist: {stale}"


def test_warnings_name_the_users_line():
    """Every ``warnings.warn`` in the package uses ``stacklevel=find_stack_level()``."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("warnings.warn", "warn"):
                level = [k for k in node.keywords if k.arg == "stacklevel"]
                if not level or ast.unparse(level[0].value) != "find_stack_level()":
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, ("warnings.warn without stacklevel=find_stack_level() (the warning would name "
                     f"a line of the package, not the caller's): {bad}")
