"""Tests for course_helpers.embed (genes.py): embed_genes on the reference fixture model and cells."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from course_helpers.embed import embed_genes


def test_embed_genes(model, dataset, cells):
    df, n_cells = embed_genes(model, dataset, batch_size=4, progress=False, return_counts=True)
    assert df.shape[1] == 64
    assert df.n_cells is not None and (n_cells > 0).all()
    # counts: every (cell, gene) occurrence once
    all_ids = np.concatenate([np.asarray(x) for x in cells["input_ids"]])
    assert int(n_cells.sum()) == len(all_ids)
    # the most frequent gene's embedding is its mean over the cells that contain it
    vocab = model.gene_vocab
    token = int(pd.Series(all_ids).value_counts().index[0])
    label = vocab.symbols([token])[0]
    manual = []
    for ids in cells["input_ids"]:
        if token in ids:
            t = torch.tensor([ids])
            with torch.inference_mode():
                h = model.bert(input_ids=t, output_hidden_states=True).hidden_states[5][0]
            manual.append(h[ids.index(token)].double().numpy())
    assert n_cells[label] == len(manual)
    np.testing.assert_allclose(df.loc[label].to_numpy(), np.mean(manual, 0), atol=1e-5)
    assert df.ensembl_id[label] == vocab.id_to_token[token]

    # a subset, in the requested order, with an absent gene -> NaN + warning
    absent = next(t for t in range(2, len(vocab)) if t not in set(all_ids.tolist()))
    absent_label = vocab.symbols([absent])[0]
    with pytest.warns(UserWarning, match="occur in no cell"):
        sub = embed_genes(model, dataset, genes=[label, absent_label], progress=False)
    assert list(sub.index) == [label, absent_label]
    np.testing.assert_allclose(sub.loc[label].to_numpy(), df.loc[label].to_numpy(), atol=1e-6)
    assert sub.loc[absent_label].isna().all()
    assert sub.n_cells[absent_label] == 0
