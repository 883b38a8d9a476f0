"""Tests for course_helpers.embed on the reference fixture model and cells."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from course_helpers._utils import CourseInputError
from course_helpers.embed import embed_cells, embed_genes, state_embeddings
from course_helpers.model import load_model


@pytest.fixture(scope="module")
def model(fixture_model_dir):
    return load_model(fixture_model_dir, device="cpu")


@pytest.fixture(scope="module")
def cells(fixture_cells) -> pd.DataFrame:
    return fixture_cells


@pytest.fixture(scope="module")
def dataset(cells):
    return datasets.Dataset.from_pandas(cells, preserve_index=False)


def _manual(model, ids, hs_index):
    """Mean over positions of hidden_states[hs_index] of one unpadded cell."""
    t = torch.tensor([ids])
    with torch.inference_mode():
        out = model.bert(input_ids=t, attention_mask=torch.ones_like(t), output_hidden_states=True)
    return out.hidden_states[hs_index][0].double().mean(0).numpy()


@pytest.fixture(scope="module")
def manual_layer5(model, cells):
    return np.stack([_manual(model, ids, 5) for ids in cells["input_ids"]])


def test_embed_cells_matches_manual_mean(model, dataset, manual_layer5):
    emb = embed_cells(model, dataset, batch_size=5, progress=False)
    assert emb.shape == (12, 64) and emb.dtype == np.float32
    # dataset order, mean of hidden_states[5] (layer -1 on a 6-layer model), padding excluded
    np.testing.assert_allclose(emb, manual_layer5, atol=1e-5, rtol=0)


def test_padded_batches_equal_single_cells(model, dataset):
    batched = embed_cells(model, dataset, batch_size=12, progress=False)
    single = embed_cells(model, dataset, batch_size=1, progress=False)
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_layer_zero_is_last_layer(model, cells):
    ids = list(cells["input_ids"][:3])
    emb0 = embed_cells(model, ids, layer=0, progress=False)
    emb1 = embed_cells(model, ids, layer=-1, progress=False)
    manual6 = np.stack([_manual(model, x, 6) for x in ids])
    np.testing.assert_allclose(emb0, manual6, atol=1e-5, rtol=0)
    assert np.abs(emb0 - emb1).max() > 1e-3
    with pytest.raises(CourseInputError, match="layer"):
        embed_cells(model, ids, layer=1, progress=False)


def test_embed_cells_writes_adata(model, dataset, cells):
    ad = pytest.importorskip("anndata")
    adata = ad.AnnData(
        X=np.zeros((12, 1), dtype=np.float32), obs=pd.DataFrame(index=list(cells["cell_id"]))
    )
    emb = embed_cells(model, dataset, adata=adata, progress=False)
    np.testing.assert_array_equal(adata.obsm["X_geneformer"], emb)
    assert adata.uns["X_geneformer"]["params"]["layer"] == -1
    embed_cells(model, dataset, adata=adata, key_added="X_last", layer=0, progress=False)
    assert adata.obsm["X_last"].shape == (12, 64)
    with pytest.raises(CourseInputError, match="12"):
        embed_cells(model, dataset, adata=adata[:5].copy(), progress=False)
    shuffled = adata[list(reversed(adata.obs_names))].copy()
    with pytest.raises(CourseInputError, match="order"):
        embed_cells(model, dataset, adata=shuffled, progress=False)


def test_embed_cells_bad_input(model, dataset):
    with pytest.raises(CourseInputError, match="vocabulary"):
        embed_cells(model, [[5, 6, 30000]], progress=False)
    with pytest.raises(CourseInputError, match="no tokens"):
        embed_cells(model, [[5, 6], []], progress=False)
    with pytest.raises(CourseInputError, match="<cls>"):
        embed_cells(model, dataset, cls=True, progress=False)
    with pytest.raises(CourseInputError, match="input_ids"):
        embed_cells(model, dataset.remove_columns("input_ids"), progress=False)


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


# ----------------------------------------------------------------------------------------------
# V2-style vocabulary: <cls>/<eos> excluded from the mean, or the <cls> position with cls=True
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def v2_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_v2")
    rows = ["ensembl_id\ttoken_id\tgene_median\tgene_symbols"]
    for i, tok in enumerate(["<pad>", "<mask>", "<cls>", "<eos>"]):
        rows.append(f"{tok}\t{i}\t\t")
    for i in range(4, 30):
        rows.append(f"ENSG{i:011d}\t{i}\t{1.0 + i / 10}\tGENE{i}")
    (d / "vocab.tsv").write_text("\n".join(rows) + "\n")
    cfg = transformers.BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, pad_token_id=0, hidden_act="relu",
    )
    torch.manual_seed(1)
    transformers.BertForMaskedLM(cfg).save_pretrained(d)
    m = load_model(d, device="cpu")
    assert m.model_version == "V2"
    return m


def test_v2_cls_and_mean(v2_model):
    m = v2_model
    cells = [[2, 5, 6, 7, 8, 3], [2, 9, 10, 3], [2, 11, 12, 13, 3]]
    mean = embed_cells(m, cells, batch_size=2, progress=False, cls=False)
    cls = embed_cells(m, cells, batch_size=2, progress=False, cls=True)
    # V2 default: <cls>, as the reference EmbExtractor (emb_mode="cls")
    np.testing.assert_array_equal(embed_cells(m, cells, batch_size=2, progress=False), cls)
    for i, ids in enumerate(cells):
        t = torch.tensor([ids])
        with torch.inference_mode():
            h = m.bert(input_ids=t, output_hidden_states=True).hidden_states[1][0]
        np.testing.assert_allclose(mean[i], h[1:-1].mean(0).numpy(), atol=1e-5)
        np.testing.assert_allclose(cls[i], h[0].numpy(), atol=1e-5)
    with pytest.raises(CourseInputError, match="<cls>"):
        embed_cells(m, [[5, 6, 3]], cls=True, progress=False)
    with pytest.raises(CourseInputError, match="model_version='V2'"):
        embed_cells(m, [[5, 6, 3]], progress=False)  # the default asks for <cls> too
    genes = embed_genes(m, cells, progress=False)
    assert "GENE5" in genes.index
    assert not any(lbl in genes.index for lbl in ["<cls>", "<eos>", "<pad>"])
    assert len(genes) == 9


# ----------------------------------------------------------------------------------------------
# end to end against the reference EmbExtractor.get_state_embs (all 700 pbmc68k cells)
# ----------------------------------------------------------------------------------------------
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
