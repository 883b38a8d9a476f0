"""Tests for course_helpers.baselines on a small synthetic data set with planted TF -> target edges.

The data (400 cells, 8 TFs, 60 targets, 12 background genes) are made here: every target is a
linear function of one or two TF activities, observed through negative-binomial counts. Each
method must rank the planted edges far above random (AUPRC via scikit-learn).
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("rustscenic")
pytest.importorskip("PyWGCNA")
pytest.importorskip("decoupler")

import anndata as ad
from sklearn.metrics import average_precision_score

from course_helpers import baselines as B
from course_helpers._utils import CourseInputError

N_TFS = 8


def make_synthetic(n_cells=400, n_tfs=N_TFS, n_targets=60, n_background=12, seed=0, dispersion=5.0):
    """Counts from planted linear TF -> target edges with NB noise. Returns (adata, truth, activity)."""
    rng = np.random.default_rng(seed)
    tfs = [f"ENSG{90000000000 + i:011d}" for i in range(n_tfs)]
    targets = [f"ENSG{91000000000 + i:011d}" for i in range(n_targets)]
    bg = [f"ENSG{92000000000 + i:011d}" for i in range(n_background)]
    genes = tfs + targets + bg
    symbols = ([f"TF{i}" for i in range(n_tfs)] + [f"TG{i}" for i in range(n_targets)]
               + [f"BG{i}" for i in range(n_background)])
    act = np.exp(rng.normal(0, 0.8, size=(n_cells, n_tfs)))  # latent TF activity per cell
    size = np.exp(rng.normal(0, 0.25, size=n_cells))[:, None]  # library-size factor
    mu = np.empty((n_cells, len(genes)))
    mu[:, :n_tfs] = 6.0 * act
    edges = []
    for j in range(n_targets):
        parents = [j % n_tfs]
        if rng.random() < 0.3:
            parents.append(int(rng.choice([t for t in range(n_tfs) if t != parents[0]])))
        m = np.full(n_cells, rng.uniform(0.5, 2.0))
        for p in parents:
            w = rng.uniform(1.5, 3.0)
            m = m + w * act[:, p]
            edges.append((tfs[p], targets[j], w, len(parents)))
        mu[:, n_tfs + j] = m
    mu[:, n_tfs + n_targets:] = rng.uniform(2, 10, size=n_background)
    mu *= size
    counts = rng.negative_binomial(dispersion, dispersion / (dispersion + mu))
    var = pd.DataFrame({"gene_symbol": symbols,
                        "gene_class": ["tf"] * n_tfs + ["target"] * n_targets + ["background"] * n_background},
                       index=genes)
    adata = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)),
                       obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]), var=var)
    truth = pd.DataFrame(edges, columns=["source", "target", "weight", "n_parents"])
    return adata, truth, pd.DataFrame(act, index=adata.obs_names, columns=tfs)


def auprc(edges: pd.DataFrame, adata, truth) -> tuple[float, float]:
    """AUPRC of an edge table over all TF x gene pairs (missing pairs score 0), and its random level."""
    tfs = adata.var_names[:N_TFS]
    true = set(zip(truth.source, truth.target))
    score = edges.groupby(["source", "target"])["score"].max()
    pairs = [(s, t) for s in tfs for t in adata.var_names if s != t]
    y = np.array([p in true for p in pairs])
    s = np.array([score.get(p, 0.0) for p in pairs])
    return average_precision_score(y, s), y.mean()


@pytest.fixture(scope="module")
def data():
    return make_synthetic()


@pytest.fixture(scope="module")
def tfs(data):
    return list(data[0].var_names[:N_TFS])


@pytest.fixture(scope="module")
def grn(data, tfs):
    return B.grnboost2(data[0], tfs, seed=0)


def _check_edge_table(df, adata):
    assert {"source", "target", "score", "source_symbol", "target_symbol"} <= set(df.columns)
    assert df["source"].isin(adata.var_names).all() and df["target"].isin(adata.var_names).all()
    assert (df["source"] != df["target"]).all()
    assert df["score"].is_monotonic_decreasing
    assert np.isfinite(df["score"]).all()
    sym = adata.var["gene_symbol"]
    assert (df["source_symbol"].values == sym.reindex(df["source"]).values).all()


# ------------------------------------------------------------------------------------ correlation
@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlation_recovers_planted_edges(data, tfs, method):
    adata, truth, _ = data
    edges = B.correlation_network(adata, tfs, method=method)
    _check_edge_table(edges, adata)
    assert len(edges) == N_TFS * (adata.n_vars - 1)
    ap, rand = auprc(edges, adata, truth)
    assert ap > 0.6 and ap > 4 * rand, (ap, rand)
    np.testing.assert_allclose(edges["score"], edges["r"].abs())
    assert set(edges["sign"].unique()) <= {-1, 0, 1}


def test_correlation_signed_symbols_and_topk(data, tfs):
    adata, truth, _ = data
    X = adata.X.toarray()
    L = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    edges = B.correlation_network(adata, ["TF0", "TF1"], absolute=False, top_k=5)  # symbols work
    assert set(edges["source"]) == set(tfs[:2])
    assert edges.groupby("source").size().max() == 5
    np.testing.assert_allclose(edges["score"], edges["r"])
    row = edges.iloc[0]
    i, j = adata.var_names.get_loc(row["source"]), adata.var_names.get_loc(row["target"])
    assert row["r"] == pytest.approx(np.corrcoef(L[:, i], L[:, j])[0, 1], abs=1e-4)
    # planted edges are activating: their correlations are positive
    full = B.correlation_network(adata, tfs).set_index(["source", "target"])
    assert (full.loc[list(zip(truth.source, truth.target)), "sign"] == 1).mean() > 0.95


def test_correlation_normalize_false_and_layer(data, tfs):
    adata, _, _ = data
    a = adata.copy()
    a.layers["counts"] = a.X.copy()
    X = a.X.toarray()
    a.X = sp.csr_matrix(np.log1p(X / X.sum(1, keepdims=True) * 1e4))
    from_layer = B.correlation_network(a, tfs, layer="counts")
    already_log = B.correlation_network(a, tfs, normalize=False)
    pd.testing.assert_series_equal(from_layer["score"], already_log["score"], atol=1e-4)


# ------------------------------------------------------------------------------------------ WGCNA
def test_wgcna_modules_cover_genes_and_recover_edges(data, tfs, tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    adata, truth, _ = data
    monkeypatch.chdir(tmp_path)
    filters_before, err_before = list(warnings.filters), np.geterr()
    rc_before = dict(matplotlib.rcParams)
    figs_before = plt.get_fignums()
    with pd.option_context("mode.copy_on_write", True):  # PyWGCNA needs it off; we switch it off
        res = B.wgcna_modules(adata, power=6, min_module_size=5, seed=0)
    # no files, figures or global state left behind
    assert os.listdir(tmp_path) == []
    assert plt.get_fignums() == figs_before
    assert warnings.filters == filters_before and np.geterr() == err_before
    assert dict(matplotlib.rcParams) == rc_before
    # every gene gets a module; the planted programs show up as modules
    assert list(res.modules.index) == list(adata.var_names)
    assert res.modules.notna().all()
    assert res.n_modules >= 4
    single = truth[truth.n_parents == 1]
    same = (res.modules.reindex(single.source).values == res.modules.reindex(single.target).values)
    assert same.mean() > 0.7, same.mean()
    assert sum(len(v) for v in res.module_genes(include_grey=True).values()) == adata.n_vars
    _check_edge_table(res.edges, adata)
    assert set(res.edges["source"]) == set(tfs)
    ap, rand = auprc(res.edges, adata, truth)
    assert ap > 0.6 and ap > 4 * rand, (ap, rand)
    assert res.tom.shape[0] == res.tom.shape[1] <= adata.n_vars
    assert res.eigengenes.shape == (adata.n_obs, res.n_modules)
    assert res.power == 6 and res.scale_free_fit["Power"].tolist() == [6]


def test_wgcna_economy_svd_shim_changes_nothing(data):
    """Our economy-SVD copy of PyWGCNA's eigengene code gives identical results."""
    adata, _, _ = data
    fast = B.wgcna_modules(adata, min_module_size=5)
    import PyWGCNA.wgcna

    assert PyWGCNA.wgcna.np is np  # PyWGCNA's own module is never touched
    slow = B.wgcna_modules(adata, min_module_size=5, economy_svd=False)
    pd.testing.assert_series_equal(fast.modules, slow.modules)
    pd.testing.assert_frame_equal(fast.edges, slow.edges)


