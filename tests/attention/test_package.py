"""Tests for course_helpers.attention: streamed aggregation equals a brute-force computation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

from course_helpers._utils import CourseInputError
from course_helpers.attention import (
    AttentionResult,
    aggregate_attention,
    attention_by_rank,
    attention_vs_cell_length,
    cell_attentions,
    estimate_attention_memory,
    head_summary,
)

N_LAYERS, N_HEADS, VOCAB = 2, 4, 50


def _tiny_model(impl="eager"):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=N_LAYERS,
                     num_attention_heads=N_HEADS, intermediate_size=64, hidden_act="relu",
                     max_position_embeddings=128, initializer_range=0.3,
                     attn_implementation=impl)
    return BertForMaskedLM(cfg).eval()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


def _cells(n, seed=0, lo=4, hi=25):
    rng = np.random.default_rng(seed)
    ids = [[int(t) for t in rng.choice(np.arange(2, VOCAB), size=int(rng.integers(lo, hi)),
                                       replace=False)] for _ in range(n)]
    return datasets.Dataset.from_dict({
        "input_ids": ids, "length": [len(x) for x in ids],
        "cell_id": [f"cell{i}" for i in range(n)],
    })


@pytest.fixture(scope="module")
def ds():
    return _cells(11)


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


def test_memory_independent_of_cell_count(model):
    genes = list(range(2, 42))
    small = aggregate_attention(model, _cells(10, seed=1), genes=genes, progress=False)
    large = aggregate_attention(model, _cells(100, seed=2), genes=genes, progress=False)
    assert small.sums.shape == large.sums.shape and small.counts.shape == large.counts.shape
    assert small.nbytes == large.nbytes
    assert large.counts.diagonal().sum() > 5 * small.counts.diagonal().sum()
    assert estimate_attention_memory(10, 24, 2, 4, 8, 40) == estimate_attention_memory(
        100, 24, 2, 4, 8, 40)


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


def test_default_gene_set_is_capped_and_labelled(model, ds):
    with pytest.warns(UserWarning, match="most frequently"):
        res = aggregate_attention(model, ds, max_genes=10, progress=False)
    assert len(res.genes) == 10
    present = np.bincount(np.concatenate(ds["input_ids"]), minlength=VOCAB)
    assert sorted(present[res.tokens], reverse=True) == list(present[res.tokens])
    assert present[res.tokens].min() >= np.sort(present)[-10]


def test_gene_names_with_vocab(model, ds):
    from types import SimpleNamespace

    m = _tiny_model()
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


def test_max_cells_is_seeded(model, ds):
    a = aggregate_attention(model, ds, genes=list(range(2, 20)), max_cells=5, seed=3,
                            progress=False)
    b = aggregate_attention(model, ds, genes=list(range(2, 20)), max_cells=5, seed=3,
                            progress=False)
    assert a.n_cells == 5
    np.testing.assert_array_equal(a.sums, b.sums)


def test_memory_guard_message(model, ds):
    est = estimate_attention_memory(11, 24, 2, 4, 8, 38, hidden_size=32)
    with pytest.raises(CourseInputError) as err:
        aggregate_attention(model, ds, genes=list(range(2, 40)), max_memory=1000,
                            progress=False)
    msg = str(err.value)
    assert "GB" in msg and "batch_size" in msg and "genes" in msg
    assert f"{est / 2**30:.2f} GB" in msg
    big = estimate_attention_memory(1000, 2048, 6, 4, 8, 1000)
    assert big > 2**30  # V1-sized request: attention maps dominate
    assert estimate_attention_memory(1000, 2048, 6, 4, 4, 1000) < big
    with pytest.raises(CourseInputError, match="max_memory"):
        aggregate_attention(model, ds, genes=[2, 3], max_memory="nonsense", progress=False)


def test_sdpa_switch_and_error(ds):
    m = _tiny_model("sdpa")
    ref = cell_attentions(_tiny_model("eager"), ds["input_ids"][:3])
    got = cell_attentions(m, ds["input_ids"][:3])
    assert m.config._attn_implementation == "sdpa"  # switched back
    assert len(got) == N_LAYERS and got[0].shape[:2] == (3, N_HEADS)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b)
    rows = got[0][0, 0, :len(ds["input_ids"][0])].sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))
    with pytest.raises(CourseInputError, match="eager"):
        cell_attentions(m, ds["input_ids"][:3], switch_to_eager=False)
    with pytest.raises(CourseInputError, match="SDPA"):
        aggregate_attention(m, ds, genes=[2, 3], switch_to_eager=False, progress=False)


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


def test_save_load_roundtrip(model, ds, tmp_path):
    res = aggregate_attention(model, ds, genes=list(range(2, 12)), progress=False)
    p = res.save(tmp_path / "attn.npz")
    back = AttentionResult.load(p)
    np.testing.assert_array_equal(back.sums, res.sums)
    pd.testing.assert_frame_equal(back.matrix(), res.matrix())
    assert back.layers == res.layers and back.genes == res.genes


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


def test_model_configured_to_output_attentions(model, ds):
    """load_model(..., output_attentions=True) sets config.output_attentions; same result."""
    m = _tiny_model()
    m.config.output_attentions = True
    a = aggregate_attention(m, ds, genes=list(range(2, 20)), progress=False)
    b = aggregate_attention(model, ds, genes=list(range(2, 20)), progress=False)
    np.testing.assert_allclose(a.sums, b.sums, rtol=1e-6, atol=1e-7)
