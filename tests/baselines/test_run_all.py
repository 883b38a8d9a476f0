"""Tests for course_helpers.baselines.run_all and the warning classes on the synthetic data of conftest.py."""
from __future__ import annotations

import pytest

pytest.importorskip("rustscenic")
pytest.importorskip("PyWGCNA")
pytest.importorskip("decoupler")


from course_helpers import baselines as B


def test_run_all_baselines(data, tfs, auprc, check_edge_table):
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
        check_edge_table(edges, adata)
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
