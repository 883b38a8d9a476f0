"""Tests for course_helpers.baselines.correlation on the synthetic data of conftest.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("rustscenic")
pytest.importorskip("PyWGCNA")
pytest.importorskip("decoupler")


from course_helpers import baselines as B

N_TFS = 8  # the synthetic data's regulators (see conftest.py)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlation_recovers_planted_edges(data, tfs, method, auprc, check_edge_table):
    adata, truth, _ = data
    edges = B.correlation_network(adata, tfs, method=method)
    check_edge_table(edges, adata)
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
