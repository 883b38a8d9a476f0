"""Tests for course_helpers.tokenize: reference fidelity, V1/V2 rules, validation, save/load."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_helpers._utils import CourseInputError
from course_helpers.tokenize import load, save, tokenize, tokenize_to_disk
from course_helpers.vocab import GeneVocab


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def assert_rankings_equal(got, expected, values, truncated=None):
    """Compare token sequences, tolerating only permutations among exactly tied values.

    ``values[i]`` maps token -> normalised value for cell ``i``. Positions are grouped into runs
    of equal value; within a run any order is accepted. When a cell is truncated the last run
    may hold different members (which tied gene made the cut is arbitrary in the reference).
    """
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        g, e = list(g), list(e)
        assert len(g) == len(e), f"cell {i}: length {len(g)} != {len(e)}"
        vg = [values[i][t] for t in g]
        ve = [values[i][t] for t in e]
        assert vg == ve, f"cell {i}: value sequence differs"
        start = 0
        runs = []
        for j in range(1, len(ve) + 1):
            if j == len(ve) or ve[j] != ve[start]:
                runs.append((start, j))
                start = j
        for k, (a, b) in enumerate(runs):
            last = k == len(runs) - 1
            if last and truncated is not None and truncated[i]:
                continue
            assert sorted(g[a:b]) == sorted(e[a:b]), f"cell {i}: tokens differ at ranks {a}-{b}"


def reference_tokens(X, gene_ids, n_counts, vocab, max_genes, v2=False):
    """Slow, obviously-correct per-cell implementation (ties: input column order)."""
    X = sp.csr_matrix(X)
    out = []
    for i in range(X.shape[0]):
        row = X.getrow(i)
        vals = {}
        for j, c in zip(row.indices, row.data):
            gid = gene_ids[j]
            if c != 0 and gid in vocab.medians:
                vals.setdefault(gid, [0.0, j])
                vals[gid][0] += float(c)
        items = []
        for gid, (c, j) in vals.items():
            v = ((c * (1.0 / n_counts[i])) * 10000.0) * (1.0 / vocab.medians[gid])
            items.append((-v, j, vocab.token_to_id[gid]))
        toks = [t for _, _, t in sorted(items)][:max_genes]
        if v2:
            toks = [vocab.cls_token_id] + toks + [vocab.eos_token_id]
        out.append(toks)
    return out


GENES = [f"ENSG{i:011d}" for i in range(1, 9)]


def small_vocab(v2=False, medians=None):
    tok = {"<pad>": 0, "<mask>": 1}
    if v2:
        tok.update({"<cls>": 2, "<eos>": 3})
    base = len(tok)
    tok.update({g: base + i for i, g in enumerate(GENES)})
    med = medians or {g: 0.5 + 0.25 * i for i, g in enumerate(GENES)}
    names = {f"SYM{i + 1}": g for i, g in enumerate(GENES)}
    return GeneVocab.from_dicts(tok, med, names, name="small-v2" if v2 else "small-v1")


def make_adata(X, genes=GENES, n_counts="sum", obs=None):
    X = sp.csr_matrix(np.asarray(X, dtype=np.float32))
    n = X.shape[0]
    o = pd.DataFrame(index=[f"cell{i}" for i in range(n)])
    o["cell_id"] = o.index
    if isinstance(n_counts, str) and n_counts == "sum":
        o["n_counts"] = np.asarray(X.sum(axis=1)).ravel().astype(np.float64)
    elif n_counts is not None:
        o["n_counts"] = np.asarray(n_counts, dtype=np.float64)
    if obs:
        for k, v in obs.items():
            o[k] = v
    var = pd.DataFrame(index=list(genes))
    var["ensembl_id"] = list(genes)
    return ad.AnnData(X, obs=o, var=var)


def random_counts(n_cells, n_genes, density, seed, high=20):
    rng = np.random.default_rng(seed)
    X = sp.random(
        n_cells,
        n_genes,
        density=density,
        random_state=rng,
        data_rvs=lambda k: rng.integers(1, high, k),
    ).toarray()
    X[X.sum(axis=1) == 0, 0] = 1
    return X


# --------------------------------------------------------------------------------------------
# reference fixture (200 real cells, exact expected tokens)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def v1(v1_dir):
    return GeneVocab.geneformer_v1(v1_dir)


@pytest.fixture(scope="module")
def fixture_data(tokenizer_fixture_dir):
    adata = ad.read_h5ad(tokenizer_fixture_dir / "cells.h5ad")
    exp = pd.read_parquet(tokenizer_fixture_dir / "expected_tokens.parquet")
    return adata, exp


@pytest.fixture(scope="module")
def fixture_values(fixture_data, v1):
    """Per cell: token -> normalised value (float64, as the reference computes it)."""
    adata, _ = fixture_data
    X = adata.X.tocsr()
    ids = adata.var["ensembl_id"].to_numpy()
    nc = adata.obs["n_counts"].to_numpy()
    out = []
    for i in range(X.shape[0]):
        s, e = X.indptr[i], X.indptr[i + 1]
        d = {}
        for j, c in zip(X.indices[s:e], X.data[s:e]):
            g = ids[j]
            if g in v1.medians:
                d[v1.token_to_id[g]] = ((float(c) * (1 / nc[i])) * 10000.0) * (1 / v1.medians[g])
        out.append(d)
    return out


@pytest.mark.parametrize("source", ["memory", "h5ad"])
def test_reference_fixture_exact(source, fixture_data, fixture_values, v1, tokenizer_fixture_dir):
    adata, exp = fixture_data
    src = adata if source == "memory" else tokenizer_fixture_dir / "cells.h5ad"
    ds = tokenize(src, v1, progress=False)
    assert ds.num_rows == 200
    assert ds.column_names == ["input_ids", "length", "cell_id"]
    got = ds["input_ids"]
    assert_rankings_equal(
        got, exp["input_ids"], fixture_values, truncated=[len(v) > 2048 for v in fixture_values]
    )
    # the fixture has no ties, so the match must be exact, cell by cell
    n_exact = sum(list(g) == list(e) for g, e in zip(got, exp["input_ids"]))
    assert n_exact == 200
    assert ds["length"] == exp["length"].tolist()
    assert ds["cell_id"] == exp["cell_id"].tolist()
    assert max(ds["length"]) == 2048 and sum(ds["length"]) == 274_436


def test_reference_fixture_chunking_invariant(fixture_data, v1):
    adata, exp = fixture_data
    a = tokenize(adata, v1, chunk_size=7, progress=False)["input_ids"]
    b = tokenize(adata, v1, chunk_size=200, progress=False)["input_ids"]
    assert a == b
    assert [list(x) for x in a] == [list(x) for x in exp["input_ids"]]


def test_reference_fixture_symbols_and_versions(fixture_data, v1):
    adata, exp = fixture_data
    # symbols as var_names: refused with advice ...
    sym = adata.copy()
    sym.var_names = sym.var["gene_symbol"].astype(str).to_numpy()
    sym.var = sym.var.drop(columns=["ensembl_id"])
    with pytest.raises(CourseInputError) as e:
        tokenize(sym, v1, progress=False)
    msg = str(e.value)
    assert "map_symbols=True" in msg and "Ensembl" in msg and "19400 of your 19400" in msg
    # ... and mapping them through the V1 name dictionary reproduces the reference exactly
    ds = tokenize(sym, v1, map_symbols=True, progress=False)
    assert [list(x) for x in ds["input_ids"]] == [list(x) for x in exp["input_ids"]]
    # versioned Ensembl IDs are stripped, with a warning that says how many
    ver = adata.copy()
    ver.var["ensembl_id"] = [g + ".7" for g in ver.var["ensembl_id"]]
    with pytest.warns(UserWarning, match=r"Removed Ensembl version suffixes from 19400 gene IDs"):
        ds = tokenize(ver, v1, progress=False)
    assert [list(x) for x in ds["input_ids"]] == [list(x) for x in exp["input_ids"]]


def test_fixture_tokenize_to_disk_streaming(tokenizer_fixture_dir, fixture_data, v1, tmp_path):
    _, exp = fixture_data
    out = tmp_path / "tok"
    ds = tokenize_to_disk(
        tokenizer_fixture_dir / "cells.h5ad", out, v1, chunk_size=64, progress=False
    )
    assert [list(x) for x in ds["input_ids"]] == [list(x) for x in exp["input_ids"]]
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no leftover temporary folder
    assert load(out)["cell_id"] == exp["cell_id"].tolist()


# --------------------------------------------------------------------------------------------
# rules on synthetic data
# --------------------------------------------------------------------------------------------


def test_matches_slow_reference_random(tmp_path):
    vocab = small_vocab()
    genes = GENES + ["ENSG00000999999", "ENSG00000888888"]  # two genes outside the vocabulary
    X = random_counts(300, len(genes), 0.6, seed=1)
    adata = make_adata(X, genes=genes, n_counts=X.sum(1) + 5)
    ds = tokenize(adata, vocab, model_input_size=5, chunk_size=37, progress=False)
    exp = reference_tokens(X, genes, X.sum(1) + 5, vocab, 5)
    assert [list(x) for x in ds["input_ids"]] == exp
    assert ds["length"] == [len(t) for t in exp]


def test_ties_and_near_ties_are_deterministic():
    # equal medians -> many exact ties; two medians one ULP apart -> near-ties
    m = {g: 1.0 for g in GENES}
    m[GENES[6]] = np.nextafter(2.0, 3.0)
    m[GENES[7]] = 2.0
    vocab = small_vocab(medians=m)
    X = random_counts(500, len(GENES), 0.7, seed=2, high=4)
    X[:, 6] = X[:, 7] = 3  # value of gene 7 is 1 ULP-ish above gene 6's in every cell
    adata = make_adata(X)
    exp = reference_tokens(X, GENES, X.sum(1), vocab, 6)
    results = [
        tokenize(adata, vocab, model_input_size=6, chunk_size=cs, progress=False)["input_ids"]
        for cs in (1, 13, 1000)
    ]
    for r in results:
        assert [list(x) for x in r] == exp
    t6, t7 = vocab.token_to_id[GENES[6]], vocab.token_to_id[GENES[7]]
    for x in exp:
        if t6 in x and t7 in x:
            assert x.index(t7) < x.index(t6)  # higher value first, although they nearly tie


def test_v2_wrapping_and_truncation():
    vocab = small_vocab(v2=True)
    X = random_counts(40, len(GENES), 0.8, seed=3)
    adata = make_adata(X)
    ds = tokenize(adata, vocab, model_version="V2", model_input_size=6, progress=False)
    exp = reference_tokens(X, GENES, X.sum(1), vocab, 4, v2=True)
    got = [list(x) for x in ds["input_ids"]]
    assert got == exp
    assert all(x[0] == 2 and x[-1] == 3 and len(x) <= 6 for x in got)
    assert ds["length"] == [len(x) for x in got]
    # default V2 input size keeps every gene (4,094 allowed)
    full = tokenize(adata, vocab, model_version="V2", progress=False)
    assert [list(x) for x in full["input_ids"]] == reference_tokens(
        X, GENES, X.sum(1), vocab, 4094, v2=True
    )


def test_v1_has_no_special_tokens_and_truncates():
    vocab = small_vocab()
    X = random_counts(30, len(GENES), 0.9, seed=4)
    ds = tokenize(make_adata(X), vocab, model_input_size=3, progress=False)
    assert all(len(x) <= 3 and 0 not in x and 1 not in x for x in ds["input_ids"])
    assert [list(x) for x in ds["input_ids"]] == reference_tokens(X, GENES, X.sum(1), vocab, 3)


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_duplicate_gene_ids_are_summed():
    vocab = small_vocab()
    X = random_counts(50, len(GENES), 0.7, seed=5)
    split = np.concatenate([X, np.zeros((50, 1))], axis=1)
    split[:, 8] = np.floor(X[:, 2] / 2)
    split[:, 2] = X[:, 2] - split[:, 8]
    genes = GENES + [GENES[2]]
    with pytest.warns(UserWarning, match=r"1 gene ID\(s\) occur in more than one column.*summed"):
        ds = tokenize(make_adata(split, genes=genes), vocab, progress=False)
    ref = tokenize(make_adata(X), vocab, progress=False)
    assert ds["input_ids"] == ref["input_ids"]


def test_filter_pass_attrs_and_dense_input():
    vocab = small_vocab()
    X = random_counts(10, len(GENES), 0.8, seed=6)
    fp = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    adata = make_adata(
        X,
        obs={
            "filter_pass": fp,
            "cell_type": pd.Categorical(list("ababababab")),
            "score": np.arange(10) / 2,
        },
    )
    adata.X = adata.X.toarray()  # dense X works too
    ds = tokenize(
        adata,
        vocab,
        cell_attrs={"cell_id": "cell_id", "cell_type": "ct", "score": "score"},
        progress=False,
    )
    keep = np.array(fp) == 1
    assert ds.num_rows == 7
    assert ds["cell_id"] == [f"cell{i}" for i in np.flatnonzero(keep)]
    assert ds["ct"] == [c for c, k in zip("ababababab", keep) if k]
    assert ds["score"] == list((np.arange(10) / 2)[keep])
    assert [list(x) for x in ds["input_ids"]] == reference_tokens(
        X[keep], GENES, X[keep].sum(1), vocab, 2048
    )


def test_cell_id_falls_back_to_obs_names():
    vocab = small_vocab()
    adata = make_adata(random_counts(3, len(GENES), 0.9, seed=7))
    del adata.obs["cell_id"]
    assert tokenize(adata, vocab, progress=False)["cell_id"] == ["cell0", "cell1", "cell2"]


def test_save_load_round_trip(tmp_path):
    vocab = small_vocab()
    adata = make_adata(random_counts(20, len(GENES), 0.8, seed=8))
    ds = tokenize(adata, vocab, progress=False)
    save(ds, tmp_path / "ds")
    back = load(tmp_path / "ds")
    assert back["input_ids"] == ds["input_ids"] and back["length"] == ds["length"]
    assert back["cell_id"] == ds["cell_id"]
    with pytest.raises(CourseInputError, match="not empty"):
        save(ds, tmp_path / "ds")
    save(ds, tmp_path / "ds", overwrite=True)
    with pytest.raises(CourseInputError, match="No tokenised dataset"):
        load(tmp_path / "nothing")


def test_tokenize_to_disk_from_h5ad_matches_memory(tmp_path):
    vocab = small_vocab()
    X = random_counts(100, len(GENES), 0.6, seed=9)
    adata = make_adata(X)
    adata.write_h5ad(tmp_path / "in.h5ad")
    ds = tokenize_to_disk(
        tmp_path / "in.h5ad", tmp_path / "out", vocab, chunk_size=16, progress=False
    )
    assert ds["input_ids"] == tokenize(adata, vocab, progress=False)["input_ids"]
    ds2 = tokenize_to_disk(adata, tmp_path / "out2", vocab, progress=False)
    assert ds2["input_ids"] == ds["input_ids"]


# --------------------------------------------------------------------------------------------
# bad input: a clear error, and nothing written
# --------------------------------------------------------------------------------------------
def _fails(adata, vocab, tmp_path, match, **kw):
    out = tmp_path / "out"
    before = set(tmp_path.iterdir())
    with pytest.raises(CourseInputError, match=match) as e:
        tokenize_to_disk(adata, out, vocab, progress=False, **kw)
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before  # no temporary folder left behind either
    return str(e.value)


def test_error_log_transformed(tmp_path):
    vocab = small_vocab()
    adata = make_adata(random_counts(20, len(GENES), 0.8, seed=10))
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X.multiply(1e4 / adata.X.sum(axis=1)).tocsr()
    adata.X.data = np.log1p(adata.X.data)
    adata.uns["log1p"] = {"base": None}
    msg = _fails(adata, vocab, tmp_path, "not whole numbers")
    assert "log-transformed or normalised" in msg and "layer='counts'" in msg and "log1p" in msg
    # the hint works
    ok = tokenize(adata, vocab, layer="counts", progress=False)
    assert ok.num_rows == 20


@pytest.mark.parametrize("bad,match", [(np.nan, "NaN"), (np.inf, "infinite"), (-3.0, "negative")])
def test_error_nan_inf_negative(tmp_path, bad, match):
    vocab = small_vocab()
    X = random_counts(20, len(GENES), 0.8, seed=11)
    X[17, 3] = bad
    adata = make_adata(X, n_counts=np.full(20, 1000.0))
    _fails(adata, vocab, tmp_path, match, chunk_size=4)  # the bad value is in a late chunk


def test_error_bad_value_in_last_chunk_of_h5ad_writes_nothing(tmp_path):
    vocab = small_vocab()
    X = random_counts(50, len(GENES), 0.8, seed=12)
    X[49, 0] = 0.5
    make_adata(X).write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out"
    with pytest.raises(CourseInputError, match="not whole numbers"):
        tokenize_to_disk(tmp_path / "in.h5ad", out, vocab, chunk_size=8, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


def test_error_missing_n_counts(tmp_path):
    vocab = small_vocab()
    adata = make_adata(random_counts(5, len(GENES), 0.8, seed=13), n_counts=None)
    msg = _fails(adata, vocab, tmp_path, r"obs\['n_counts'\] is missing")
    assert 'adata.obs["n_counts"] = adata.X.sum(axis=1).A1' in msg


def test_error_n_counts_too_small(tmp_path):
    vocab = small_vocab()
    X = random_counts(5, len(GENES), 0.8, seed=14)
    nc = X.sum(1)
    nc[3] -= 1
    msg = _fails(make_adata(X, n_counts=nc), vocab, tmp_path, "smaller than the sum")
    assert "'cell3'" in msg and "adata.X.sum(axis=1).A1" in msg


def test_error_zero_count_cells(tmp_path):
    vocab = small_vocab()
    X = random_counts(6, len(GENES), 0.8, seed=15)
    X[2] = 0
    msg = _fails(make_adata(X, n_counts=np.full(6, 100.0)), vocab, tmp_path, "have no counts")
    assert "'cell2'" in msg and "filter_pass" in msg
    _fails(make_adata(X), vocab, tmp_path, r"no counts.*n_counts'\] <= 0")
    # marking the cell with filter_pass = 0 is the fix
    ok = tokenize(make_adata(X, obs={"filter_pass": [1, 1, 0, 1, 1, 1]}), vocab, progress=False)
    assert ok.num_rows == 5


def test_error_empty_matrix(tmp_path):
    vocab = small_vocab()
    _fails(make_adata(np.zeros((0, len(GENES)))), vocab, tmp_path, "empty")
    _fails(make_adata(np.ones((3, 0)), genes=[]), vocab, tmp_path, "empty")


def test_error_symbols_instead_of_ids(tmp_path):
    vocab = small_vocab()
    X = random_counts(5, len(GENES), 0.8, seed=16)
    adata = make_adata(X, genes=[f"SYM{i + 1}" for i in range(8)])
    msg = _fails(adata, vocab, tmp_path, "look like gene symbols")
    assert "map_symbols=True" in msg and "8 of your 8" in msg
    # a var column with Ensembl IDs is pointed out
    adata.var["gene_ids"] = GENES
    msg = _fails(adata, vocab, tmp_path, "look like gene symbols")
    assert "gene_id_col='gene_ids'" in msg
    ds = tokenize(adata, vocab, map_symbols=True, progress=False)
    assert ds["input_ids"] == tokenize(make_adata(X), vocab, progress=False)["input_ids"]


def test_error_mouse_ids(tmp_path):
    vocab = small_vocab()
    genes = [f"ENSMUSG{i:011d}" for i in range(1, 9)]
    msg = _fails(
        make_adata(random_counts(5, 8, 0.8, seed=17), genes=genes), vocab, tmp_path, "mouse"
    )
    assert "human" in msg and "ortholog" in msg


def test_error_no_gene_in_vocab_and_low_coverage_warning(tmp_path):
    vocab = small_vocab()
    other = [f"ENSG{i:011d}" for i in range(100, 108)]
    _fails(
        make_adata(random_counts(5, 8, 0.8, seed=18), genes=other),
        vocab,
        tmp_path,
        "None of the 8 genes",
    )
    genes = GENES[:3] + other[:5]
    with pytest.warns(
        UserWarning, match=r"Only 3 of 8 genes \(37\.5 %\) are in the small-v1 vocabulary"
    ):
        tokenize(make_adata(random_counts(5, 8, 0.9, seed=18), genes=genes), vocab, progress=False)


def test_no_warning_for_clean_input():
    vocab = small_vocab()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(make_adata(random_counts(5, 8, 0.9, seed=19)), vocab, progress=False)


def test_error_version_mismatch(tmp_path):
    adata = make_adata(random_counts(5, 8, 0.8, seed=20))
    msg = _fails(adata, small_vocab(), tmp_path, "mismatch", model_version="V2")
    assert "most common" in msg and "V1 dictionary" in msg
    msg = _fails(adata, small_vocab(v2=True), tmp_path, "mismatch", model_version="V1")
    assert "V2 dictionary" in msg


def test_error_missing_attribute_and_bad_args(tmp_path):
    vocab = small_vocab()
    adata = make_adata(random_counts(5, 8, 0.8, seed=21))
    msg = _fails(
        adata, vocab, tmp_path, "'cell_type' is not a column", cell_attrs=["cell_id", "cell_type"]
    )
    assert "cell_id" in msg  # lists the available columns
    _fails(adata, vocab, tmp_path, "no column 'gene_ids'", gene_id_col="gene_ids")
    _fails(adata, vocab, tmp_path, "model_version must be", model_version="V3")
    _fails(adata, vocab, tmp_path, "chunk_size", chunk_size=0)
    with pytest.raises(CourseInputError, match="not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        tokenize_to_disk(adata, tmp_path / "full", vocab, progress=False)
    assert (tmp_path / "full" / "x").read_text() == "x"
