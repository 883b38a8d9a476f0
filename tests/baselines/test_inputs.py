"""Tests for course_helpers.baselines inputs: bad data, missing regulators, optional packages on the synthetic data of conftest.py."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("rustscenic")
pytest.importorskip("PyWGCNA")
pytest.importorskip("decoupler")

import anndata as ad

from course_helpers import baselines as B
from course_helpers._utils import CourseInputError


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
