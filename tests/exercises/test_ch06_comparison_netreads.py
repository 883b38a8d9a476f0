"""Tests for the chapter 6 checks of the gene-embedding / enrichment part (synthetic inputs)."""
from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import fisher_exact, hypergeom

from course_helpers import exercises
from course_helpers.exercises import ch06_comparison as ex


def _ora_right(module, gene_set, universe):
    u = set(universe)
    m, s = set(module) & u, set(gene_set) & u
    return hypergeom.sf(len(m & s) - 1, len(u), len(s), len(m))


def _ora_off_by_one(module, gene_set, universe):
    u = set(universe)
    m, s = set(module) & u, set(gene_set) & u
    return hypergeom.sf(len(m & s), len(u), len(s), len(m))


def _ora_two_sided(module, gene_set, universe):
    N, K, n = len(universe), len(gene_set), len(module)
    k = len(set(module) & set(gene_set))
    return fisher_exact([[k, n - k], [K - k, N - K - n + k]])[1]


def test_reference_ora_pvalue_is_hypergeometric():
    u = [f"g{i}" for i in range(40)]
    assert ex.reference_ora_pvalue(["g0", "g1", "g2", "g5"], ["g0", "g1", "g2", "g3"], u) == \
        pytest.approx(hypergeom.sf(2, 40, 4, 4), rel=1e-6)


def test_check_ora_pvalue(capsys):
    assert exercises.check_ora_pvalue(_ora_right) is True
    assert "Correct" in capsys.readouterr().out
    assert exercises.check_ora_pvalue(None) is False
    assert "Not answered" in capsys.readouterr().out
    assert exercises.check_ora_pvalue(_ora_off_by_one) is False
    assert "off by one" in capsys.readouterr().out
    assert exercises.check_ora_pvalue(_ora_two_sided) is False
    assert "two-sided" in capsys.readouterr().out
    assert exercises.check_ora_pvalue(lambda m, s, u: 0.5) is False
    assert "expected" in capsys.readouterr().out
    assert exercises.check_ora_pvalue(lambda m, s, u: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert exercises.check_ora_pvalue(42) is False


@pytest.fixture
def table():
    return pd.DataFrame({
        "gene_set": ["program:a", "regulon:X", "decoy1:program:a", "decoy2:program:a",
                     "decoy1:regulon:X", "decoy2:regulon:X"],
        "p_value": [1e-12, 0.001, 0.03, 0.2, 0.004, 0.9],
        "fdr": [6e-12, 0.003, 0.045, 0.24, 0.008, 0.9],
    })


def test_check_decoy_hits(table, capsys):
    assert ex.reference_decoy_hits(table) == (2, 2)
    assert ex.reference_decoy_hits(table.assign(fdr=table["fdr"] * 2)) == (2, 1)
    assert exercises.check_decoy_hits((2, 2), table) is True
    assert "2 of 4 decoy" in capsys.readouterr().out
    t2 = table.assign(fdr=table["fdr"] * 2)
    assert exercises.check_decoy_hits((1, 2), t2) is False
    assert "swapped" in capsys.readouterr().out
    assert exercises.check_decoy_hits((4, 1), t2) is False
    assert "only the decoys" in capsys.readouterr().out
    assert exercises.check_decoy_hits((2, 2), t2) is False
    assert "FDR" in capsys.readouterr().out
    assert exercises.check_decoy_hits(None, table) is False
    assert exercises.check_decoy_hits("two", table) is False
    assert exercises.check_decoy_hits((2, 2), pd.DataFrame({"x": [1]})) is False
