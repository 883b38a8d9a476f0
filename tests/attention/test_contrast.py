"""Tests for attention.state_contrast: two streamed aggregations and their normalised difference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")
pytest.importorskip("transformers")

from course_helpers._utils import CourseInputError
from course_helpers.attention import StateContrast, aggregate_attention, state_contrast

N_LAYERS, N_HEADS, VOCAB = 2, 4, 50
GENES = list(range(2, 40))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=N_LAYERS,
                     num_attention_heads=N_HEADS, intermediate_size=64, hidden_act="relu",
                     max_position_embeddings=128, initializer_range=0.3,
                     attn_implementation="eager")
    return BertForMaskedLM(cfg).eval()


def _cells(n_a, n_b, seed=0, lo=6, hi=25):
    """Group 'a' cells always start with token 3 (a 'state gene'), group 'b' never hold it."""
    rng = np.random.default_rng(seed)
    ids, state = [], []
    for k in range(n_a + n_b):
        pool = np.arange(4, VOCAB)
        cell = [int(t) for t in rng.choice(pool, size=int(rng.integers(lo, hi)), replace=False)]
        if k < n_a:
            cell = [3] + cell
        ids.append(cell)
        state.append("a" if k < n_a else "b")
    order = rng.permutation(len(ids))  # groups interleaved in the dataset
    ids = [ids[i] for i in order]
    state = [state[i] for i in order]
    return datasets.Dataset.from_dict({"input_ids": ids, "length": [len(x) for x in ids],
                                       "state": state,
                                       "cell_id": [f"c{i}" for i in range(len(ids))]})


@pytest.fixture(scope="module")
def ds():
    return _cells(9, 12)


def _separately(model, ds, group, **kw):
    rows = [i for i, s in enumerate(ds["state"]) if s == group]
    return aggregate_attention(model, ds.select(rows), genes=GENES, progress=False, **kw)


def test_contrast_equals_difference_of_two_separate_aggregations(model, ds):
    sc = state_contrast(model, ds, "state", ("a", "b"), genes=GENES, average="all",
                        min_count=2, progress=False)
    a = _separately(model, ds, "a", average="all")
    b = _separately(model, ds, "b", average="all")
    np.testing.assert_allclose(sc.a.sums, a.sums, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sc.b.sums, b.sums, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(sc.a.counts, a.counts)
    assert (sc.a.n_cells, sc.b.n_cells) == (9, 12)
    expected = a.mean_array(min_count=2) - b.mean_array(min_count=2)
    got = sc.difference()
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-6, atol=1e-9)
    assert list(got.index) == [str(g) for g in GENES]
    # token 3 is only in group a: its pairs have no contrast (NaN), never a fake zero
    assert np.isnan(got.loc["3"].drop("3")).all()
    # pooled = one aggregation over all cells of both groups
    allc = aggregate_attention(model, ds, genes=GENES, average="all", progress=False)
    pooled = sc.pooled()
    np.testing.assert_allclose(pooled.sums, allc.sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pooled.counts, allc.counts)
    assert pooled.n_cells == 21 and pooled.genes == allc.genes
    np.testing.assert_allclose(pooled.matrix().to_numpy(), allc.matrix().to_numpy(), rtol=1e-5)


def test_per_layer_and_head_contrast(model, ds):
    sc = state_contrast(model, ds, "state", ("a", "b"), genes=GENES, average=None,
                        min_count=1, progress=False)
    a = _separately(model, ds, "a")
    b = _separately(model, ds, "b")
    np.testing.assert_allclose(sc.difference(layer=1, head=2).to_numpy(),
                               a.mean_array(1, 2) - b.mean_array(1, 2), rtol=1e-6, atol=1e-9)


def test_normalisations(model, ds):
    sc = state_contrast(model, ds, "state", ("a", "b"), genes=GENES, min_count=2,
                        progress=False)
    ma, mb = sc.a.mean_array(min_count=2), sc.b.mean_array(min_count=2)
    both = np.isfinite(ma) & np.isfinite(mb)
    c = np.median(np.concatenate([ma[both], mb[both]]))
    assert sc._pseudocount(ma, mb) == pytest.approx(c)
    np.testing.assert_allclose(sc.matrix(normalize="log2").to_numpy(),
                               np.log2((ma + c) / (mb + c)), rtol=1e-9)
    d = (ma - mb)[both]
    z = sc.contrast_array(normalize="z")[both]
    assert np.median(z) == pytest.approx(0.0, abs=1e-9)
    assert np.median(np.abs(z)) == pytest.approx(1 / 1.4826, rel=1e-6)
    assert np.corrcoef(z, d)[0, 1] == pytest.approx(1.0)
    fixed = StateContrast(a=sc.a, b=sc.b, groups=("a", "b"), min_count=2, pseudocount=0.5)
    np.testing.assert_allclose(fixed.contrast_array(), np.log2((ma + 0.5) / (mb + 0.5)))
    with pytest.raises(CourseInputError, match="normalize"):
        sc.matrix(normalize="ratio")


def test_edges_directions_and_gene_scores(model, ds):
    sc = state_contrast(model, ds, "state", ("a", "b"), genes=GENES, min_count=2,
                        progress=False)
    both = sc.to_edges()
    assert list(both.columns) == ["source", "target", "score", "mean_a", "mean_b", "diff",
                                  "n_cells_a", "n_cells_b"]
    assert (np.diff(both["score"]) <= 0).all() and (both["score"] >= 0).all()
    assert (both["source"] != both["target"]).all()
    assert (both[["n_cells_a", "n_cells_b"]] >= 2).all().all()
    np.testing.assert_allclose(both["diff"], both["mean_a"] - both["mean_b"])
    up, down = sc.to_edges(direction="up", top_k=5), sc.to_edges(direction="down", top_k=5)
    assert len(up) == 5 and (up["diff"] > 0).all() and (down["diff"] < 0).all()
    lfc = sc.matrix()
    top = both.iloc[0]
    assert abs(lfc.loc[top["source"], top["target"]]) == pytest.approx(top["score"])
    sym = sc.to_edges(symmetric=True)
    assert len(sym) <= len(both) / 2 + 1
    gs = sc.gene_scores()
    assert gs.index.name == "gene" and (np.diff(gs["mean_abs"].dropna()) <= 0).all()
    assert gs.loc["3", "frac_cells_a"] == 1.0 and gs.loc["3", "frac_cells_b"] == 0.0
    assert gs.loc["3", "n_partners"] == 0 and np.isnan(gs.loc["3", "mean_abs"])


def test_memory_does_not_grow_with_cells(model):
    small = state_contrast(model, _cells(5, 5, seed=1), "state", ("a", "b"), genes=GENES,
                           progress=False)
    large = state_contrast(model, _cells(60, 60, seed=2), "state", ("a", "b"), genes=GENES,
                           progress=False)
    assert small.nbytes == large.nbytes
    assert small.a.sums.shape == large.a.sums.shape == (1, 1, len(GENES), len(GENES))
    assert large.a.counts.diagonal().sum() > 5 * small.a.counts.diagonal().sum()


def test_default_genes_shared_and_max_cells_per_group(model, ds):
    with pytest.warns(UserWarning, match="most frequently present"):
        sc = state_contrast(model, ds, "state", ("a", "b"), max_genes=10, progress=False)
    assert sc.a.genes == sc.b.genes and len(sc.genes) == 10
    sub = state_contrast(model, ds, "state", ("b", "a"), genes=GENES, max_cells=4, seed=0,
                         progress=False)
    assert (sub.a.n_cells, sub.b.n_cells) == (4, 4) and sub.groups == ("b", "a")
    again = state_contrast(model, ds, "state", ("b", "a"), genes=GENES, max_cells=4, seed=0,
                           progress=False)
    np.testing.assert_array_equal(sub.a.counts, again.a.counts)
    assert "4 cells" in repr(sub)


def test_other_containers(model, ds):
    d = {"input_ids": list(ds["input_ids"]), "state": list(ds["state"])}
    a = state_contrast(model, d, "state", ("a", "b"), genes=GENES, progress=False)
    b = state_contrast(model, pd.DataFrame(d), "state", ("a", "b"), genes=GENES,
                       progress=False)
    c = state_contrast(model, ds, "state", ("a", "b"), genes=GENES, progress=False)
    np.testing.assert_allclose(a.a.sums, c.a.sums, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b.b.sums, c.b.sums, rtol=1e-6, atol=1e-7)


def test_bad_inputs(model, ds):
    with pytest.raises(CourseInputError, match="no column 'disease'"):
        state_contrast(model, ds, "disease", ("a", "b"), genes=GENES, progress=False)
    with pytest.raises(CourseInputError, match="No cell has state == 'x'"):
        state_contrast(model, ds, "state", ("a", "x"), genes=GENES, progress=False)
    with pytest.raises(CourseInputError, match="two group names"):
        state_contrast(model, ds, "state", "ab", genes=GENES, progress=False)
    with pytest.raises(CourseInputError, match="the same"):
        state_contrast(model, ds, "state", ("a", "a"), genes=GENES, progress=False)
    with pytest.raises(CourseInputError, match="min_count"):
        state_contrast(model, ds, "state", ("a", "b"), genes=GENES, min_count=0,
                       progress=False)
    with pytest.raises(CourseInputError, match="direction"):
        state_contrast(model, ds, "state", ("a", "b"), genes=GENES,
                       progress=False).to_edges(direction="sideways")
