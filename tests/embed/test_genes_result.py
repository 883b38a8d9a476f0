"""embed_genes returns a GeneEmbeddings: side data as attributes, never in DataFrame.attrs.

Regression: a Series in ``attrs`` made ``.loc[row].nlargest`` and ``pd.concat`` raise
"The truth value of a Series is ambiguous" (pandas compares attrs with ``==``).
"""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import course_helpers as ch
from course_helpers.embed import GeneEmbeddings, embed_genes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GENES = ["GATA4", "TBX5", "NPPA", "MYH6", "TNNT2"]


@pytest.fixture(scope="module")
def setup():
    model = ch.model.load_model("teaching")
    ds = ch.tokenize.tokenize(ch.data.load_tissue("chapter")[:40], model.gene_vocab,
                              cell_attrs=["cell_id", "cell_type"], progress=False)
    return model, ds


@pytest.fixture(scope="module")
def emb(setup):
    model, ds = setup
    return embed_genes(model, ds, genes=GENES, progress=False)


def test_result_type_and_attributes(setup, emb):
    model, ds = setup
    vocab = model.gene_vocab
    assert isinstance(emb, GeneEmbeddings) and isinstance(emb, pd.DataFrame)
    assert emb.attrs == {}
    assert list(emb.index) == GENES and emb.index.name == "gene"
    # the values the attrs used to hold: cells each gene occurs in, its Ensembl ID, the layer
    tokens = vocab.tokens(GENES)
    expected = [sum(int(t) in set(ids) for ids in ds["input_ids"]) for t in tokens]
    pd.testing.assert_series_equal(
        emb.n_cells, pd.Series(expected, index=emb.index, name="n_cells", dtype=np.int64))
    pd.testing.assert_series_equal(
        emb.ensembl_id, pd.Series([vocab.id_to_token[int(t)] for t in tokens], index=emb.index,
                                  name="ensembl_id"))
    assert emb.emb_layer == -1
    _, counts = embed_genes(model, ds, genes=GENES, progress=False, return_counts=True)
    pd.testing.assert_series_equal(counts, emb.n_cells)


def test_pandas_operations_work(emb):
    top = emb.loc["GATA4"].nlargest(3)  # raised ValueError while attrs held Series
    assert len(top) == 3 and top.iloc[0] == emb.loc["GATA4"].max()
    both = pd.concat([emb.iloc[:2], emb.iloc[2:]])
    pd.testing.assert_frame_equal(pd.DataFrame(both), pd.DataFrame(emb))
    deep = copy.deepcopy(emb)
    assert isinstance(deep, GeneEmbeddings) and deep.emb_layer == emb.emb_layer
    pd.testing.assert_series_equal(deep.n_cells, emb.n_cells)
    back = pickle.loads(pickle.dumps(emb))
    pd.testing.assert_series_equal(back.ensembl_id, emb.ensembl_id)


def test_attributes_follow_filtering_and_copies(emb):
    sub = emb.loc[["TBX5", "GATA4"]]
    assert isinstance(sub, GeneEmbeddings)
    assert sub.n_cells is emb.n_cells and sub.ensembl_id["TBX5"] == emb.ensembl_id["TBX5"]
    assert emb.copy().emb_layer == emb.emb_layer
    assert pd.concat([emb.iloc[:2], emb.iloc[2:]]).n_cells is None  # pieces may disagree
