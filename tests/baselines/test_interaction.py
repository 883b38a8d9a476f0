"""Tests for course_helpers.baselines.pair_interaction (2 x 2 interaction of two regulators).

Synthetic cells: regulators A and B are each detected in about half of the cells, independently.
``AND`` is expressed only when both are (an AND gate on counts); ``MULT`` has a rate of
5 x 4**a x 4**b -- strongly synergistic on counts, additive on a log scale; ``BG*`` ignore both.
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_helpers import baselines as B
from course_helpers._utils import CourseInputError


def make_cells(n=800, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.5
    b = rng.random(n) < 0.5
    # library of 2,000 counts of background genes, so normalisation barely moves the targets
    counts = {
        "A": np.where(a, rng.poisson(20, n) + 1, 0),
        "B": np.where(b, rng.poisson(20, n) + 1, 0),
        "AND": rng.poisson(np.where(a & b, 60.0, 1.0)),
        "MULT": rng.poisson(5.0 * 4.0 ** a * 4.0 ** b),
    }
    for k in range(20):
        counts[f"BG{k}"] = rng.poisson(100, n)
    symbols = list(counts)
    X = np.column_stack([counts[s] for s in symbols]).astype(np.float32)
    var = pd.DataFrame({"gene_symbol": symbols},
                       index=[f"ENSG{93000000000 + i:011d}" for i in range(len(symbols))])
    return ad.AnnData(sp.csr_matrix(X), var=var), a, b


@pytest.fixture(scope="module")
def cells():
    return make_cells()


def test_and_gate_found_on_counts(cells):
    adata, a, b = cells
    t = B.pair_interaction(adata, "A", "B")
    assert list(t.columns) == ["gene", "gene_symbol", "both", "a_only", "b_only", "neither",
                               "interaction", "relative", "z"]
    assert t.attrs["scale"] == "counts"
    sizes = t.attrs["n_cells"]
    assert sizes == {"both": int((a & b).sum()), "a_only": int((a & ~b).sum()),
                     "b_only": int((~a & b).sum()), "neither": int((~a & ~b).sum())}
    assert sum(sizes.values()) == adata.n_obs
    # the two regulators themselves are not reported; everything else is
    assert set(t["gene_symbol"]) == set(adata.var["gene_symbol"]) - {"A", "B"}
    assert t["gene_symbol"].iloc[0] == "AND" and t["z"].iloc[0] > 20
    # background genes: only the small compositional dip (AND's counts take a share of the
    # library in "both" cells), far below the AND gate
    bg = t[t["gene_symbol"].str.startswith("BG")]
    and_row = t.iloc[0]
    assert (bg["z"].abs() < and_row["z"] / 4).all()
    assert (bg["interaction"].abs() < 0.1 * bg["neither"]).all()
    assert and_row["interaction"] > 10 * and_row["neither"]
    # group means are the normalised counts' means
    X = adata.X.toarray().astype(np.float64)
    y = X[:, 2] / X.sum(1) * 1e4
    row = t.set_index("gene_symbol").loc["AND"]
    assert row["both"] == pytest.approx(y[a & b].mean(), rel=1e-9)
    assert row["neither"] == pytest.approx(y[~a & ~b].mean(), rel=1e-9)
    assert row["interaction"] == pytest.approx(
        y[a & b].mean() - y[a & ~b].mean() - y[~a & b].mean() + y[~a & ~b].mean(), rel=1e-9)


def test_multiplicative_target_is_additive_on_log_scale(cells):
    adata, _, _ = cells
    lin = B.pair_interaction(adata, "A", "B", ["MULT"], scale="counts").iloc[0]
    log = B.pair_interaction(adata, "A", "B", ["MULT"], scale="log").iloc[0]
    assert lin["relative"] > 1.0 and lin["z"] > 10      # 80 - 20 - 20 + 5 vs 15 + 15
    assert abs(log["relative"]) < 0.15                  # log(ab) = log a + log b
    assert log["both"] == pytest.approx(np.log1p(80 * 1e4 / 2000), abs=0.3)


def test_genes_by_id_and_order_by_z(cells):
    adata, _, _ = cells
    ids = adata.var_names[[3, 2]].tolist()                  # MULT, AND by Ensembl ID
    t = B.pair_interaction(adata, adata.var_names[0], "B", ids)
    assert list(t["gene_symbol"]) == ["AND", "MULT"]       # sorted by z
    assert t["z"].is_monotonic_decreasing


def test_bad_inputs(cells):
    adata, _, _ = cells
    with pytest.raises(CourseInputError, match=r"Regulator\(s\) \['NOPE'\] not found"):
        B.pair_interaction(adata, "A", "NOPE")
    with pytest.raises(CourseInputError, match="same gene"):
        B.pair_interaction(adata, "A", "a")
    with pytest.raises(CourseInputError, match="gene\\(s\\) not found, e.g. \\['XYZ'\\]"):
        B.pair_interaction(adata, "A", "B", ["AND", "XYZ"])
    with pytest.raises(CourseInputError, match="scale must be 'counts' or 'log'"):
        B.pair_interaction(adata, "A", "B", scale="rank")
    with pytest.raises(CourseInputError, match="min_cells must be an integer >= 2"):
        B.pair_interaction(adata, "A", "B", min_cells=1)
    # a gene detected in every cell leaves two groups empty
    with pytest.raises(CourseInputError, match=r"Too few cells in a group .*'a_only': 0"):
        B.pair_interaction(adata, "A", "BG0")  # BG0 is detected in every cell
    logged = adata.copy()
    logged.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    with pytest.raises(CourseInputError, match="does not look like raw counts"):
        B.pair_interaction(logged, "A", "B")
