"""Tests for course_helpers.embed (cells.py): embed_cells (mean and <cls> pooling) on the reference fixture model and cells."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers._utils import CourseInputError
from course_helpers.embed import embed_cells, embed_genes
from course_helpers.model import load_model


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
