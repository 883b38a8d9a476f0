"""Shared data of the baselines tests: a small synthetic data set with planted TF -> target edges.

The data (400 cells, 8 TFs, 60 targets, 12 background genes) are made here: every target is a
linear function of one or two TF activities, observed through negative-binomial counts. Each
method must rank the planted edges far above random (AUPRC via scikit-learn): the ``auprc`` and
``check_edge_table`` fixtures give the tests the scorer and the edge-table checks.
"""
from __future__ import annotations

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


def _auprc(edges: pd.DataFrame, adata, truth) -> tuple[float, float]:
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


@pytest.fixture
def auprc():
    """AUPRC of an edge table over all TF x gene pairs, and its random level."""
    return _auprc


@pytest.fixture
def check_edge_table():
    """Assert the edge-table contract (columns, IDs, no self-loops, sorted, symbols)."""
    return _check_edge_table
