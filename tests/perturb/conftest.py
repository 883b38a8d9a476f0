"""Fixtures of the perturbation tests: the reference fixture model and cells, full reference runs.

The three full reference runs (delete, overexpress, delete with goal states) are computed at most
once per session (they are shared by test_effects.py and test_stats.py); every other fixture is
per module, as the cells DataFrame of ``tests/conftest.py``.
"""
from __future__ import annotations

import pandas as pd
import pytest

STATES = {
    "state_key": "cell_type",
    "start_state": "CD14+ Monocyte",
    "goal_state": "CD19+ B",
    "alt_states": ["CD4+/CD45RO+ Memory"],
}


@pytest.fixture
def states():
    """The fixture's cell states: start CD14+ monocytes, goal CD19+ B cells, one alternative."""
    return {**STATES, "alt_states": list(STATES["alt_states"])}


def _layer5(model, ids):
    """hidden_states[5] (= emb_layer -1) of one unpadded sequence, float64 numpy."""
    import torch

    t = torch.tensor([list(map(int, ids))])
    with torch.inference_mode():
        out = model.bert(input_ids=t, output_hidden_states=True)
    return out.hidden_states[5][0].double().numpy()


def _cos_rows(a, b):
    import numpy as np

    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


@pytest.fixture(scope="session")
def layer5():
    """``layer5(model, ids)``: the reference's embedding layer of one cell, computed naively."""
    return _layer5


@pytest.fixture(scope="session")
def cos_rows():
    """``cos_rows(a, b)``: row-wise cosine of two matrices."""
    return _cos_rows


@pytest.fixture(scope="module")
def fx(perturb_fixture_dir):
    return perturb_fixture_dir


def _plain_model(fx):
    """The fixture model exactly as a user would load it with transformers (no vocabulary)."""
    transformers = pytest.importorskip("transformers")
    m = transformers.BertForMaskedLM.from_pretrained(str(fx / "model"))
    return m.eval()


@pytest.fixture(scope="module")
def plain_model(fx):
    """The fixture model exactly as a user would load it with transformers (no vocabulary)."""
    return _plain_model(fx)


@pytest.fixture(scope="module")
def state_embs(fx):
    return pd.read_parquet(fx / "state_embs.parquet")


@pytest.fixture(scope="session")
def _full_runs_input(perturb_fixture_dir):
    """Model and dataset of the full reference runs (session-wide, never mutated)."""
    datasets = pytest.importorskip("datasets")
    df = pd.read_parquet(perturb_fixture_dir / "cells.parquet")
    df["input_ids"] = [list(map(int, x)) for x in df["input_ids"]]
    return _plain_model(perturb_fixture_dir), datasets.Dataset.from_pandas(df, preserve_index=False)


def _one_thread(fn):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def delete_all(_full_runs_input):
    from course_helpers.perturb import in_silico_perturb

    model, dataset = _full_runs_input
    return _one_thread(lambda: in_silico_perturb(model, dataset, "delete", progress=False))


@pytest.fixture(scope="session")
def overexpress_all(_full_runs_input):
    from course_helpers.perturb import in_silico_perturb

    model, dataset = _full_runs_input
    return _one_thread(lambda: in_silico_perturb(model, dataset, "overexpress", progress=False))


@pytest.fixture(scope="session")
def goal_all(_full_runs_input, perturb_fixture_dir):
    from course_helpers.perturb import in_silico_perturb

    model, dataset = _full_runs_input
    state_embs = pd.read_parquet(perturb_fixture_dir / "state_embs.parquet")
    return _one_thread(lambda: in_silico_perturb(model, dataset, "delete", cell_states=STATES,
                                                 state_embs=state_embs, progress=False))
