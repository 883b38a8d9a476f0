"""Tests for course_helpers.attention (result.py): AttentionResult: views, edges, save/load."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from course_helpers._utils import CourseInputError
from course_helpers.attention import (
    AttentionResult,
    aggregate_attention,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_symmetric_view_and_edges(model, ds):
    res = aggregate_attention(model, ds, genes=list(range(2, 30)), progress=False)
    A = res.matrix(layer=0, head=0)
    S = res.matrix(layer=0, head=0, symmetric=True)
    np.testing.assert_allclose(S.to_numpy(), (A.to_numpy() + A.to_numpy().T) / 2)
    np.testing.assert_allclose(S.to_numpy(), S.to_numpy().T)
    assert not np.allclose(np.nan_to_num(A.to_numpy()), np.nan_to_num(A.to_numpy().T))
    e = res.to_edges(layer=0, head=0, symmetric=True)
    pairs = {frozenset(p) for p in zip(e.source, e.target)}
    assert len(pairs) == len(e) and (e.source != e.target).all()
    assert e.score.is_monotonic_decreasing
    top = res.to_edges(layer=0, head=0, top_k=5)
    assert len(top) == 5 and top.score.iloc[0] == pytest.approx(np.nanmax(
        A.to_numpy() - np.diag(np.full(len(A), np.inf))))
    res_sym = aggregate_attention(model, ds, genes=list(range(2, 30)), symmetric=True,
                                  progress=False)
    pd.testing.assert_frame_equal(res_sym.matrix(layer=0, head=0), S)


def test_layer_head_selection_and_averaging(model, ds):
    genes = list(range(2, 30))
    full = aggregate_attention(model, ds, genes=genes, progress=False)
    part = aggregate_attention(model, ds, genes=genes, layers=[-1], heads=[0, 2],
                               progress=False)
    assert part.layers == [1] and part.heads == [0, 2]
    np.testing.assert_allclose(part.sums, full.sums[[1]][:, [0, 2]], rtol=1e-5, atol=1e-6)
    avg = aggregate_attention(model, ds, genes=genes, average="all", progress=False)
    assert avg.sums.shape[:2] == (1, 1)
    np.testing.assert_allclose(avg.matrix().to_numpy(), full.matrix().to_numpy(), rtol=1e-5)
    with pytest.raises(CourseInputError, match="not aggregated"):
        part.matrix(layer=0)


def test_save_load_roundtrip(model, ds, tmp_path):
    res = aggregate_attention(model, ds, genes=list(range(2, 12)), progress=False)
    p = res.save(tmp_path / "attn.npz")
    back = AttentionResult.load(p)
    np.testing.assert_array_equal(back.sums, res.sums)
    pd.testing.assert_frame_equal(back.matrix(), res.matrix())
    assert back.layers == res.layers and back.genes == res.genes
