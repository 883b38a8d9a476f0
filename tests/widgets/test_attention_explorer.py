"""AttentionExplorer, driven through its Python API.

A tiny random model over 30 real genes (tests/widgets/browser/tiny_model.py) keeps this fast;
one test uses the V1 perturbation fixture model with real PBMC cells when ../shared is present.
Redraw latency is printed (run with ``-s`` to see it), not asserted.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from course_helpers import attention as att
from course_helpers._utils import CourseDeprecationWarning, CourseInputError
from course_helpers.widgets import AttentionExplorer


@pytest.fixture(scope="module")
def explorer(setup):
    return AttentionExplorer(setup.model, setup.dataset, ground_truth=setup.truth, top_n=8)


def _weights(model, ids):
    return np.stack([a[0].numpy() for a in att.cell_attentions(model, [list(ids)])])  # (L,H,n,n)


# --------------------------------------------------------------------------------------------
# AttentionExplorer
# --------------------------------------------------------------------------------------------
def test_heatmap_equals_cell_attentions(setup, explorer):
    ex = explorer.set(cell=2, layer=1, head=0, method="weight", top_n=6, gene="", select="rank")
    ids = setup.dataset[2]["input_ids"]
    A = _weights(setup.model, ids)
    heat = ex.data()["heatmap"]
    assert heat.shape == (6, 6)
    np.testing.assert_allclose(heat.to_numpy(), A[1, 0, :6, :6], atol=1e-6)
    assert list(heat.index) == setup.vocab.symbols(ids[:6]) == list(heat.columns)
    # all layers, mean over heads
    ex.set(layer="all", head="mean")
    np.testing.assert_allclose(ex.data()["heatmap"].to_numpy(), A.mean(axis=(0, 1))[:6, :6],
                               atol=1e-6)
    assert ex.message == ""


def test_norm_based_is_weight_times_value_norm(setup, explorer):
    """Norm-based attention = weight x ||f(x_j)||: the ratio is constant down each key column."""
    ex = explorer.set(cell=1, layer=0, head=1, top_n=7, gene="")
    w = ex.set(method="weight").data()["heatmap"].to_numpy()
    n = ex.set(method="norm").data()["heatmap"].to_numpy()
    ratio = n / w
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-4)
    assert not np.allclose(ratio[0], ratio[0, 0])  # value norms differ between keys
    assert "norm-based" in ex.title


def test_pairs_sorted_and_planted_edges_marked(setup, tiny):
    ex = AttentionExplorer(setup.model, setup.dataset, top_n=8, n_pairs=12, cell=0, layer=1,
                           head=1)
    pairs = ex.data()["pairs"]
    assert len(pairs) == 12
    assert pairs["attention"].is_monotonic_decreasing
    assert not pairs["planted_edge"].any()  # no ground truth given
    ids = setup.dataset[0]["input_ids"]
    M = _weights(setup.model, ids)[1, 1].copy()
    np.fill_diagonal(M, -1)
    assert pairs["attention"].iloc[0] == pytest.approx(M.max(), abs=1e-7)
    # a constructed ground truth: the 1st pair as query->key edge, the 3rd pair reversed
    sym2ens = {s: e for e, s in tiny.GENES.items()}
    q0, k0 = pairs.loc[0, ["query", "key"]]
    q2, k2 = pairs.loc[2, ["query", "key"]]
    edges = pd.DataFrame({"source": [sym2ens[q0], sym2ens[k2]],
                          "target": [sym2ens[k0], sym2ens[q2]]})
    truth = SimpleNamespace(edges=edges, tfs=[sym2ens["GATA4"]])
    ex2 = AttentionExplorer(setup.model, setup.dataset, ground_truth=truth, top_n=8, n_pairs=12,
                            cell=0, layer=1, head=1)
    p2 = ex2.data()["pairs"]
    expect = {(q0, k0), (k0, q0), (k2, q2), (q2, k2)}
    for row in p2.itertuples():
        assert row.planted_edge == ((row.query, row.key) in expect), row
    assert p2.loc[0, "edge_direction"] == "query→key"
    assert p2.loc[2, "edge_direction"] == "key→query"
    # a plain DataFrame of edges works too, and TFs default to the edges' sources
    ex3 = AttentionExplorer(setup.model, setup.dataset, ground_truth=edges, cell=0, layer=1,
                            head=1, n_pairs=12)
    assert ex3.data()["pairs"]["planted_edge"].sum() == p2["planted_edge"].sum()


def test_heatmap_marks_follow_truth(setup, explorer):
    ex = explorer.set(cell=0, layer="all", head="mean", top_n=8, gene="", method="weight")
    v = ex._compute()
    genes = list(v["heatmap"].index)
    edges = set(zip(setup.truth.edges.source_symbol, setup.truth.edges.target_symbol))
    for i, a in enumerate(genes):
        for j, b in enumerate(genes):
            assert v["marks"][i, j] == ((a, b) in edges or (b, a) in edges)
    assert v["marks"].any()


def test_gene_search(setup, explorer):
    ids = setup.dataset[0]["input_ids"]
    last = setup.vocab.symbols([ids[-1]])[0]
    ex = explorer.set(cell=0, top_n=5, gene=last, layer=0, head=0, method="weight")
    d = ex.data()
    assert last in d["heatmap"].index and len(d["heatmap"]) == 5
    assert ((d["pairs"]["query"] == last) | (d["pairs"]["key"] == last)).all()
    assert ex.message == ""
    fig = ex.heatmap_figure()
    red = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_color() == "#C00000"]
    assert red == [last]


def test_unknown_gene_and_gene_not_in_cell_give_messages(setup, explorer, tiny):
    ex = explorer.set(cell=0, gene="NOTAGENE1")
    assert "NOTAGENE1" in ex.message and "vocabulary" in ex.message
    d = ex.data()  # no exception; the view falls back to the top genes
    assert len(d["heatmap"]) == ex.state["top_n"]
    in_cell = set(setup.vocab.symbols(setup.dataset[0]["input_ids"]))
    absent = next(s for s in tiny.GENES.values() if s not in in_cell)
    ex.set(gene=absent)
    assert absent in ex.message and "not expressed" in ex.message
    fig = ex.figure()
    assert absent in fig._suptitle.get_text()
    ex.set(gene="")
    assert ex.message == ""


def test_empty_and_invalid_selections_keep_state(explorer):
    ex = explorer.set(cell=0, top_n=6, layer=0, head=0, gene="")
    before = ex.state
    ex.set(top_n=0)
    assert "empty selection" in ex.message and ex.state == before
    ex.set(layer=7)
    assert "out of range" in ex.message and ex.state == before
    ex.set(head="first")
    assert "head" in ex.message and ex.state == before
    ex.set(method="magic")
    assert "method" in ex.message
    ex.set(cell=999)
    assert "out of range" in ex.message and ex.state == before
    ex.set(cell_type="neuron")
    assert "No cells of type 'neuron'" in ex.message
    assert len(ex.data()["heatmap"]) == 6  # still drawable
    with pytest.raises(CourseInputError, match="unknown control"):
        ex.set(colour="red")
    ex.set(top_n=99)
    assert "only" in ex.message and len(ex.data()["heatmap"]) == len(ex.cells.ids_of(0))


def test_cell_by_type_and_id(setup, explorer):
    ex = explorer.set(cell=0, top_n=6)
    ex.set(cell_type="endothelial")
    assert setup.dataset[ex.state["cell"]]["cell_type"] == "endothelial"
    assert "endothelial" in ex.title
    ex.set(cell="cell_04")
    assert ex.state["cell"] == 4 and ex.state["cell_type"] is None  # another type clears it
    ex.set(cell_type=None)


def test_select_by_attention(setup, explorer):
    ex = explorer.set(cell=3, layer=1, head="mean", top_n=5, select="attention", gene="",
                      method="weight")
    A = _weights(setup.model, setup.dataset[3]["input_ids"])[1].mean(0)
    top = np.argsort(-A.sum(0), kind="stable")[:5]
    assert list(ex.data()["genes"]["rank"]) == top.tolist()
    ex.set(select="rank")


def test_summary_matches_head_summary(setup, explorer, tiny):
    ex = explorer.set(cell=5)
    summ = ex.data()["summary"]
    assert len(summ) == setup.model.config.num_hidden_layers * setup.model.config.num_attention_heads
    ids = setup.dataset[5]["input_ids"]
    tfs = [t for t in setup.vocab.tokens(tiny.TFS) if t in ids]
    ref = att.head_summary(setup.model, [ids], tf_tokens=tfs, progress=False)
    np.testing.assert_allclose(summ["entropy"], ref["entropy"], rtol=1e-6)
    np.testing.assert_allclose(summ["tf_attention"], ref["tf_attention"], rtol=1e-6)


def test_figure_contents(setup, explorer):
    ex = explorer.set(cell=0, layer=1, head="mean", top_n=8, gene="", method="weight")
    fig = ex.figure()
    titles = [a.get_title() for a in fig.axes]
    assert any("layer 1" in t and "head mean" in t for t in titles)
    assert any("entropy" in t for t in titles) and any("TFs" in t for t in titles)
    heat_ax = next(a for a in fig.axes if "layer 1" in a.get_title())
    labels = [t.get_text() for t in heat_ax.get_xticklabels()]
    assert labels == setup.vocab.symbols(setup.dataset[0]["input_ids"][:8])
    # keyword arguments go through set()
    fig2 = ex.figure(layer=0, head=1)
    assert any("layer 0 · head 1" in a.get_title() for a in fig2.axes)


def test_bertviz_view(explorer):
    ex = explorer.set(cell=0, top_n=5, layer="all", head="mean")
    html = ex.bertviz("head").data
    for g in ex.data()["heatmap"].index:
        assert g in html
    assert ex.bertviz("model").data
    with pytest.raises(CourseInputError):
        ex.bertviz("neuron")


def test_widget_updates_and_latency(setup, explorer, capsys):
    ex = explorer.set(cell=0, cell_type=None, layer="all", head="mean", method="weight",
                      top_n=10, gene="", select="rank")
    w = ex.widget
    assert "ch-explorer" in w._dom_classes
    before_png, before_title = ex._heat_w.value, ex._title_w.value
    times = []
    for layer in (1, 0, "all", 1):
        t0 = time.perf_counter()
        ex._w["attn_layer"].value = layer
        times.append(time.perf_counter() - t0)
    assert "layer 1" in ex._title_w.value and ex._title_w.value != before_title
    assert ex._heat_w.value != before_png
    ex._w["method"].value = "norm"
    ex._w["head"].value = 1
    assert "norm-based" in ex._title_w.value and ex.state["head"] == 1
    # cell-type filter narrows the cell dropdown
    ex._w["cell_type"].value = "fibroblast"
    assert all("fibroblast" in label for label, _ in ex._w["cell"].options)
    assert setup.dataset[ex.state["cell"]]["cell_type"] == "fibroblast"
    # unknown gene in the search box: message in the widget, no exception
    ex._w["gene"].value = "NOTAGENE1"
    assert "NOTAGENE1" in ex._msg_w.value
    ex._w["gene"].value = ""
    assert "ok" in ex._msg_w.value
    with capsys.disabled():
        print(f"\n[bench] AttentionExplorer redraw after a layer change (tiny model, cached "
              f"cell): median {np.median(times[1:]):.3f} s, max {max(times):.3f} s; "
              f"last_redraw_s={ex.last_redraw_s:.3f}")


def test_display_bundle(explorer, monkeypatch):
    import IPython.display

    ex = explorer.set(cell=0, top_n=6, gene="")
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))
    monkeypatch.delenv("COURSE_STATIC_WIDGETS", raising=False)
    ex._ipython_display_()
    bundle, kw = shown[-1]
    assert kw.get("raw") is True
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/png"] and "AttentionExplorer(" in bundle["text/plain"]
    monkeypatch.setenv("COURSE_STATIC_WIDGETS", "1")
    ex.show()
    from matplotlib.figure import Figure

    fig = shown[-1][0]
    assert isinstance(fig, Figure) and fig._repr_png_()[:4] == b"\x89PNG"  # any backend


def test_anndata_input(setup, tiny):
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    genes = list(tiny.GENES)
    X = rng.poisson(2.0, size=(6, len(genes))).astype(np.float32)
    X[:, 0] += 20
    obs = pd.DataFrame({"cell_id": [f"c{i}" for i in range(6)],
                        "cell_type": ["a", "b"] * 3, "n_counts": X.sum(1)},
                       index=[f"c{i}" for i in range(6)])
    adata = ad.AnnData(sp.csr_matrix(X), obs=obs,
                       var=pd.DataFrame({"ensembl_id": genes}, index=genes))
    ex = AttentionExplorer(setup.model, adata, top_n=4)
    assert ex.cells.n == 6 and ex.data()["heatmap"].shape == (4, 4)
    assert ex.data()["heatmap"].index[0] == "GATA4"
    assert "c0 (a)" in ex.title


def test_v1_fixture_model(perturb_fixture_dir, v1_dir):
    """Real V1 vocabulary and PBMC cells: symbols on the axes, maps equal cell_attentions."""
    from course_helpers.model import load_model
    from course_helpers.vocab import GeneVocab

    vocab = GeneVocab.from_tsv(v1_dir / "vocab_gc30M.tsv")
    # default (SDPA) attention: the explorer switches to eager attention where it needs weights
    model = load_model(str(perturb_fixture_dir / "model"), vocab=vocab, device="cpu")
    cells = pd.read_parquet(perturb_fixture_dir / "cells.parquet")
    ex = AttentionExplorer(model, cells, top_n=12, cell="cell_0012", layer=3, head=2)
    assert "cell_0012 (CD19+ B)" in ex.title
    ids = list(cells.set_index("cell_id").loc["cell_0012", "input_ids"])
    A = _weights(model, ids)
    np.testing.assert_allclose(ex.data()["heatmap"].to_numpy(), A[3, 2, :12, :12], atol=1e-6)
    assert list(ex.data()["heatmap"].index) == vocab.symbols(ids[:12])
    t0 = time.perf_counter()
    ex.set(layer=4, head="mean")
    ex.figure()
    print(f"\n[bench] V1 fixture ({len(ids)} genes): set + figure {time.perf_counter() - t0:.3f} s")
    ex.set(cell_type="CD14+ Monocyte")
    assert cells.loc[ex.state["cell"], "cell_type"] == "CD14+ Monocyte"


def test_old_layer_keyword_warns_and_gives_same_result(setup):
    """``layer=`` is the old name of ``attn_layer=`` (constructor, set, figure methods)."""
    new = AttentionExplorer(setup.model, setup.dataset, top_n=6, attn_layer=1, head=0)
    with pytest.warns(CourseDeprecationWarning, match=r"\(layer=\.\.\.\) is now .*attn_layer="):
        old = AttentionExplorer(setup.model, setup.dataset, top_n=6, layer=1, head=0)
    assert old.state == new.state and old.state["attn_layer"] == 1
    np.testing.assert_array_equal(old.data()["heatmap"], new.data()["heatmap"])
    with pytest.warns(CourseDeprecationWarning, match=r"AttentionExplorer.set\(layer="):
        old.set(layer=0)
    assert old.state == new.set(attn_layer=0).state
    np.testing.assert_array_equal(old.data()["heatmap"], new.data()["heatmap"])
    with pytest.warns(CourseDeprecationWarning, match=r"AttentionExplorer.figure\(layer="):
        old.figure(layer="all")
    with pytest.warns(CourseDeprecationWarning, match=r"heatmap_figure\(layer="):
        old.heatmap_figure(layer="all")
    assert old.state["attn_layer"] == "all"
    with pytest.raises(CourseInputError, match="both layer= and attn_layer="):
        old.set(layer=0, attn_layer=1)


def test_special_tokens_in_a_cell_are_not_genes():
    """V2 cells start with <cls> and end with <eos>: the explorer maps the genes between them."""
    from course_helpers.model import load_model, model_facts

    model = load_model("teaching")
    special = int(model_facts(model).special_ids[-1])
    genes = model.gene_vocab.tokens(["GATA4", "MYH6", "TNNT2"])
    ex = AttentionExplorer(model, [[special, *genes, special]], top_n=3)
    heat = ex.set(cell=0, attn_layer=0, head="mean").data()["heatmap"]
    assert ex.message == ""
    assert heat.shape == (3, 3)
    assert sorted(heat.index) == sorted(model.gene_vocab.symbols(genes))
