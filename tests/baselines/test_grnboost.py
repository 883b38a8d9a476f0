"""Tests for course_helpers.baselines.grnboost on the synthetic data of conftest.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rustscenic")
pytest.importorskip("PyWGCNA")
pytest.importorskip("decoupler")


from course_helpers import baselines as B


def test_grnboost2_recovers_edges_and_is_deterministic(data, tfs, grn, auprc, check_edge_table):
    adata, truth, _ = data
    check_edge_table(grn, adata)
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
def test_grnboost2_fixed_trees(data, tfs, auprc):
    adata, truth, _ = data
    full = B.grnboost2(adata, tfs, seed=0, n_estimators=500, early_stop_window=0)
    assert full.attrs["grn_fit"]["fitted_trees_min"] == 500
    ap, rand = auprc(full, adata, truth)
    assert ap > 0.5 and ap > 4 * rand