def test_wgcna_economy_copy_leaves_pywgcna_alone():
    """The economy class is a subclass with rebound copies; PyWGCNA's class and module are unchanged."""
    import PyWGCNA
    import PyWGCNA.wgcna

    from course_helpers.baselines.wgcna import _economy_wgcna_class

    cls = _economy_wgcna_class()
    assert issubclass(cls, PyWGCNA.WGCNA) and cls is not PyWGCNA.WGCNA
    assert PyWGCNA.WGCNA.moduleEigengenes.__globals__ is vars(PyWGCNA.wgcna)
    assert PyWGCNA.wgcna.np is np and PyWGCNA.wgcna.WGCNA is PyWGCNA.WGCNA
    ours = cls.moduleEigengenes.__globals__
    assert ours is not vars(PyWGCNA.wgcna)
    assert ours["WGCNA"] is cls and ours["np"] is not np
    assert cls.findModules.__globals__ is ours and cls.mergeCloseModules.__globals__ is ours
    a = np.random.default_rng(0).normal(size=(5, 40))
    _, _, vt = ours["np"].linalg.svd(a)  # economy by default: no 40 x 40 matrix
    assert vt.shape == (5, 40)
    assert np.linalg.svd(a)[2].shape == (40, 40)  # numpy itself unchanged


