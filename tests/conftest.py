"""Shared pytest fixtures.

The reference fixtures and the real V1 dictionaries live in ``../shared`` beside the repository
(or wherever ``COURSE_SHARED_DIR`` points). They exist for tests and CI only; the product never
needs them. Tests that need them skip, saying so, when they are absent.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("COURSE_SHARED_DIR")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    d = _shared_dir()
    if not d.is_dir():
        pytest.skip(f"../shared not found at {d} (set COURSE_SHARED_DIR); reference fixtures unavailable")
    return d


@pytest.fixture(scope="session")
def v1_dir(shared_dir) -> Path:
    d = shared_dir / "geneformer-v1"
    if not d.is_dir():
        pytest.skip(f"V1 dictionaries not found at {d}")
    return d


@pytest.fixture(scope="session")
def tokenizer_fixture_dir(shared_dir) -> Path:
    d = shared_dir / "reference" / "tokenizer_v1"
    if not d.is_dir():
        pytest.skip(f"tokenizer fixture not found at {d}")
    return d


@pytest.fixture(scope="session")
def perturb_fixture_dir(shared_dir) -> Path:
    d = shared_dir / "reference" / "perturb_v1"
    if not d.is_dir():
        pytest.skip(f"perturbation fixture not found at {d}")
    return d


@pytest.fixture(scope="session")
def fixture_model_dir(tmp_path_factory, perturb_fixture_dir, v1_dir) -> Path:
    """The reference fixture model (V1 family, hidden 64) with the V1 vocab.tsv beside it."""
    d = tmp_path_factory.mktemp("fixture_model")
    for f in (perturb_fixture_dir / "model").iterdir():
        shutil.copy(f, d / f.name)
    shutil.copy(v1_dir / "vocab_gc30M.tsv", d / "vocab.tsv")
    return d


@pytest.fixture(scope="module")
def fixture_cells(perturb_fixture_dir):
    """The perturbation fixture's tokenised cells (a fresh DataFrame per test module)."""
    import pandas as pd

    df = pd.read_parquet(perturb_fixture_dir / "cells.parquet")
    df["input_ids"] = [list(map(int, x)) for x in df["input_ids"]]
    return df


@pytest.fixture(scope="module")
def cells(fixture_cells):
    """The reference fixture's cells as a DataFrame (tests with other cells define their own)."""
    return fixture_cells


@pytest.fixture(scope="module")
def dataset(cells):
    """``cells`` as a Hugging Face dataset, as course_helpers.tokenize returns it."""
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_pandas(cells, preserve_index=False)


@pytest.fixture(scope="module")
def vocab_model(fixture_model_dir):
    """The fixture model loaded with course_helpers.model.load_model and the V1 vocabulary."""
    from course_helpers.model import load_model

    return load_model(fixture_model_dir, device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread avoids OpenMP oversubscription on busy shared CPUs.

    Use per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
