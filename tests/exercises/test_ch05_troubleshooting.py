"""Tests for the chapter 5 (Troubleshooting) exercise checks: right -> True, wrong -> False,
placeholder -> False, never an exception."""

from __future__ import annotations

import numpy as np
import pytest

from course_helpers import exercises as ex
from course_helpers.attention import estimate_attention_memory
from course_helpers.model import length_sorted_batches


# --------------------------------------------------------------------------------------------
# ch5-ex-1: fixed tokenization
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_case():
    import anndata as ad
    import scipy.sparse as sp

    from course_helpers.vocab import GeneVocab

    genes = [f"ENSG{i:011d}" for i in range(1, 7)]
    symbols = ["GA", "GB", "GC", "GD", "GE", "GF"]
    tokens = {"<pad>": 0, "<mask>": 1, **{g: i + 2 for i, g in enumerate(genes)}}
    medians = {g: m for g, m in zip(genes, [1.0, 2.0, 0.5, 4.0, 3.0, 1.5])}
    vocab = GeneVocab.from_dicts(tokens, medians, dict(zip(symbols, genes)))
    rng = np.random.default_rng(0)
    X = rng.poisson(3.0, size=(8, 6)).astype(np.float32)
    X[X.sum(1) == 0, 0] = 1
    adata = ad.AnnData(sp.csr_matrix(X))
    adata.var_names = genes
    adata.var["ensembl_id"] = genes
    adata.var["gene_symbol"] = symbols
    adata.obs_names = [f"c{i}" for i in range(8)]
    adata.obs["n_counts"] = X.sum(1)
    return adata, vocab


def test_fixed_tokenization(small_case, capsys):
    from course_helpers.tokenize import tokenize

    adata, vocab = small_case
    assert ex.check_fixed_tokenization(None, adata, vocab) is False
    assert "Not answered yet" in capsys.readouterr().out
    right = tokenize(adata, vocab, progress=False)
    assert ex.check_fixed_tokenization(right, adata, vocab) is True
    # same genes, wrong order: e.g. ranked without the medians
    wrong = {"input_ids": [list(reversed(x)) for x in right["input_ids"]]}
    assert ex.check_fixed_tokenization(wrong, adata, vocab) is False
    assert "wrong order" in capsys.readouterr().out
    assert ex.check_fixed_tokenization({"input_ids": right["input_ids"][:3]}, adata, vocab) is False
    assert ex.check_fixed_tokenization("not a dataset", adata, vocab) is False


# --------------------------------------------------------------------------------------------
# ch5-ex-2: attention batch size
# --------------------------------------------------------------------------------------------
REQ = {
    "n_cells": 10_000,
    "max_len": 2048,
    "n_layers": 6,
    "heads": 4,
    "n_genes": 1000,
    "hidden_size": 256,
}


def _best(budget):
    b = 1
    while estimate_attention_memory(batch_size=b + 1, **REQ) <= budget:
        b += 1
    return b


def test_attention_batch_size():
    budget = 2 * 2**30
    best = _best(budget)
    assert estimate_attention_memory(batch_size=best, **REQ) <= budget
    assert ex.check_attention_batch_size(None, budget, **REQ) is False
    assert ex.check_attention_batch_size(best, budget, **REQ) is True
    assert ex.check_attention_batch_size(np.int64(best), budget, **REQ) is True
    assert ex.check_attention_batch_size(best + 1, budget, **REQ) is False
    assert ex.check_attention_batch_size(max(1, best - 1), budget, **REQ) is False
    assert ex.check_attention_batch_size(best + 0.5, budget, **REQ) is False
    assert ex.check_attention_batch_size("many", budget, **REQ) is False


# --------------------------------------------------------------------------------------------
# ch5-ex-3: padding fraction
# --------------------------------------------------------------------------------------------
def test_padding_fraction():
    rng = np.random.default_rng(1)
    lengths = rng.integers(50, 800, size=100)
    bs = 16

    def frac(batches):
        return 1 - sum(lengths[b].sum() for b in batches) / sum(
            lengths[b].max() * len(b) for b in batches
        )

    a = frac([np.arange(i, min(i + bs, 100)) for i in range(0, 100, bs)])
    s = frac(length_sorted_batches(lengths, bs))
    assert s < a
    assert ex.check_padding_fraction(None, lengths, bs) is False
    assert ex.check_padding_fraction((a, s), lengths, bs) is True
    assert ex.check_padding_fraction((s, a), lengths, bs) is False
    assert ex.check_padding_fraction((a, a), lengths, bs) is False
    assert ex.check_padding_fraction(0.3, lengths, bs) is False


# --------------------------------------------------------------------------------------------
# ch5-ex-4: partial correlation
# --------------------------------------------------------------------------------------------
def test_partial_correlation():
    rng = np.random.default_rng(2)
    z = rng.normal(size=200)
    x = 2 * z + rng.normal(size=200)
    y = -3 * z + 0.5 * x + rng.normal(size=200)
    expected = ex.reference_partial_correlation(x, y, z)
    raw = np.corrcoef(x, y)[0, 1]
    assert abs(expected - raw) > 0.1
    assert ex.check_partial_correlation(None, x, y, z) is False
    assert ex.check_partial_correlation(expected, x, y, z) is True
    assert ex.check_partial_correlation(raw, x, y, z) is False
    assert ex.check_partial_correlation(0.0, x, y, z) is False
    assert ex.check_partial_correlation("r", x, y, z) is False


def test_attention_batch_size_accepts_the_old_layers_keyword():
    old = {("layers" if k == "n_layers" else k): v for k, v in REQ.items()}
    best = _best(2 * 2**30)
    with pytest.warns(FutureWarning, match=r"check_attention_batch_size\(layers=\.\.\.\) is now"):
        assert ex.check_attention_batch_size(best, 2 * 2**30, **old) is True