def test_wgcna_min_module_size_too_large(data):
    adata, _, _ = data
    with pytest.raises(CourseInputError, match="min_module_size"):
        B.wgcna_modules(adata, min_module_size=60)  # > half the genes: refused up front
    with pytest.raises(CourseInputError, match="no module.*min_module_size|lower min_module_size"):
        B.wgcna_modules(adata, min_module_size=30)  # planted modules have ~10 genes: none qualifies


def test_wgcna_bad_settings(data):
    adata, _, _ = data
    with pytest.raises(CourseInputError, match="network_type"):
        B.wgcna_modules(adata, network_type="bogus")
    with pytest.raises(CourseInputError, match="power"):
        B.wgcna_modules(adata, power=0)
    with pytest.raises(CourseInputError, match="max_memory_gb"):
        B.wgcna_modules(adata, max_memory_gb=1e-6)


# -------------------------------------------------------------------------------------- GRNBoost2
def test_grnboost2_recovers_edges_and_is_deterministic(data, tfs, grn):
    adata, truth, _ = data
    _check_edge_table(grn, adata)
    assert set(grn["source"]) <= set(tfs)
    np.testing.assert_allclose(grn["score"], grn["importance"])
    ap, rand = auprc(grn, adata, truth)
    assert ap > 0.5 and ap > 4 * rand, (ap, rand)
    again = B.grnboost2(adata, tfs, seed=0)
    pd.testing.assert_frame_equal(grn, again)
    other = B.grnboost2(adata, tfs, seed=1)
    merged = grn.merge(other, on=["source", "target"])
    assert not np.allclose(merged["importance_x"], merged["importance_y"])


