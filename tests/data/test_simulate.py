"""Tests of the teaching tissue, its ground truth and the PBMC loader (course_helpers.data)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_helpers import data
from course_helpers._utils import CourseInputError

OBS_COLUMNS = ["cell_id", "cell_type", "state", "n_counts", "donor", "batch", "low_quality"]
GENE_CLASSES = {"tf", "target", "housekeeping", "mito", "ribo", "background"}


@pytest.fixture(scope="module")
def tissue():
    # a seed that is NOT used by any shipped split: the truth must hold for any seed
    return data.simulate_tissue(1500, seed=12345, progress=False, return_activity=True)


@pytest.fixture(scope="module")
def gt():
    return data.load_ground_truth()


def _norm(adata):
    X = sp.csr_matrix(adata.X, dtype=np.float64)
    return (sp.diags(1e4 / adata.obs["n_counts"].to_numpy(float)) @ X).tocsc()


def _col(M, adata, gene):
    return np.asarray(M[:, adata.var_names.get_loc(gene)].todense()).ravel()


# ---------------------------------------------------------------------------------------------
# determinism and schema
# ---------------------------------------------------------------------------------------------
def test_same_seed_identical_and_different_seed_differs():
    a = data.simulate_tissue(300, seed=3, progress=False)
    b = data.simulate_tissue(300, seed=3, progress=False)
    c = data.simulate_tissue(300, seed=4, progress=False)
    assert (a.X != b.X).nnz == 0
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert (a.X != c.X).nnz > 1000
    assert not set(a.obs["cell_id"]) & set(c.obs["cell_id"])


def test_schema(tissue):
    assert tissue.obs.columns.tolist() == OBS_COLUMNS
    assert tissue.obs["cell_id"].is_unique
    assert (tissue.obs_names == tissue.obs["cell_id"]).all()
    assert set(tissue.obs["state"].unique()) == {"healthy", "diseased"}
    assert tissue.obs["low_quality"].dtype == bool
    assert tissue.var_names.str.match(r"^ENSG\d{11}$").all()
    assert (tissue.var["ensembl_id"] == tissue.var_names).all()
    assert tissue.var["gene_symbol"].notna().all() and tissue.var["gene_symbol"].is_unique
    assert set(tissue.var["gene_class"].unique()) == GENE_CLASSES
    assert 600 <= tissue.n_vars <= 2000
    assert sp.isspmatrix_csr(tissue.X) or isinstance(tissue.X, sp.csr_array)
    assert tissue.X.dtype == np.float32
    np.testing.assert_allclose(tissue.obs["n_counts"], np.asarray(tissue.X.sum(1)).ravel())
    assert tissue.obsm["tf_activity"].shape == (tissue.n_obs, 23)


def test_integer_counts(tissue):
    d = tissue.X.data
    assert (d == np.round(d)).all() and (d > 0).all()


# ---------------------------------------------------------------------------------------------
# droplet realism
# ---------------------------------------------------------------------------------------------
def test_zero_fraction_and_detected_genes(tissue):
    zero = 1 - tissue.X.nnz / np.prod(tissue.shape)
    assert 0.80 <= zero <= 0.95, zero
    det = np.diff(tissue.X.indptr)
    good = ~tissue.obs["low_quality"].to_numpy()
    assert 200 <= np.median(det[good]) <= 1000
    assert np.quantile(det[good], 0.05) >= 150
    assert det.max() <= 1500


def test_library_size_varies(tissue):
    n = tissue.obs["n_counts"].to_numpy()
    good = ~tissue.obs["low_quality"].to_numpy()
    assert 1500 <= np.median(n[good]) <= 5000
    assert np.std(np.log(n[good])) > 0.3  # log-normal-like spread


def test_overdispersed(tissue):
    t = data.realism_table(tissue, name="t").loc["t"]
    assert t["frac_genes_overdispersed"] > 0.9
    assert t["nb_dispersion_median"] > 0.1


def test_low_quality_cells(tissue):
    lq = tissue.obs["low_quality"].to_numpy()
    assert 0.02 <= lq.mean() <= 0.09
    mt = tissue.var["gene_class"].to_numpy() == "mito"
    frac = np.asarray(tissue.X[:, mt].sum(1)).ravel() / tissue.obs["n_counts"].to_numpy()
    assert np.median(frac[lq]) > 0.3
    assert np.median(frac[lq]) > 3 * np.median(frac[~lq])
    assert np.median(frac[~lq]) < 0.15
    n = tissue.obs["n_counts"].to_numpy()
    assert np.median(n[lq]) < 0.5 * np.median(n[~lq])


def test_housekeeping_have_high_geneformer_medians(tissue):
    med = data.nonzero_medians(tissue)
    cls = tissue.var["gene_class"]
    hk, tf, bg = med[cls == "housekeeping"], med[cls == "tf"], med[cls == "background"]
    assert hk.min() > tf.max()
    assert hk.min() > np.nanquantile(bg, 0.95)
    assert hk.median() > np.nanquantile(med, 0.90)


# ---------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------
def test_ground_truth_consistent(gt, tissue):
    genes = set(tissue.var_names)
    assert set(gt.edges["source"]) <= genes and set(gt.edges["target"]) <= genes
    assert set(gt.edges["source"]) <= set(gt.tfs)
    assert gt.edges.columns[:7].tolist() == ["source", "target", "sign", "weight", "contexts",
                                             "source_symbol", "target_symbol"]
    assert set(gt.edges["sign"]) == {-1, 1}
    assert (gt.edges["weight"] > 0).all()
    sym = tissue.var["gene_symbol"]
    assert (sym[gt.edges["source"]].to_numpy() == gt.edges["source_symbol"].to_numpy()).all()
    assert (sym[gt.edges["target"]].to_numpy() == gt.edges["target_symbol"].to_numpy()).all()
    assert len(gt.cell_types) >= 5
    assert set(tissue.obs["cell_type"].unique()) == set(gt.cell_types)
    for ct, genes_ in gt.programs.items():
        assert ct in gt.cell_types and len(genes_) >= 5 and set(genes_) <= genes
    for ct, masters in gt.master_regulators.items():
        assert set(masters) <= set(gt.tfs)
    cls = tissue.var["gene_class"]
    assert set(cls[cls == "tf"].index) == set(gt.tfs)
    assert set(gt.housekeeping) == set(cls[cls == "housekeeping"].index)
    # contexts are valid, and some edges are context-specific
    ctx = gt.edges["contexts"].str.split(",").explode()
    assert set(ctx) <= set(gt.cell_types) | {"all"}
    assert (gt.edges["contexts"] != "all").sum() > 100
    assert len(gt.edges) >= 200


def test_disease_driver_marks_diseased_cells(gt, tissue):
    ct = gt.disease["cell_type"]
    ob = tissue.obs
    good = ~ob["low_quality"].to_numpy()
    cm = (ob["cell_type"] == ct).to_numpy() & good
    dis = (ob["state"] == gt.disease["diseased_state"]).to_numpy()
    assert not (dis & (ob["cell_type"] != ct).to_numpy()).any()  # only that cell type
    assert 50 < (cm & dis).sum() and 50 < (cm & ~dis).sum()
    N = _norm(tissue)
    (drv,) = gt.disease_drivers
    d = _col(N, tissue, drv)
    assert d[cm & dis].mean() > 10 * d[cm & ~dis].mean()
    assert (d[cm & dis] > 0).mean() > 0.8 and (d[cm & ~dis] > 0).mean() < 0.3
    up = np.mean([np.log2((_col(N, tissue, g)[cm & dis].mean() + 1)
                          / (_col(N, tissue, g)[cm & ~dis].mean() + 1))
                  for g in gt.disease["program_up"]])
    down = np.mean([np.log2((_col(N, tissue, g)[cm & dis].mean() + 1)
                            / (_col(N, tissue, g)[cm & ~dis].mean() + 1))
                    for g in gt.disease["program_down"]])
    assert up > 1.5 and down < -0.7


def test_synergy_targets_need_both_tfs(gt, tissue):
    pair = gt.synergy_pairs[0]
    assert gt.symbols(pair["tfs"]) == ["GATA4", "TBX5"]
    good = ~tissue.obs["low_quality"].to_numpy()
    X = tissue.X.tocsc()
    on1 = _col(X, tissue, pair["tfs"][0]) > 0
    on2 = _col(X, tissue, pair["tfs"][1]) > 0
    N = _norm(tissue)
    score = np.asarray(N[:, [tissue.var_names.get_loc(g) for g in pair["targets"]]].sum(1)).ravel()
    med = {k: np.median(score[m & good]) for k, m in
           {"both": on1 & on2, "first": on1 & ~on2, "second": ~on1 & on2,
            "neither": ~on1 & ~on2}.items()}
    assert med["both"] > 5 * max(med["first"], med["second"], med["neither"]), med
    # the same with the latent activities: super-additive, not additive
    A = tissue.obsm["tf_activity"]
    l1, l2 = A[gt.symbols(pair["tfs"])[0]] > 0.3, A[gt.symbols(pair["tfs"])[1]] > 0.3
    s = pd.Series(score)
    both, first, second = (s[(l1 & l2).to_numpy() & good].mean(),
                           s[(l1 & ~l2).to_numpy() & good].mean(),
                           s[(~l1 & l2).to_numpy() & good].mean())
    assert both > 2 * (first + second)


def test_cell_types_express_their_masters(gt, tissue):
    N = _norm(tissue)
    ct = tissue.obs["cell_type"].to_numpy()
    for cell_type, masters in gt.master_regulators.items():
        for tf in masters:
            v = _col(N, tissue, tf)
            by_type = pd.Series(v).groupby(ct).mean()
            assert by_type.idxmax() == cell_type, (cell_type, tf, by_type.to_dict())
            assert (v[ct == cell_type] > 0).mean() > 0.3, (cell_type, tf)  # SOX17: arterial only


# ---------------------------------------------------------------------------------------------
# splits, cache, bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(CourseInputError, match="n_cells"):
        data.simulate_tissue(0)
    with pytest.raises(CourseInputError, match="unknown cell types"):
        data.simulate_tissue(10, proportions={"neuron": 1.0})
    with pytest.raises(CourseInputError, match="unknown split"):
        data.load_tissue("train")


def test_proportions_argument():
    a = data.simulate_tissue(200, seed=1, progress=False,
                             proportions={"cardiomyocyte": 1.0})
    assert set(a.obs["cell_type"].unique()) == {"cardiomyocyte"}


# ---------------------------------------------------------------------------------------------
# real PBMC
# ---------------------------------------------------------------------------------------------


def test_realism_table_compares_datasets(tissue):
    t = data.realism_table({"tissue": tissue, "tissue2": tissue[:100]})
    assert t.index.tolist() == ["tissue", "tissue2"]
    for col in ["library_size_median", "genes_per_cell_median", "zero_fraction",
                "mito_fraction_median", "nb_dispersion_median"]:
        assert col in t.columns
