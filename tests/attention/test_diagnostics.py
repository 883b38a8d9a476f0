"""Tests for course_helpers.attention (diagnostics.py): head_summary, attention_by_rank, attention_vs_cell_length."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_helpers._utils import CourseInputError
from course_helpers.attention import (
    attention_by_rank,
    attention_vs_cell_length,
    cell_attentions,
    head_summary,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_LAYERS, N_HEADS, VOCAB = 2, 4, 50  # the tiny model of tests/attention/conftest.py


def test_head_summary_matches_direct_computation(model, ds):
    tfs = [2, 3, 4, 5, 6, 7, 8]
    df = head_summary(model, ds, tf_tokens=tfs, batch_size=3, progress=False)
    assert len(df) == N_LAYERS * N_HEADS
    ent, ent_n, to_tf, share, keypos, n = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    for ids in ds["input_ids"]:
        A = cell_attentions(model, [ids])[1][0, 3].double()  # layer 1, head 3
        L = len(ids)
        e = -(A * A.log()).sum(-1)
        ent += float(e.sum())
        ent_n += float((e / np.log(L)).sum())
        is_tf = torch.tensor([t in tfs for t in ids], dtype=torch.float64)
        to_tf += float((A @ is_tf).sum())
        share += float(is_tf.sum())
        keypos += float((A @ (torch.arange(L, dtype=torch.float64) / (L - 1))).sum())
        n += L
    row = df[(df["layer"] == 1) & (df["head"] == 3)].iloc[0]
    assert row.entropy == pytest.approx(ent / n, rel=1e-5)
    assert row.entropy_norm == pytest.approx(ent_n / n, rel=1e-5)
    assert row.tf_attention == pytest.approx(to_tf / n, rel=1e-5)
    assert row.tf_token_share == pytest.approx(share / n, rel=1e-9)
    assert row.tf_enrichment == pytest.approx(to_tf / share, rel=1e-5)
    assert row.mean_key_position == pytest.approx(keypos / n, rel=1e-5)


def test_attention_by_rank(model, ds):
    df = attention_by_rank(model, ds, layers=0, heads=[1], max_rank=6, progress=False)
    assert list(df["rank"]) == [1, 2, 3, 4, 5, 6]
    # brute force for rank 2 (position 1)
    vals, xl = [], []
    for ids in ds["input_ids"]:
        A = cell_attentions(model, [ids])[0][0, 1].double()
        vals.append(float(A[:, 1].mean()))
        xl.append(float(A[:, 1].mean()) * len(ids))
    row = df[df["rank"] == 2].iloc[0]
    assert row.attention == pytest.approx(np.mean(vals), rel=1e-5)
    assert row.attention_x_length == pytest.approx(np.mean(xl), rel=1e-5)
    rel = attention_by_rank(model, ds, layers=0, relative_bins=4, progress=False)
    assert set(rel.rank_bin) == {0.0, 0.25, 0.5, 0.75}


def test_attention_vs_cell_length(model, ds):
    group = [2, 3, 4, 5, 6, 7, 8, 9]
    df = attention_vs_cell_length(model, ds, group, progress=False)
    assert len(df) == 11 and list(df.cell_id) == [f"cell{i}" for i in range(11)]
    ids = ds["input_ids"][4]
    maps = cell_attentions(model, [ids])
    g = torch.tensor([t in group for t in ids], dtype=torch.float64)
    expected = np.mean([float((maps[li][0, h].double() @ g).mean())
                        for li in range(N_LAYERS) for h in range(N_HEADS)])
    row = df.iloc[4]
    assert row.n_genes == len(ids) and row.n_group == int(g.sum())
    assert row.attention_to_group == pytest.approx(expected, rel=1e-5)
    long = attention_vs_cell_length(model, ds, group, average=False, progress=False)
    assert len(long) == 11 * N_LAYERS * N_HEADS


def test_attention_vs_cell_length_norm(model, ds):
    group = [2, 3, 4, 5, 6, 7, 8, 9]
    df = attention_vs_cell_length(model, ds, group, method="norm", batch_size=3, progress=False)
    # brute force for cell 4: alpha_ij ||f(x_j)|| per head, rows renormalised to sum to 1
    ids = ds["input_ids"][4]
    layers = model.bert.encoder.layer
    d = 32 // N_HEADS
    g = np.array([t in group for t in ids], dtype=np.float64)
    vals = []
    with torch.no_grad():
        out = model.bert(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
        for li in range(N_LAYERS):
            A = out.attentions[li][0].double().numpy()
            v = layers[li].attention.self.value(out.hidden_states[li][0])
            W = layers[li].attention.output.dense.weight
            for h in range(N_HEADS):
                f = v[:, h * d:(h + 1) * d] @ W[:, h * d:(h + 1) * d].T
                An = A[h] * f.norm(dim=1).double().numpy()[None, :]
                An = An / An.sum(1, keepdims=True)
                vals.append((An @ g).mean())
    row = df.iloc[4]
    assert row.attention_to_group == pytest.approx(np.mean(vals), rel=1e-5)
    weight = attention_vs_cell_length(model, ds, group, progress=False)
    assert not np.allclose(df["attention_to_group"], weight["attention_to_group"])
    assert ((df["attention_to_group"] >= 0) & (df["attention_to_group"] <= 1)).all()
    with pytest.raises(CourseInputError, match="method='norms' is not known"):
        attention_vs_cell_length(model, ds, group, method="norms", progress=False)
