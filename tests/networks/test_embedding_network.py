"""Tests for gene-embedding networks: similarity, kNN graph, communities, scoring vs the truth."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("datasets")

from course_helpers._utils import CourseInputError
from course_helpers.networks import (
    EmbeddingNetwork,
    cosine_similarity,
    embedding_network,
    embedding_similarity,
    module_agreement,
    pool_similarities,
    score_edges,
)


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(min(2, n))
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ synthetic embeddings
def _planted(n_modules=3, size=20, dim=16, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_modules, dim)) * 3
    rows, labels = [], {}
    for m in range(n_modules):
        for i in range(size):
            g = f"m{m}_g{i}"
            rows.append(pd.Series(centres[m] + rng.normal(scale=noise * 3, size=dim), name=g))
            labels[g] = m
    return pd.DataFrame(rows), labels


def test_cosine_similarity_matches_numpy():
    emb, _ = _planted()
    S = cosine_similarity(emb)
    X = emb.to_numpy()
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(S.to_numpy(), X @ X.T, atol=1e-12)
    C = cosine_similarity(emb, center=True)
    Y = emb.to_numpy() - emb.to_numpy().mean(0)
    Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    np.testing.assert_allclose(C.to_numpy(), Y @ Y.T, atol=1e-12)
    with_nan = emb.copy()
    with_nan.iloc[0] = np.nan
    assert len(cosine_similarity(with_nan)) == len(emb) - 1
    zero = emb.copy()
    zero.iloc[1] = 0.0
    with pytest.raises(CourseInputError, match="all-zero"):
        cosine_similarity(zero)


def test_knn_graph_recovers_planted_modules():
    emb, labels = _planted()
    net = embedding_network(cosine_similarity(emb), k=5, seed=0)
    assert isinstance(net, EmbeddingNetwork)
    assert module_agreement(net.modules.to_dict(), labels) == pytest.approx(1.0)
    # each gene chose 5 neighbours; union -> every node has degree >= 5
    assert min(d for _, d in net.graph.degree()) >= 5
    mutual = embedding_network(cosine_similarity(emb), k=5, mutual=True, seed=0)
    assert set(map(frozenset, mutual.graph.edges)) <= set(map(frozenset, net.graph.edges))
    assert max(d for _, d in mutual.graph.degree()) <= 5
    # shuffled labels: the same graph is far from a wrong partition
    wrong = dict(zip(labels, np.random.default_rng(1).permutation(list(labels.values()))))
    assert module_agreement(net.modules.to_dict(), wrong) < 0.2


def test_threshold_graph_and_outputs():
    emb, _ = _planted()
    S = cosine_similarity(emb)
    net = embedding_network(S, k=None, threshold=0.8, seed=0)
    w = [d["weight"] for _, _, d in net.graph.edges(data=True)]
    assert min(w) >= 0.8 and net.graph.number_of_nodes() == len(S)
    iu = np.triu_indices(len(S), 1)
    assert net.graph.number_of_edges() == int((S.to_numpy()[iu] >= 0.8).sum())
    e = net.edges()
    assert list(e.columns) == ["source", "target", "score"] and (np.diff(e["score"]) <= 0).all()
    tfs = ["m0_g0", "m1_g0"]
    full = net.tf_edges(tfs)
    assert set(full["source"]) == set(tfs) and len(full) == 2 * (len(S) - 1)
    assert full.set_index(["source", "target"]).loc[("m0_g0", "m0_g1"), "score"] == \
        pytest.approx(S.loc["m0_g0", "m0_g1"])
    graph_only = net.tf_edges(tfs, graph_only=True)
    assert (graph_only["score"] >= 0.8).all() and set(graph_only["source"]) <= set(tfs)
    ad = net.to_anndata()
    assert ad.n_obs == len(S) and ad.obsp["connectivities"].shape == (len(S), len(S))
    assert ad.obsp["connectivities"].nnz == 2 * net.graph.number_of_edges()
    assert list(ad.obs["module"].astype(int)) == list(net.modules)
    assert ad.uns["embedding_network"]["threshold"] == 0.8
    assert "modules=" in repr(net) and sum(map(len, net.module_genes().values())) == len(S)
    with pytest.raises(CourseInputError, match="k="):
        embedding_network(S, k=None)
    with pytest.raises(CourseInputError, match="square"):
        embedding_network(S.iloc[:5])
    with pytest.raises(CourseInputError, match="at least 1"):
        embedding_network(S, k=0)


# ------------------------------------------------------------------ the teaching model
@pytest.fixture(scope="module")
def model():
    from course_helpers.model import load_model

    return load_model("teaching", device="cpu")


@pytest.fixture(scope="module")
def tissue(model):
    """A tissue drawn with a seed no chapter uses: 240 good cells, tokenized."""
    from course_helpers.data import simulate_tissue
    from course_helpers.tokenize import tokenize

    adata = simulate_tissue(n_cells=260, seed=11, progress=False)
    adata = adata[~adata.obs["low_quality"].to_numpy()].copy()
    ds = tokenize(adata, model.gene_vocab, cell_attrs=("cell_id", "cell_type"), progress=False)
    return adata, ds


def test_similarity_is_cosine_of_embed_genes(model, tissue):
    from course_helpers.embed import embed_genes

    adata, ds = tissue
    genes = list(adata.var_names[:60])
    mask = np.asarray(ds["cell_type"]) == "cardiomyocyte"
    sim = embedding_similarity(model, ds, cells=mask, genes=genes, min_cells=2, progress=False)
    with warnings.catch_warnings():  # genes absent from these cells: NaN rows, dropped below
        warnings.simplefilter("ignore")
        emb = embed_genes(model, ds.select(np.flatnonzero(mask)), genes=genes, progress=False)
    emb.index = emb.ensembl_id.to_numpy()
    n = emb.n_cells.to_numpy()
    emb = emb[(n >= 2) & ~emb.isna().any(axis=1).to_numpy()]
    assert list(sim.index) == list(emb.index) and list(sim.columns) == list(emb.index)
    assert all(g.startswith("ENSG") for g in sim.index)
    X = emb.to_numpy(np.float64)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(sim.to_numpy(), np.clip(X @ X.T, -1, 1), atol=1e-6)
    assert (sim.n_cells >= 2).all() and sim.params["cells_used"] == mask.sum()
    assert sim.symbol.index.equals(sim.index)
    assert sim.embeddings.shape == (len(sim), model.config.hidden_size)
    # the same cells given as row positions
    again = embedding_similarity(model, ds, cells=np.flatnonzero(mask), genes=genes,
                                 min_cells=2, progress=False)
    pd.testing.assert_frame_equal(sim, again)


def test_groupby_gives_one_matrix_per_group(model, tissue):
    adata, ds = tissue
    genes = list(adata.var_names[:40])
    ct = np.asarray(ds["cell_type"])
    keep = np.isin(ct, ["fibroblast", "endothelial"])
    per = embedding_similarity(model, ds, cells=keep, groupby="cell_type", genes=genes,
                               progress=False)
    assert set(per) == {"fibroblast", "endothelial"}
    fib = embedding_similarity(model, ds, cells=ct == "fibroblast", genes=genes, progress=False)
    pd.testing.assert_frame_equal(per["fibroblast"], fib)
    assert per["fibroblast"].params["group"] == {"cell_type": "fibroblast"}
    # pooling the groups = one pass over all their cells
    pooled = pool_similarities(per)
    direct = embedding_similarity(model, ds, cells=keep, genes=genes, progress=False)
    pooled = pooled.loc[direct.index, direct.index]
    np.testing.assert_allclose(pooled.to_numpy(), direct.to_numpy(), atol=1e-5)
    pd.testing.assert_series_equal(pooled.n_cells.loc[direct.index],
                                   direct.n_cells, check_dtype=False)
    with pytest.raises(CourseInputError, match="groupby"):
        pool_similarities({})
    assert not np.allclose(per["fibroblast"].loc[fib.index[:5], fib.index[:5]],
                           per["endothelial"].reindex(index=fib.index[:5],
                                                      columns=fib.index[:5]))


def test_bad_inputs(model, tissue):
    _, ds = tissue
    with pytest.raises(CourseInputError, match="boolean mask of length"):
        embedding_similarity(model, ds, cells=[True, False], progress=False)
    with pytest.raises(CourseInputError, match="outside"):
        embedding_similarity(model, ds, cells=[0, 10**6], progress=False)
    with pytest.raises(CourseInputError, match="no column 'disease'"):
        embedding_similarity(model, ds, groupby="disease", progress=False)
    with pytest.raises(CourseInputError, match="Only"):
        embedding_similarity(model, ds, cells=[0, 1], min_cells=50, progress=False)
    with pytest.raises(CourseInputError, match="min_cells"):
        embedding_similarity(model, ds, min_cells=0, progress=False)


def test_tissue_network_beats_random_and_finds_programmes(model, tissue):
    """Scored against the planted truth on an unseen tissue seed: edges and modules."""
    from course_helpers.data import load_ground_truth

    adata, ds = tissue
    gt = load_ground_truth()
    detected = np.asarray((adata.X > 0).mean(axis=0)).ravel()
    genes = list(adata.var_names[(detected >= 0.05) | adata.var["gene_class"].eq("tf")])
    sim = embedding_similarity(model, ds, genes=genes, progress=False)
    s = score_edges(embedding_network(sim, k=10, seed=0).tf_edges(gt.tfs), gt.edges,
                    tfs=gt.tfs, genes=list(sim.index))
    assert s["auprc_ratio"] > 3 and s["epr"] > 3
    net = embedding_network(sim, k=10, seed=0)
    ari = module_agreement(net.modules.to_dict(), gt.programs)
    assert ari > 0.1
    # shuffling the gene labels of the modules destroys the agreement
    rng = np.random.default_rng(0)
    shuffled = dict(zip(net.modules.index, rng.permutation(net.modules.to_numpy())))
    assert module_agreement(shuffled, gt.programs) < ari / 3
    # the modules are enriched for the tissue's true gene sets, far below every decoy
    pytest.importorskip("gseapy")
    from course_helpers.networks import enrich_modules, tissue_gene_sets

    sets = tissue_gene_sets(gt, universe=list(sim.index), decoys=3, seed=0)
    res = enrich_modules(net.modules, sets, universe=list(sim.index))
    decoy = res["gene_set"].str.startswith("decoy")
    assert not decoy.iloc[0] and res["p_value"].iloc[0] < 1e-10
    assert res.loc[decoy, "p_value"].min() > 1e3 * res["p_value"].iloc[0]
    print(f"seed 11: AUPRC ratio {s['auprc_ratio']:.2f}, EPR {s['epr']:.2f}, ARI {ari:.3f}, "
          f"best set {res['gene_set'].iloc[0]} p={res['p_value'].iloc[0]:.1e}, "
          f"best decoy p={res.loc[decoy, 'p_value'].min():.1e}")
