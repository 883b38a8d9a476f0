"""Shared fixtures of the widget tests: the tiny random model over 30 real genes."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

BROWSER_DIR = Path(__file__).resolve().parent / "browser"


@pytest.fixture(scope="session")
def tiny():
    """The module tests/widgets/browser/tiny_model.py (make_tiny, GENES, TFS)."""
    spec = importlib.util.spec_from_file_location("ch_tiny_model", BROWSER_DIR / "tiny_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup(tiny):
    model, dataset, truth = tiny.make_tiny()
    return SimpleNamespace(model=model, dataset=dataset, truth=truth, vocab=model.gene_vocab)
