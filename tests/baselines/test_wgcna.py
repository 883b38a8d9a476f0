"""Tests for course_helpers.baselines.wgcna on the synthetic data of conftest.py."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rustscenic")
pytest.importorskip("PyWGCNA")
pytest.importorskip("decoupler")


from course_helpers import baselines as B
from course_helpers._utils import CourseInputError


def test_wgcna_modules_cover_genes_and_recover_edges(data, tfs, tmp_path, monkeypatch, auprc, check_edge_table):
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
    check_edge_table(res.edges, adata)
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
