"""The shipped teaching model: assets, recipe, offline loading and a quick quality check."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
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
    E = _script("evaluate_teaching_model")
    stages = E.training_stages(log)
    assert "pretrain_teaching_model.py" in card and "--out course_helpers/assets/teaching_model" in card
    assert E.reproduce_text(log) in card
    if len(stages) > 1:  # every stage's command is on the card, each starting from the one before
        assert card.count("pretrain_teaching_model.py") == len(stages)
        assert all("--init-from" in st["command"] for st in stages[1:])
    tc, vc, bounds = E.joined_curves(log)
    assert len(tc["train_loss"]) > 5 and len(vc["val_loss"]) > 2 and len(bounds) == len(stages) - 1
    assert vc["val_loss"][-1] < vc["val_loss"][0]
    assert f"{vc['val_loss'][-1]:.3f}" in card
    # the direct-target check, its null and ceiling, on the chapter split and a fresh tissue
    dt = ev["direct_target_chapter"]
    assert len(dt["per_tf"]) == 14
    for key in ("mean_auroc", "mean_null_auroc", "mean_paired_auroc", "mean_corr_auroc"):
        assert f"{dt[key]:.2f}" in card, key
    ck = ev["check_tissue"]
    assert ck["seed"] not in (1, 2, 3)  # not a seed of the shipped splits
    assert f"(seed {ck['seed']}," in card
    assert f"mean AUROC {ck['direct_target']['mean_auroc']:.2f}" in card
    mk = ck["masked_gene"]
    assert f"model {mk['model']['top1']:.3f}" in card
    ratio = mg["model"]["top1"] / mg["position_baseline_excl_visible"]["top1"]
    assert f"**{ratio:.2f}**" in card
    met = dt["mean_auroc"] >= 0.7 and dt["mean_auroc"] - dt["mean_null_auroc"] >= 0.1
    assert ("**The aim is met**" if met else "**The aim is not met**") in card
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


def test_direct_target_helpers():
    from course_helpers.data import load_ground_truth

    E = _script("evaluate_teaching_model")
    gt = load_ground_truth()
    gata4 = gt.genes.index[gt.genes["gene_symbol"] == "GATA4"][0]
    sym = gt.genes["gene_symbol"]
    tg = {sym[g] for g in E.direct_targets(gt, gata4, "cardiomyocyte")}
    assert {"MYH6", "TNNT2", "NPPA"} <= tg  # a plain edge and an AND-pair edge (with TBX5)
    # edges whose context is "all" (the AND-pair's) count everywhere; cardiac ones only there
    assert {sym[g] for g in E.direct_targets(gt, gata4, "t_cell")} == \
        {"NPPA", "GJA5", "MYL4", "SCN5A", "KCNJ3", "SLN"}
    # rank normalisation: a constant shift gives 0 everywhere; one outlier stands out
    shift = np.full(60, 0.01)
    shift[30] = 0.1
    z = E._rank_normalised_log_shift(shift, skip=5, window=10)
    assert np.isnan(z[5]) and np.isclose(z[0], 0.0) and z[30] == pytest.approx(np.log(10))
    assert E._auroc({1: 0.9, 2: 0.1, 3: 0.2}, {1}, [1, 2, 3]) == 1.0
    assert E._auroc({1: 0.9, 2: 0.1}, {1, 2}, [1, 2]) is None


def test_training_stages_join_curves():
    E = _script("evaluate_teaching_model")
    s1 = {"command": "python data_scripts/pretrain_teaching_model.py --out x",
          "training": {"steps": 10},
          "train_curve": {"step": [10], "train_loss": [5.0]},
          "val_curve": {"step": [0, 10], "val_loss": [7.0, 5.0], "val_top1": [0.0, 0.1]}}
    s2 = {"command": "python data_scripts/pretrain_teaching_model.py --init-from x --out y",
          "training": {"steps": 4}, "previous_stage": s1,
          "train_curve": {"step": [4], "train_loss": [4.5]},
          "val_curve": {"step": [0, 4], "val_loss": [5.0, 4.8], "val_top1": [0.1, 0.2]}}
    assert E.training_stages(s2) == [s1, s2]
    tc, vc, bounds = E.joined_curves(s2)
    assert tc["step"] == [10, 14] and vc["step"] == [0, 10, 14] and bounds == [10]
    assert vc["val_loss"] == [7.0, 5.0, 4.8]
    text = E.reproduce_text(s2)
    assert "--out stage1" in text and "--init-from stage1 --out course_helpers/assets/" in text


def test_corpus_stream_restores_the_simulator():
    import course_helpers.data.simulate as d

    S = _script("corpus_stream")
    noise, reader = d.TF_NOISE, d._read_design
    with S._activity_settings(0.9, 0.5):
        assert d.TF_NOISE == 0.9
        tfa = d._read_design()["tf_activity"]
        gata4 = tfa[(tfa["tf_symbol"] == "GATA4") & (tfa["cell_type"] == "cardiomyocyte")]
        assert float(gata4["on_fraction"].iloc[0]) == 0.5
    assert d.TF_NOISE == noise and d._read_design is reader
    a = S.stream_chunk(0, chunk_cells=120, base_seed=5000)
    b = S.stream_chunk(1, chunk_cells=120, base_seed=5000)
    assert not a.obs["low_quality"].any() and a.n_obs <= 120
    assert not set(a.obs["cell_id"]) & set(b.obs["cell_id"])  # never the same cell twice


def test_pretraining_resumes_where_it_stopped(tmp_path):
    """4 steps in one go == stopped after 2, then --resume to 4 (tiny model, fresh-cell stream)."""
    from safetensors.torch import load_file

    P = _script("pretrain_teaching_model")
    common = ["--max-cells", "300", "--hidden", "16", "--layers", "1", "--heads", "2",
              "--input-size", "256", "--batch-size", "4", "--eval-every", "2", "--ckpt-every", "2",
              "--n-val-loss-cells", "8", "--corpus", "stream", "--chunk-cells", "40",
              "--stream-seed", "7000", "--no-progress", "--threads", "1"]
    P.main(common + ["--out", str(tmp_path / "a"), "--steps", "4"])
    assert P.main(common + ["--out", str(tmp_path / "b"), "--steps", "4", "--stop-after", "2"]) == {}
    assert not (tmp_path / "b" / "model.safetensors").exists()
    rec = P.main(common + ["--out", str(tmp_path / "b"), "--steps", "4", "--resume"])
    assert rec["training"]["steps"] == 4 and rec["val_curve"]["step"] == [0, 2, 4]
    wa = load_file(str(tmp_path / "a" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model.safetensors"))
    for k in wa:
        np.testing.assert_allclose(wa[k].numpy(), wb[k].numpy(), rtol=1e-5, atol=1e-6)
