"""Tests for the chapter 7 check functions (small synthetic data, no model needed)."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_helpers.exercises import ch07_case_study as ex
from course_helpers.perturb import perturbation_stats


# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shifts():
    """Per-cell deletion shifts: G0-G2 move cells to the goal, G3 away, the rest are noise."""
    rng = np.random.default_rng(0)
    rows, null_rows = [], []
    genes = [f"G{i}" for i in range(30)]
    effect = {"G0": 3.0, "G1": 2.5, "G2": 2.0, "G3": -3.0, "G4": 0.6}
    for ci in range(12):
        for ti, g in enumerate(genes):
            for state in ("healthy", "diseased"):
                sign = 1 if state == "healthy" else -1
                val = sign * effect.get(g, 0.0) + rng.normal()
                rows.append((f"c{ci}", ti, ti + 2, g, state, val))
        for k in range(20):
            for state in ("healthy", "diseased"):
                null_rows.append((f"c{ci}", k, 100 + k, f"N{k}", state, rng.normal()))
    cols = ["cell_id", "rank_index", "perturbed_token", "perturbed_gene", "state", "shift"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(null_rows, columns=cols)


def test_significant_genes(shifts, capsys):
    res, null = shifts
    expected = ex.reference_significant_genes(res, null, "healthy")
    assert {"G0", "G1", "G2"} <= set(expected) and "G3" not in expected
    assert ex.check_significant_genes(expected, res, null, "healthy")
    assert not ex.check_significant_genes(None, res, null, "healthy")
    assert "Not answered yet" in capsys.readouterr().out
    assert not ex.check_significant_genes(["G0"], res, null, "healthy")
    # genes moving away (G3) included -> wrong, with a hint about the direction
    stats = perturbation_stats(res, null=null)
    s = stats[stats.state == "healthy"]
    both = sorted(s.loc[s.fdr < 0.05, "perturbed_gene"])
    assert "G3" in both
    capsys.readouterr()
    assert not ex.check_significant_genes(both, res, null, "healthy")
    assert "away" in capsys.readouterr().out
    assert not ex.check_significant_genes(42, res, null, "healthy")


# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_adata():
    rng = np.random.default_rng(1)
    n, g = 80, 25
    X = rng.poisson(3, size=(n, g)).astype(np.float32)
    state = np.array(["healthy"] * 40 + ["diseased"] * 40)
    X[state == "diseased", 5] += rng.poisson(30, size=40)   # strongest up
    X[state == "diseased", 7] += rng.poisson(8, size=40)    # second
    a = ad.AnnData(sp.csr_matrix(X))
    a.var_names = [f"ENSG{i:011d}" for i in range(g)]
    a.var["gene_symbol"] = [f"S{i}" for i in range(g)]
    a.obs["state"] = state
    return a


def test_de_rank(small_adata, capsys):
    ranking = ex.reference_de_ranking(small_adata)
    assert ranking[:2] == ["S5", "S7"]
    assert ex.check_de_rank(2, "S7", small_adata)
    assert not ex.check_de_rank(None, "S7", small_adata)
    assert not ex.check_de_rank(1, "S7", small_adata)
    capsys.readouterr()
    assert not ex.check_de_rank(0, "S5", small_adata)
    assert "off by one" in capsys.readouterr().out
    assert not ex.check_de_rank("two", "S7", small_adata)
    assert not ex.check_de_rank(3, "NOT_A_GENE", small_adata)


# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(2)
    rows = []
    for ci in range(6):
        for a, b in (("GATA4", "TBX5"), ("X1", "X2")):
            ca, cb = 1 - rng.uniform(0, 0.01, size=2)
            cab = ca + cb - 1 - (0.02 if a == "GATA4" else 0.0) + rng.normal(0, 1e-3)
            rows.append((f"c{ci}", a, b, ca, cb, cab))
    return pd.DataFrame(rows, columns=["cell_id", "gene_a", "gene_b", "cos_sim_a", "cos_sim_b",
                                       "cos_sim_ab"])


def test_synergy(pairs, capsys):
    exp = ex.reference_synergy(pairs)
    assert exp.idxmax() == "GATA4+TBX5"
    assert ex.check_synergy(exp, pairs)
    assert ex.check_synergy(exp.to_dict(), pairs)
    assert not ex.check_synergy(None, pairs)
    capsys.readouterr()
    assert not ex.check_synergy(-exp, pairs)
    assert "sign" in capsys.readouterr().out
    wrong = (pairs.cos_sim_ab - pairs.cos_sim_a - pairs.cos_sim_b).groupby(
        (pairs.gene_a + "+" + pairs.gene_b).to_numpy()).mean()
    assert not ex.check_synergy(wrong, pairs)
    assert not ex.check_synergy(exp.iloc[:1], pairs)
    assert not ex.check_synergy([1, 2], pairs)


def test_synergy_with_states():
    df = pd.DataFrame({"cell_id": ["a", "b"], "gene_a": ["A", "A"], "gene_b": ["B", "B"],
                       "state": ["healthy", "healthy"], "shift_a": [0.1, 0.2],
                       "shift_b": [0.1, 0.0], "shift_ab": [0.5, 0.2]})
    exp = ex.reference_synergy(df)
    assert exp["A+B"] == pytest.approx(0.15)
    assert ex.check_synergy({"A+B": 0.15}, df)
    assert not ex.check_synergy({"A+B": 0.3}, df)


def test_reexported():
    import course_helpers as ch

    for name in ("check_significant_genes", "check_de_rank", "check_synergy"):
        assert callable(getattr(ch.exercises, name))
