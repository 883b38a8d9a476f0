"""Tests for course_helpers.attention (aggregate.py): aggregate_attention: streamed aggregation equals a brute-force computation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")

from course_helpers.attention import (
    aggregate_attention,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_LAYERS, N_HEADS, VOCAB = 2, 4, 50  # the tiny model of tests/attention/conftest.py


def _brute(model, ids_list, genes, method):
    """Per cell, unpadded forward pass, Python loops over positions."""
    pos = {g: k for k, g in enumerate(genes)}
    G = len(genes)
    sums = np.zeros((N_LAYERS, N_HEADS, G, G))
    counts = np.zeros((G, G), dtype=np.int64)
    layers = model.bert.encoder.layer
    d = 32 // N_HEADS
    for ids in ids_list:
        with torch.no_grad():
            out = model.bert(torch.tensor([ids]), output_attentions=True,
                             output_hidden_states=True)
        for li in range(N_LAYERS):
            A = out.attentions[li][0].double().numpy()  # (H, L, L)
            if method == "norm":
                with torch.no_grad():
                    v = layers[li].attention.self.value(out.hidden_states[li][0])  # (L, H*d)
                    W = layers[li].attention.output.dense.weight  # (hidden, H*d)
                    for h in range(N_HEADS):
                        f = v[:, h * d:(h + 1) * d] @ W[:, h * d:(h + 1) * d].T  # (L, hidden)
                        A[h] = A[h] * f.norm(dim=1).double().numpy()[None, :]
            for i, gi in enumerate(ids):
                for j, gj in enumerate(ids):
                    if gi in pos and gj in pos:
                        sums[li, :, pos[gi], pos[gj]] += A[:, i, j]
        for gi in ids:
            for gj in ids:
                if gi in pos and gj in pos:
                    counts[pos[gi], pos[gj]] += 1
    return sums, counts


@pytest.mark.parametrize("method", ["weight", "norm"])
def test_aggregation_equals_brute_force(model, ds, method):
    genes = list(range(2, 40))  # tokens 40..49 are left out: attention to them is not recorded
    res = aggregate_attention(model, ds, genes=genes, method=method, batch_size=4,
                              progress=False)
    sums, counts = _brute(model, ds["input_ids"], genes, method)
    assert res.sums.shape == (N_LAYERS, N_HEADS, len(genes), len(genes))
    np.testing.assert_array_equal(res.counts, counts)
    np.testing.assert_allclose(res.sums, sums, rtol=1e-5, atol=1e-6)
    # the mean matrix: row = query gene, column = key gene
    with np.errstate(invalid="ignore"):
        expected = sums[1, 2] / counts
    expected[counts == 0] = np.nan
    got = res.matrix(layer=1, head=2)
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-5, atol=1e-7)
    assert list(got.index) == [str(g) for g in genes]
    assert res.n_cells == 11 and res.method == method


def test_norm_differs_from_weight(model, ds):
    w = aggregate_attention(model, ds, genes=list(range(2, 20)), progress=False)
    n = aggregate_attention(model, ds, genes=list(range(2, 20)), method="norm", progress=False)
    assert not np.allclose(w.sums, n.sums)


def test_batch_size_does_not_change_result(model, ds):
    a = aggregate_attention(model, ds, genes=list(range(2, 30)), batch_size=1, progress=False)
    b = aggregate_attention(model, ds, genes=list(range(2, 30)), batch_size=11, progress=False)
    np.testing.assert_allclose(a.sums, b.sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.counts, b.counts)


def test_max_cells_is_seeded(model, ds):
    a = aggregate_attention(model, ds, genes=list(range(2, 20)), max_cells=5, seed=3,
                            progress=False)
    b = aggregate_attention(model, ds, genes=list(range(2, 20)), max_cells=5, seed=3,
                            progress=False)
    assert a.n_cells == 5
    np.testing.assert_array_equal(a.sums, b.sums)


def test_fixture_model_runs(perturb_fixture_dir):
    from transformers import BertForMaskedLM

    m = BertForMaskedLM.from_pretrained(str(perturb_fixture_dir / "model"),
                                        attn_implementation="eager").eval()
    cells = pd.read_parquet(perturb_fixture_dir / "cells.parquet")
    d = datasets.Dataset.from_pandas(cells.iloc[:4], preserve_index=False)
    with pytest.warns(UserWarning, match="most frequently"):
        res = aggregate_attention(m, d, layers=[0, -1], max_genes=200, batch_size=2,
                                  progress=False)
    present = np.bincount(np.concatenate(list(cells.input_ids.iloc[:4])),
                          minlength=m.config.vocab_size)
    np.testing.assert_array_equal(np.diag(res.counts), present[res.tokens])
    rows = res.sums.sum(-1)  # attention of each query to the kept genes <= its count
    assert (rows <= np.diag(res.counts)[None, None, :] + 1e-4).all()
