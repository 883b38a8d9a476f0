"""The shipped teaching model: assets, recipe, offline loading and a quick quality check."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "course_helpers" / "assets" / "teaching_model"
MAX_FOLDER_BYTES = 20 * 1024 * 1024


def _config() -> dict:
    return json.loads((FOLDER / "config.json").read_text())


@pytest.fixture(scope="module")
def model():
    from course_helpers.model import load_model

    return load_model("teaching", device="cpu")


@pytest.fixture(scope="module")
def chapter_cells(model):
    """448 good-quality chapter cells (seeded), tokenized for the teaching model."""
    from course_helpers.data import load_tissue
    from course_helpers.tokenize import tokenize

    adata = load_tissue("chapter")
    good = np.flatnonzero(~adata.obs["low_quality"].to_numpy().astype(bool))
    pick = np.random.default_rng(0).choice(good, 448, replace=False)
    ds = tokenize(adata[pick].copy(), model.gene_vocab, cell_attrs=("cell_id", "cell_type"),
                  model_input_size=model.config.max_position_embeddings, progress=False)
    return [np.asarray(x, dtype=np.int64) for x in ds["input_ids"]]


@pytest.fixture(scope="module")
def chapter_sample(chapter_cells):
    """48 cells to evaluate on (the other 400 give the baseline's frequency table)."""
    return chapter_cells[:48]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "data_scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------------
def test_asset_folder_complete_and_small():
    names = {p.name for p in FOLDER.iterdir()}
    for f in ("config.json", "model.safetensors", "vocab.tsv", "MODEL_CARD.md",
              "training_log.json", "model_card.png"):
        assert f in names, f"{f} missing from {FOLDER}"
    total = sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file())
    assert total <= MAX_FOLDER_BYTES, f"teaching model folder is {total / 2**20:.1f} MiB > 20 MiB"


