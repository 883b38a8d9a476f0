"""embedding_similarity / pool_similarities return a GeneSimilarity: side data as attributes.

Regression: Series / DataFrames in ``DataFrame.attrs`` made ``sim.loc[gene].nlargest(3)`` and
``pd.concat`` raise "The truth value of a Series is ambiguous" (pandas compares attrs with ``==``).
"""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("datasets")

import course_helpers as ch
from course_helpers.embed import embed_genes
from course_helpers.networks import (
    GeneSimilarity,
    cosine_similarity,
    embedding_network,
    embedding_similarity,
    pool_similarities,
)

GENES = ["GATA4", "TBX5", "NPPA", "MYH6", "TNNT2"]


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(min(2, n))
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup():
    model = ch.model.load_model("teaching")
    ds = ch.tokenize.tokenize(ch.data.load_tissue("chapter")[:40], model.gene_vocab,
                              cell_attrs=["cell_id", "cell_type", "state"], progress=False)
    return model, ds


@pytest.fixture(scope="module")
def sim(setup):
    model, ds = setup
    return embedding_similarity(model, ds, genes=GENES, progress=False)


@pytest.fixture(scope="module")
def pooled(setup):
    model, ds = setup
    per = embedding_similarity(model, ds, groupby="state", genes=GENES, progress=False)
    return per, pool_similarities(per)


def _check_pandas_operations(x: GeneSimilarity):
    top = x.loc[x.index[0]].nlargest(3)  # raised ValueError while attrs held Series
    assert len(top) == 3 and top.iloc[0] == pytest.approx(1.0)
    both = pd.concat([x.iloc[:2], x.iloc[2:]])
    pd.testing.assert_frame_equal(pd.DataFrame(both), pd.DataFrame(x))
    deep = copy.deepcopy(x)
    assert isinstance(deep, GeneSimilarity) and deep.params == x.params
    pd.testing.assert_series_equal(deep.n_cells, x.n_cells)
    pd.testing.assert_frame_equal(deep.embeddings, x.embeddings)
    back = pickle.loads(pickle.dumps(x))
    pd.testing.assert_series_equal(back.symbol, x.symbol)
    assert x.attrs == {}


def test_similarity_attributes_hold_the_old_values(setup, sim):
    model, ds = setup
    vocab = model.gene_vocab
    assert isinstance(sim, GeneSimilarity)
    emb = embed_genes(model, ds, genes=GENES, progress=False)
    ens = pd.Index([vocab.id_to_token[int(t)] for t in vocab.tokens(GENES)], name="gene")
    assert list(sim.index) == list(ens)
    pd.testing.assert_series_equal(sim.n_cells,
                                   pd.Series(emb.n_cells.to_numpy(), index=ens, name="n_cells"))
    pd.testing.assert_series_equal(sim.symbol, pd.Series(GENES, index=list(ens), name="symbol"))
    expected = pd.DataFrame(emb.to_numpy(), index=ens, columns=emb.columns)
    assert type(sim.embeddings) is pd.DataFrame
    pd.testing.assert_frame_equal(sim.embeddings, expected)
    assert sim.params == {"emb_layer": -1, "center": False, "min_cells": 1, "cells_used": 40}
    pd.testing.assert_frame_equal(pd.DataFrame(sim), cosine_similarity(expected)
                                  .rename_axis(index="gene", columns="gene"))


def test_similarity_survives_pandas_operations(sim):
    _check_pandas_operations(sim)
    sub = sim.loc[sim.index[:3], sim.index[:3]]
    assert isinstance(sub, GeneSimilarity) and sub.symbol is sim.symbol
    assert pd.concat([sim.iloc[:2], sim.iloc[2:]]).n_cells is None  # pieces may disagree


def test_pooled_attributes_and_pandas_operations(setup, sim, pooled):
    per, pool = pooled
    assert isinstance(pool, GeneSimilarity)
    assert all(isinstance(s, GeneSimilarity) for s in per.values())
    assert {g: s.params["group"] for g, s in per.items()} == {g: {"state": g} for g in per}
    assert pool.params == {"emb_layer": -1, "center": False, "min_cells": 1, "cells_used": 40,
                           "pooled_groups": list(per)}
    pd.testing.assert_series_equal(pool.n_cells.loc[sim.index], sim.n_cells, check_dtype=False)
    assert pool.symbol.loc[sim.index].tolist() == sim.symbol.tolist() == GENES
    np.testing.assert_allclose(pool.embeddings.loc[sim.index], sim.embeddings, atol=1e-5)
    np.testing.assert_allclose(pool.loc[sim.index, sim.index], sim, atol=1e-5)
    _check_pandas_operations(pool)


def test_network_reads_the_attributes(sim):
    ad = embedding_network(sim, k=2).to_anndata()
    np.testing.assert_array_equal(ad.X, sim.embeddings.to_numpy(np.float32))
    assert ad.obs["symbol"].tolist() == GENES
    assert ad.obs["n_cells"].tolist() == sim.n_cells.tolist()
    plain = embedding_network(pd.DataFrame(sim), k=2).to_anndata()  # no side data: no X
    assert plain.X.shape == (len(GENES), 0) and "symbol" not in plain.obs
