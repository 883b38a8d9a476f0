"""Tests for course_helpers.baselines.regulons and .activity (regulon activity) on the synthetic data of conftest.py."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rustscenic")
pytest.importorskip("PyWGCNA")
pytest.importorskip("decoupler")


from course_helpers import baselines as B
from course_helpers._utils import CourseInputError

N_TFS = 8  # the synthetic data's regulators (see conftest.py)


def test_regulons_and_pruned_edges(data, tfs, grn, auprc, check_edge_table):
    adata, truth, _ = data
    regs = B.regulons(adata, grn, min_targets=5)
    assert set(regs) <= set(tfs) and len(regs) >= 6
    true = set(zip(truth.source, truth.target))
    members = [(tf, t) for tf, ts in regs.items() for t in ts]
    precision = np.mean([m in true for m in members])
    assert precision > 3 * len(true) / (N_TFS * (adata.n_vars - 1)), precision
    pruned = B.regulon_edges(regs, grn)
    check_edge_table(pruned, adata)
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