@pytest.mark.slow
def test_grnboost2_fixed_trees(data, tfs):
    adata, truth, _ = data
    full = B.grnboost2(adata, tfs, seed=0, n_estimators=500, early_stop_window=0)
    assert full.attrs["grn_fit"]["fitted_trees_min"] == 500
    ap, rand = auprc(full, adata, truth)
    assert ap > 0.5 and ap > 4 * rand


# ------------------------------------------------------------------------------ regulons / activity
def test_regulons_and_pruned_edges(data, tfs, grn):
    adata, truth, _ = data
    regs = B.regulons(adata, grn, min_targets=5)
    assert set(regs) <= set(tfs) and len(regs) >= 6
    true = set(zip(truth.source, truth.target))
    members = [(tf, t) for tf, ts in regs.items() for t in ts]
    precision = np.mean([m in true for m in members])
    assert precision > 3 * len(true) / (N_TFS * (adata.n_vars - 1)), precision
    pruned = B.regulon_edges(regs, grn)
    _check_edge_table(pruned, adata)
    assert len(pruned) == len(members) < len(grn)
    ap, rand = auprc(pruned, adata, truth)
    assert ap > 0.5 and ap > 4 * rand, (ap, rand)
    with_rep = B.regulons(adata, grn, min_targets=5, include_repressors=True)
    assert set(regs) <= set(with_rep)
    assert all(k in tfs or k.endswith("_repressor") for k in with_rep)


@pytest.mark.parametrize("method,kw", [("aucell", {"n_up": 20}), ("ulm", {})])
def test_regulon_activity_tracks_tf_activity(data, tfs, method, kw):
    adata, truth, act = data
    regs = {tf: truth.target[truth.source == tf].tolist() for tf in tfs}
    scores = B.regulon_activity(adata, regs, method=method, **kw)
    assert list(scores.index) == list(adata.obs_names)
    assert set(scores.columns) == set(tfs)
    corr = np.corrcoef(scores[tfs].to_numpy().T, act[tfs].to_numpy().T)[:N_TFS, N_TFS:]
    diag, off = np.diag(corr).mean(), corr[~np.eye(N_TFS, dtype=bool)].mean()
    assert diag > 0.5 and diag - off > 0.4, (diag, off)


def test_regulon_activity_symbols_pvalues_and_errors(data, tfs):
    adata, _, _ = data
    regs = {"TF0": [f"TG{i}" for i in range(0, 60, N_TFS)]}  # symbols are mapped to IDs
    scores, padj = B.regulon_activity(adata, regs, method="ulm", return_pvalues=True)
    assert scores.shape == padj.shape == (adata.n_obs, 1)
    assert ((padj.to_numpy() >= 0) & (padj.to_numpy() <= 1)).all()
    with pytest.raises(CourseInputError, match="tmin"):
        B.regulon_activity(adata, {"TF0": ["TG0", "TG8"]})
    with pytest.raises(CourseInputError, match="method"):
        B.regulon_activity(adata, regs, method="viper")
    with pytest.raises(CourseInputError, match="None of the regulon targets"):
        B.regulon_activity(adata, {"X": ["NOPE1", "NOPE2"]})


# ------------------------------------------------------------------------------------- bad inputs
def test_no_tfs_in_data(data):
    adata, _, _ = data
    for fn in (lambda: B.correlation_network(adata, ["GATA4", "TBX5"]),
               lambda: B.grnboost2(adata, ["GATA4", "TBX5"]),
               lambda: B.run_all_baselines(adata, ["ENSMUSG00000000001"], progress=False)):
        with pytest.raises(CourseInputError, match="None of the 2 TFs|None of the 1 TFs"):
            fn()
    with pytest.warns(UserWarning, match="1 of 2 TFs"):
        B.correlation_network(adata, ["TF0", "NOT_A_GENE"])


