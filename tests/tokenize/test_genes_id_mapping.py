"""Gene ID mapping as the reference tokenizer does it (``collapse_gene_ids=True``).

Input Ensembl IDs go through the version's mapping dictionary (input ID -> vocabulary ID); IDs it
does not hold are dropped, IDs that land on the same gene have their counts summed. Tested with a
small synthetic mapping: several input IDs onto one gene, an ID that maps outside the vocabulary,
an ID the mapping does not know, lower-case input.
"""
from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_helpers._utils import CourseInputError
from course_helpers.tokenize import load, tokenization_info, tokenize, tokenize_to_disk
from course_helpers.vocab import GeneVocab

A, B, C, D = (f"ENSG{i:011d}" for i in (101, 102, 103, 104))
OLD_A1, OLD_A2 = "ENSG00000900001", "ENSG00000900002"   # retired IDs, now part of gene A
OUTSIDE = "ENSG00000900009"                              # maps to a gene without a token
UNKNOWN = "ENSG00000900010"                              # not in the mapping at all
MAPPING = {A: A, B: B, C: C, D: D, OLD_A1: A, OLD_A2: A, OUTSIDE: "ENSG00000999999"}


def _vocab(mapping=MAPPING):
    tok = {"<pad>": 0, "<mask>": 1, A: 2, B: 3, C: 4, D: 5}
    med = {A: 1.0, B: 2.0, C: 0.5, D: 4.0}
    return GeneVocab.from_dicts(tok, med, {"GA": A, "GB": B}, name="tiny",
                                ensembl_mapping=mapping)


def _adata():
    # columns: A, OLD_A1, OLD_A2 (all gene A), B, OUTSIDE, UNKNOWN, c (lower case), D
    ids = [A, OLD_A1, OLD_A2, B, OUTSIDE, UNKNOWN, C.lower(), D]
    X = np.array([
        [1, 2, 3, 5, 9, 9, 1, 1],
        [0, 0, 1, 2, 9, 9, 8, 3],
        [4, 0, 0, 1, 0, 0, 0, 0],
    ], dtype=np.float32)
    obs = pd.DataFrame({"n_counts": X.sum(1) + 10}, index=["c0", "c1", "c2"])
    return ad.AnnData(sp.csr_matrix(X), obs=obs,
                      var=pd.DataFrame({"ensembl_id": ids}, index=[f"g{i}" for i in range(8)]))


def _expected(adata, vocab):
    """By hand: sum the columns that map to each vocabulary gene, then rank-value encode."""
    X = adata.X.toarray().astype(np.float64)
    n = adata.obs["n_counts"].to_numpy()
    target = [MAPPING.get(g.upper()) for g in adata.var["ensembl_id"]]
    out = []
    for i in range(X.shape[0]):
        summed: dict[str, float] = {}
        for j, t in enumerate(target):
            if t in vocab.medians and X[i, j] > 0:
                summed[t] = summed.get(t, 0.0) + X[i, j]
        vals = {t: c / n[i] * 10_000 / vocab.medians[t] for t, c in summed.items()}
        out.append([vocab.token_to_id[t] for t in sorted(vals, key=lambda t: -vals[t])])
    return out