def test_weights_are_safetensors_only():
    from safetensors import safe_open

    assert not list(FOLDER.glob("*.bin")) and not list(FOLDER.glob("*.pt")), \
        "pickled weights must not ship; use safetensors"
    cfg = _config()
    with safe_open(str(FOLDER / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        emb = fh.get_slice("bert.embeddings.word_embeddings.weight")
        assert list(emb.get_shape()) == [cfg["vocab_size"], cfg["hidden_size"]]
        assert emb.get_dtype() == "F32"
    assert any(k.startswith("bert.encoder.layer.") for k in keys)


def test_config_follows_geneformer_v1_recipe():
    cfg = _config()
    assert cfg["model_type"] == "bert"
    assert cfg["architectures"] == ["BertForMaskedLM"]
    assert cfg["hidden_act"] == "relu"
    assert cfg.get("position_embedding_type", "absolute") == "absolute"
    assert cfg["pad_token_id"] == 0
    assert cfg["num_hidden_layers"] == 4
    assert cfg["num_attention_heads"] == 4
    assert 128 <= cfg["hidden_size"] <= 256
    assert cfg["intermediate_size"] == 2 * cfg["hidden_size"]
    assert cfg["tie_word_embeddings"] is True
    assert cfg["model_input_size"] == cfg["max_position_embeddings"]
    assert cfg["model_version"] == "teaching"


def test_vocab_is_geneformer_style():
    from course_helpers.data import tissue_genes
    from course_helpers.vocab import GeneVocab

    vocab = GeneVocab.from_tsv(FOLDER / "vocab.tsv")
    assert vocab.token_to_id["<pad>"] == 0 and vocab.token_to_id["<mask>"] == 1
    assert vocab.version == "V1" and vocab.cls_token_id is None
    assert len(vocab) == _config()["vocab_size"]
    genes = [t for t in vocab.token_to_id if not t.startswith("<")]
    assert sorted(genes) == genes == [vocab.id_to_token[i] for i in range(2, len(vocab))]
    assert set(genes) <= set(tissue_genes().index)
    med = np.array([vocab.medians[g] for g in genes])
    assert np.isfinite(med).all() and (med > 0).all()


def test_load_model_teaching_offline(model, monkeypatch):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model.model_version == "teaching"
    assert len(model.gene_vocab) == model.config.vocab_size
    assert not model.training
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.float32
    # the MLM decoder is tied to the word embeddings, as in Geneformer V1
    assert model.cls.predictions.decoder.weight.data_ptr() == \
        model.bert.embeddings.word_embeddings.weight.data_ptr()


def test_chapter_cells_fit_the_input_size(model, chapter_sample):
    assert max(len(x) for x in chapter_sample) <= model.config.max_position_embeddings
    assert all(x.min() >= 2 for x in chapter_sample)  # no special tokens (V1 rules)


def test_masked_gene_prediction_beats_position_frequency_baseline(model, chapter_cells,
                                                                  chapter_sample):
    """Top-1 / top-10 on 15 % masked genes of 48 chapter cells vs the most frequent gene per rank.

    The baseline's per-position gene frequencies are counted on 400 *other* chapter cells (counting
    them on the 48 evaluation cells themselves would let the baseline see the answers).
    """
    from collections import Counter

    import torch

    from course_helpers.model import pad_batch

    rng = np.random.default_rng(0)
    masks = []
    for x in chapter_sample:
        m = rng.random(len(x)) < 0.15
        m[0] = m[0] or not m.any()
        masks.append(m)
    masked = [np.where(m, model.gene_vocab.mask_token_id, x) for x, m in zip(chapter_sample, masks)]
    ids, att = pad_batch(masked, 0)
    sel = torch.zeros_like(ids, dtype=torch.bool)
    for r, m in enumerate(masks):
        sel[r, : len(m)] = torch.from_numpy(m)
    with torch.inference_mode():
        h = model.bert(input_ids=ids, attention_mask=att).last_hidden_state
        logits = model.cls(h[sel])
        logits[:, :2] = -torch.inf
        pred = logits.topk(10, -1).indices.numpy()
    truth = np.concatenate([x[m] for x, m in zip(chapter_sample, masks)])
    pos = np.concatenate([np.flatnonzero(m) for m in masks])

    reference = chapter_cells[48:]
    per_pos = [Counter() for _ in range(model.config.max_position_embeddings)]
    for x in reference:
        for p, t in enumerate(x):
            per_pos[p][int(t)] += 1
    base = np.array([[t for t, _ in per_pos[p].most_common(10)] + [-1] * 10 for p in pos])[:, :10]

    model_top1 = (pred[:, 0] == truth).mean()
    model_top10 = (pred == truth[:, None]).any(1).mean()
    base_top1 = (base[:, 0] == truth).mean()
    base_top10 = (base == truth[:, None]).any(1).mean()
    print(f"model {model_top1:.3f}/{model_top10:.3f}  baseline {base_top1:.3f}/{base_top10:.3f}")
    assert model_top1 > base_top1 + 0.02, (model_top1, base_top1)
    assert model_top10 > base_top10 + 0.05, (model_top10, base_top10)


def test_model_card_numbers_come_from_the_evaluation():
    log = json.loads((FOLDER / "training_log.json").read_text())
    card = (FOLDER / "MODEL_CARD.md").read_text()
    assert "evaluation" in log, "run data_scripts/evaluate_teaching_model.py"
    ev = log["evaluation"]
    mg = ev["masked_gene_test"]
    assert f"{mg['model']['top1']:.3f}" in card and f"{mg['position_baseline']['top1']:.3f}" in card
    assert f"{ev['driver_check']['driver_mean_shift']:.2e}" in card
    sc = ev["synergy_check"]
    assert f"**{sc['planted']} ranks" in card
    assert f"{sc['model_planted_synergy']:.2e}" in card
    assert f"gives {sc['data']['counts']['n_genes_z_gt_5']} genes with z > 5" in card
    assert "pretrain_teaching_model.py --out course_helpers/assets/teaching_model" in card
    assert len(log["train_curve"]["train_loss"]) > 5 and len(log["val_curve"]["val_loss"]) > 2
    assert log["val_curve"]["val_loss"][-1] < log["val_curve"]["val_loss"][0]
    # the held-out cells were not trained on
    assert not set(log["split"]["test_cell_ids"]) & set(log["split"]["val_cell_ids"])


def test_training_helpers():
    P = _script("pretrain_teaching_model")
    rng = np.random.default_rng(0)
    lengths = np.array([5, 9, 3, 7, 8, 2, 6])
    batches = P.length_grouped_batches(lengths, 3, rng, mega=2)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    ids = np.array([[5, 6, 7, 8, 0], [9, 4, 0, 0, 0]])
    att = (ids > 0).astype(np.int64)
    for bert_rule in (True, False):
        out, lab = P.mask_tokens(ids, att, np.random.default_rng(1), 20, bert_rule=bert_rule,
                                 mask_prob=0.5)
        assert ((lab != -100) <= (att == 1)).all()          # never a padding position
        assert ((lab != -100).sum(1) >= 1).all()            # every cell has a masked gene
        assert (out[att == 0] == 0).all()
        assert (lab[lab != -100] == ids[lab != -100]).all()
        if not bert_rule:
            assert (out[lab != -100] == 1).all()
