"""Tests for course_helpers.embed (states.py): state_embeddings, also against the reference EmbExtractor."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

datasets = pytest.importorskip("datasets")

from course_helpers._utils import CourseInputError
from course_helpers.embed import embed_cells, state_embeddings


def test_state_embeddings(model, dataset, cells):
    emb = embed_cells(model, dataset, progress=False)
    states = ["CD19+ B", "CD14+ Monocyte"]
    out = state_embeddings(model, dataset, "cell_type", states, batch_size=3, progress=False)
    assert list(out) == states
    for s in states:
        expected = emb[(cells["cell_type"] == s).to_numpy()].mean(0)
        assert out[s].dtype == np.float32 and out[s].shape == (64,)
        np.testing.assert_allclose(out[s], expected, atol=1e-6)
    # the reference cell_states_to_model dictionary is accepted too
    ref = {"state_key": "cell_type", "start_state": "CD14+ Monocyte", "goal_state": "CD19+ B",
           "alt_states": ["CD4+/CD45RO+ Memory"]}
    out_all = state_embeddings(model, dataset, "cell_type", ref, progress=False)
    assert set(out_all) == set(cells["cell_type"])
    np.testing.assert_allclose(out_all["CD19+ B"], out["CD19+ B"], atol=1e-6)
    with pytest.raises(CourseInputError, match="B cell"):
        state_embeddings(model, dataset, "cell_type", ["B cell"], progress=False)
    with pytest.raises(CourseInputError, match="tissue"):
        state_embeddings(model, dataset, "tissue", ["x"], progress=False)


def _tokenize_pbmc68k(v1_dir):
    """pbmc68k_reduced (ships with scanpy) rank-value encoded with the V1 rules, by hand."""
    sc = pytest.importorskip("scanpy")
    import scipy.sparse as sp

    from course_helpers.vocab import GeneVocab

    vocab = GeneVocab.from_tsv(v1_dir / "vocab_gc30M.tsv", v1_dir / "gene_name_id_gc30M.tsv")
    adata = sc.datasets.pbmc68k_reduced()
    raw = adata.raw.to_adata()
    x = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    n_counts = adata.obs["n_counts"].to_numpy()
    counts = np.round(np.expm1(x) * n_counts[:, None] / 1e4)
    ens = vocab.map_symbols(list(raw.var_names))
    tok = np.array([vocab.token_to_id.get(e, -1) if e else -1 for e in ens])
    keep = tok >= 0
    med = np.array([vocab.medians[e] for e, k in zip(ens, keep) if k])
    input_ids = []
    for i in range(counts.shape[0]):
        v = counts[i, keep] / n_counts[i] * 10_000 / med
        nz = np.flatnonzero(v)
        input_ids.append(tok[keep][nz[np.argsort(-v[nz], kind="stable")]][:2048].tolist())
    return datasets.Dataset.from_dict({
        "input_ids": input_ids,
        "length": [len(x) for x in input_ids],
        "cell_type": adata.obs["bulk_labels"].astype(str).tolist(),
    })


def test_state_embeddings_match_reference(model, perturb_fixture_dir, v1_dir):
    ds = _tokenize_pbmc68k(v1_dir)
    ref = pd.read_parquet(perturb_fixture_dir / "state_embs.parquet")
    out = state_embeddings(model, ds, "cell_type", list(ref["state"]), batch_size=100,
                           progress=False)
    for _, row in ref.iterrows():
        assert int((np.asarray(ds["cell_type"]) == row["state"]).sum()) == row["n_cells"]
        np.testing.assert_allclose(out[row["state"]], np.asarray(row["vector"]), atol=1e-6, rtol=0)