@pytest.mark.parametrize("kind", ["log", "negative", "nan"])
def test_non_count_data_refused(data, tfs, kind):
    adata, _, _ = data
    a = adata.copy()
    X = a.X.toarray()
    if kind == "log":
        X = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
        match = "does not look like raw counts"
    elif kind == "negative":
        X = X - X.mean(0)
        match = "negative"
    else:
        X[0, 0] = np.nan
        match = "NaN"
    a.X = sp.csr_matrix(X)
    for fn in (B.correlation_network, B.grnboost2, B.wgcna_modules):
        with pytest.raises(CourseInputError, match=match):
            fn(a, tfs=tfs)
    with pytest.raises(CourseInputError, match=match):
        B.regulon_activity(a, {"TF0": ["TG0"] * 5})


def test_other_bad_inputs(data, tfs, grn):
    adata, _, _ = data
    with pytest.raises(CourseInputError, match="AnnData"):
        B.correlation_network(np.zeros((5, 5)), tfs)
    with pytest.raises(CourseInputError, match="Layer 'counts' not found"):
        B.correlation_network(adata, tfs, layer="counts")
    with pytest.raises(CourseInputError, match="pearson"):
        B.correlation_network(adata, tfs, method="kendall")
    with pytest.raises(CourseInputError, match="Unknown methods"):
        B.run_all_baselines(adata, tfs, methods=["magic"])
    with pytest.raises(CourseInputError, match="grn_edges"):
        B.regulons(adata, grn[["source", "target"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata warns about the duplicates we want
        dup = ad.concat([adata[:, :5], adata[:, :5]], axis=1)
    with pytest.raises(CourseInputError, match="Duplicate gene IDs"):
        B.correlation_network(dup, tfs[:2])


def test_missing_optional_dependency_message(data, tfs, monkeypatch):
    monkeypatch.setitem(sys.modules, "rustscenic.grn", None)
    with pytest.raises(ImportError, match=r"course_helpers\[baselines\]"):
        B.grnboost2(data[0], tfs)


# ----------------------------------------------------------------------------------------- run all
def test_run_all_baselines(data, tfs):
    adata, truth, _ = data
    res = B.run_all_baselines(
        adata, tfs, seed=0,
        methods=("correlation", "spearman", "grnboost2", "regulons", "ulm"),
        method_kwargs={"regulons": {"min_targets": 5}}, progress=False)
    assert list(res.edges) == ["correlation", "spearman", "grnboost2", "regulons"]
    assert list(res.timings["method"]) == ["correlation", "spearman", "grnboost2", "regulons", "ulm"]
    assert (res.timings["wall_s"] > 0).all() and (res.timings["cpu_s"] >= 0).all()
    assert (res.timings["peak_mem_mb"] >= 0).all()
    assert res.activity["ulm"].shape[0] == adata.n_obs
    assert res.regulons and res.wgcna is None
    for name, edges in res.edges.items():
        _check_edge_table(edges, adata)
        ap, rand = auprc(edges, adata, truth)
        assert ap > 4 * rand, (name, ap)
    # regulons alone pulls in grnboost2 (and says so)
    only = B.run_all_baselines(adata, tfs, methods=["regulons"],
                               method_kwargs={"regulons": {"min_targets": 5}}, progress=False)
    assert only.timings["note"].iloc[0] == "includes grnboost2"


def test_warnings_are_classes(data, tfs, grn):
    """Code reacts to the warning's class (a CourseWarning), never to its text."""
    from course_helpers._utils import CourseWarning

    adata, _, _ = data
    with pytest.warns(B.MissingTFsWarning) as rec:
        B.correlation_network(adata, ["TF0", "NOT_A_GENE"])
    assert all(issubclass(w.category, CourseWarning) for w in rec
               if issubclass(w.category, B.MissingTFsWarning))
    with pytest.warns(B.NoRegulonsWarning):
        assert B.regulons(adata, grn, min_targets=10_000) == {}
    assert issubclass(B.NoRegulonsWarning, CourseWarning)
