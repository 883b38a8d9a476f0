"""Tests for course_helpers.attention (inputs.py): argument checks: gene sets, names, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")

from course_helpers._utils import CourseInputError
from course_helpers.attention import (
    aggregate_attention,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_LAYERS, N_HEADS, VOCAB = 2, 4, 50  # the tiny model of tests/attention/conftest.py


def test_default_gene_set_is_capped_and_labelled(model, ds):
    with pytest.warns(UserWarning, match="most frequently"):
        res = aggregate_attention(model, ds, max_genes=10, progress=False)
    assert len(res.genes) == 10
    present = np.bincount(np.concatenate(ds["input_ids"]), minlength=VOCAB)
    assert sorted(present[res.tokens], reverse=True) == list(present[res.tokens])
    assert present[res.tokens].min() >= np.sort(present)[-10]


def test_gene_names_with_vocab(model, ds, tiny_model):
    from types import SimpleNamespace

    m = tiny_model()
    names = {i: f"G{i}" for i in range(VOCAB)}
    m.gene_vocab = SimpleNamespace(
        pad_token_id=0, mask_token_id=1, cls_token_id=None, eos_token_id=None,
        token_to_id={"<pad>": 0, "<mask>": 1}, id_to_token={i: f"E{i}" for i in range(VOCAB)},
        symbols=lambda ids: [names[int(i)] for i in ids],
        tokens=lambda gs: [int(g[1:]) for g in gs],
        resolve=lambda gs, argname="genes": [int(g[1:]) for g in gs])
    res = aggregate_attention(m, ds, genes=["G5", "G7", "G9"], progress=False)
    assert res.genes == ["G5", "G7", "G9"] and list(res.tokens) == [5, 7, 9]
    assert list(res.matrix().columns) == ["G5", "G7", "G9"]


def test_bad_inputs(model, ds):
    with pytest.raises(CourseInputError, match="method"):
        aggregate_attention(model, ds, genes=[2, 3], method="grad", progress=False)
    with pytest.raises(CourseInputError, match="out of range"):
        aggregate_attention(model, ds, genes=[2, 3], layers=5, progress=False)
    bad = datasets.Dataset.from_dict({"input_ids": [[2, 3, 99]], "length": [3]})
    with pytest.raises(CourseInputError, match="vocabulary"):
        aggregate_attention(model, bad, genes=[2, 3], progress=False)
    with pytest.raises(CourseInputError, match="input_ids"):
        aggregate_attention(model, datasets.Dataset.from_dict({"x": [1]}), progress=False)