def test_mapping_sums_ids_that_land_on_the_same_gene():
    vocab, adata = _vocab(), _adata()
    assert vocab.ensembl_mapping == {k: v for k, v in MAPPING.items() if v != "ENSG00000999999"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mapping is the normal case: no warning
        ds = tokenize(adata, vocab, progress=False)
    got = [list(x) for x in ds["input_ids"]]
    assert got == _expected(adata, vocab)
    # cell 0: A = 1+2+3 = 6 counts / median 1 -> first; B = 5/2; C = 1/0.5; D = 1/4
    assert got[0] == [2, 3, 4, 5]
    info = tokenization_info(ds)
    assert info["gene_id_mapping"] == "tiny Ensembl ID mapping dictionary"
    assert info["n_input_genes"] == 8 and info["n_input_genes_used"] == 6
    assert info["n_ids_mapped_to_another_id"] == 3  # OLD_A1, OLD_A2 and the lower-case C
    assert info["n_ids_summed_into_another_column"] == 2


def test_without_mapping_the_ids_are_used_as_they_are():
    vocab, adata = _vocab(), _adata()
    with pytest.warns(UserWarning, match="Only 3 of 8 genes"):
        ds = tokenize(adata, vocab, progress=False, gene_mapping=None)
    # only A, B and D are vocabulary IDs as written (c is lower case): no summing
    assert list(ds[0]["input_ids"]) == [3, 2, 5]  # B 5/2=2.5 > A 1/1 > D 1/4
    assert list(ds[2]["input_ids"]) == [2, 3]
    assert tokenization_info(ds)["gene_id_mapping"] is None
    # a vocabulary without a mapping dictionary: "auto" means no mapping
    plain = GeneVocab.from_dicts(vocab.token_to_id, vocab.medians, name="plain")
    assert plain.ensembl_mapping is None
    with pytest.warns(UserWarning, match="Only 3 of 8 genes"):
        ds2 = tokenize(adata, plain, progress=False)
    assert ds2["input_ids"] == ds["input_ids"]
    with pytest.raises(CourseInputError, match="has no Ensembl ID mapping dictionary"):
        tokenize(adata, plain, progress=False, gene_mapping=True)


def test_mapping_given_explicitly_and_saved_with_the_dataset(tmp_path):
    import pickle

    plain = GeneVocab.from_dicts(_vocab().token_to_id, _vocab().medians, name="plain")
    p = tmp_path / "ensembl_mapping_dict_gc30M.pkl"
    p.write_bytes(pickle.dumps(MAPPING))
    adata = _adata()
    ds = tokenize(adata, plain, progress=False, gene_mapping=p)
    assert [list(x) for x in ds["input_ids"]] == _expected(adata, plain)
    assert tokenization_info(ds)["gene_id_mapping"] == "ensembl_mapping_dict_gc30M.pkl"
    ds3 = tokenize(adata, plain, progress=False, gene_mapping=dict(MAPPING))
    assert ds3["input_ids"] == ds["input_ids"]
    # what was used travels with the saved dataset, in memory and streamed from a file
    saved = tokenize_to_disk(adata, tmp_path / "mem", plain, progress=False, gene_mapping=p)
    assert tokenization_info(load(tmp_path / "mem"))["gene_id_mapping"] == p.name
    adata.write_h5ad(tmp_path / "x.h5ad")
    streamed = tokenize_to_disk(tmp_path / "x.h5ad", tmp_path / "file", plain, progress=False,
                                gene_mapping=p)
    assert streamed["input_ids"] == saved["input_ids"] == ds["input_ids"]
    assert tokenization_info(streamed)["gene_id_mapping"] == p.name
    with pytest.raises(CourseInputError, match="gene_mapping must be"):
        tokenize(adata, plain, progress=False, gene_mapping=42)


def test_vocab_from_folder_picks_up_the_mapping_dictionary(tmp_path):
    import pickle

    v = _vocab()
    for name, d in {"token_dictionary_gc104M.pkl": {"<cls>": 6, "<eos>": 7, **v.token_to_id},
                    "gene_median_dictionary_gc104M.pkl": v.medians,
                    "ensembl_mapping_dict_gc104M.pkl": MAPPING}.items():
        (tmp_path / name).write_bytes(pickle.dumps(d))
    v2 = GeneVocab.geneformer_v2(tmp_path)
    assert v2.version == "V2" and v2.ensembl_mapping[OLD_A2] == A
    ds = tokenize(_adata(), v2, model_version="V2", progress=False)
    assert list(ds[0]["input_ids"]) == [6, 2, 3, 4, 5, 7]
    assert tokenization_info(ds)["model_version"] == "V2"


def test_tokenize_accepts_a_v2_dictionary_folder(tmp_path):
    import pickle

    v = _vocab()
    for name, d in {"token_dictionary_gc95M.pkl": {"<cls>": 6, "<eos>": 7, **v.token_to_id},
                    "gene_median_dictionary_gc95M.pkl": v.medians}.items():
        (tmp_path / name).write_bytes(pickle.dumps(d))
    with pytest.warns(UserWarning, match="Only 3 of 8 genes"):
        ds = tokenize(_adata(), tmp_path, model_version="V2", progress=False)
    assert tokenization_info(ds)["vocab"] == "geneformer-v2"
    assert tokenization_info(ds)["gene_id_mapping"] is None  # no mapping dictionary there
    with pytest.raises(CourseInputError, match="No V1 dictionaries"):
        tokenize(_adata(), tmp_path / "..", progress=False)
