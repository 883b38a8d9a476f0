"""Tests for course_helpers.finetune: cell classifier, freezing, saving, LoRA and new heads, on a tiny model.

The model is a 2-layer BERT with the teaching vocabulary and hidden size 32, so every fine-tune
takes a second or two. The toy cells make the answer learnable: a cell's class is written in its
first gene.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")

from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
)

from course_helpers import finetune as ft
from course_helpers._utils import CourseInputError
from course_helpers.vocab import GeneVocab

DONORS = {"H1": "healthy", "H2": "healthy", "H3": "healthy",
          "F1": "diseased", "F2": "diseased", "F3": "diseased"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vocab():
    return GeneVocab.teaching()


def _tiny_model(vocab, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                     pad_token_id=vocab.pad_token_id, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    m = BertForMaskedLM(cfg).eval()
    m.gene_vocab = vocab
    m.model_version = "teaching"
    return m


@pytest.fixture(scope="module")
def model(vocab):
    return _tiny_model(vocab)


def _gene_tokens(vocab, n, start=10):
    special = {vocab.pad_token_id, vocab.mask_token_id}
    return [t for t in range(start, len(vocab)) if t not in special][:n]


@pytest.fixture(scope="module")
def cells(vocab):
    """120 cells from 6 donors; diseased cells start with token MARK, healthy ones do not."""
    rng = np.random.default_rng(0)
    genes = _gene_tokens(vocab, 200)
    mark, others = genes[0], genes[1:]
    rows = {"cell_id": [], "input_ids": [], "length": [], "state": [], "donor": []}
    for donor, state in DONORS.items():
        for k in range(20):
            ids = list(rng.choice(others, size=int(rng.integers(12, 20)), replace=False))
            if state == "diseased":
                ids = [mark] + ids
            rows["cell_id"].append(f"{donor}_{k}")
            rows["input_ids"].append([int(t) for t in ids])
            rows["length"].append(len(ids))
            rows["state"].append(state)
            rows["donor"].append(donor)
    return datasets.Dataset.from_dict(rows)


FAST = {"epochs": 4, "learning_rate": 3e-3, "batch_size": 8, "progress": False}


@pytest.fixture(scope="module")
def cell_result(model, cells):
    return ft.cell_classifier(model, cells, "state", group_key="donor",
                              test_groups=["H3", "F3"], **FAST)


# --------------------------------------------------------------------------------------------
# cell classifier
# --------------------------------------------------------------------------------------------
def test_cell_classifier_holds_out_donors_and_learns(cell_result, cells):
    res = cell_result
    assert res.classes == ["diseased", "healthy"]
    assert res.test_groups == ["F3", "H3"]
    assert res.train_groups == ["F1", "F2", "H1", "H2"]
    p = res.predictions
    assert len(p) == 40 and set(p["donor"]) == {"H3", "F3"}
    assert p["cell_id"].str[:2].isin(["H3", "F3"]).all()
    np.testing.assert_allclose(p[["p_diseased", "p_healthy"]].sum(1), 1.0, atol=1e-5)
    assert (p["predicted"] == np.where(p["p_diseased"] > p["p_healthy"], "diseased",
                                       "healthy")).all()
    assert res.accuracy >= 0.9, res.metrics
    m = res.metrics
    assert list(m.index) == ["overall", "diseased", "healthy"]
    assert m.loc["overall", "n_cells"] == 40 and m.loc["healthy", "n_cells"] == 20
    acc = (p["true"] == p["predicted"]).mean()
    assert m.loc["overall", "accuracy"] == pytest.approx(acc)
    tp = ((p["true"] == "healthy") & (p["predicted"] == "healthy")).sum()
    assert m.loc["healthy", "recall"] == pytest.approx(tp / 20)
    cm = res.confusion_matrix()
    assert cm.values.sum() == 40 and cm.loc["healthy"].sum() == 20
    assert list(res.history.columns) == ["train_loss", "eval_loss"]
    assert list(res.history.index) == [1, 2, 3, 4]
    assert res.history["train_loss"].iloc[-1] < res.history["train_loss"].iloc[0]
    assert res.history["eval_loss"].notna().all()


def test_cell_classifier_model_keeps_vocab_labels_and_leaves_input_alone(cell_result, model):
    clf = cell_result.model
    assert isinstance(clf, BertForSequenceClassification)
    assert clf.config.id2label == {0: "diseased", 1: "healthy"}
    assert clf.config.label2id == {"diseased": 0, "healthy": 1}
    assert clf.gene_vocab is model.gene_vocab and clf.model_version == "teaching"
    assert not clf.training
    assert all(p.requires_grad for p in clf.parameters())
    fresh = _tiny_model(model.gene_vocab)  # same seed: the weights the caller passed
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), f"{k} of the caller's model changed"
    # the encoder did move during fine-tuning
    w0 = model.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.allclose(clf.bert.encoder.layer[0].attention.self.query.weight, w0)


def test_cell_classifier_is_deterministic(model, cells, cell_result):
    again = ft.cell_classifier(model, cells, "state", group_key="donor",
                               test_groups=["H3", "F3"], **FAST)
    pd.testing.assert_frame_equal(again.predictions, cell_result.predictions)
    pd.testing.assert_frame_equal(again.history, cell_result.history)


def test_cell_classifier_random_split_without_groups(model, cells):
    res = ft.cell_classifier(model, cells, "state", test_size=0.25, **FAST)
    assert len(res.predictions) == 30 and res.test_groups is None
    assert res.predictions["true"].value_counts().to_dict() == {"diseased": 15, "healthy": 15}
    assert res.predictions["index"].is_unique


def test_cell_classifier_picks_groups_per_class(model, cells):
    res = ft.cell_classifier(model, cells, "state", group_key="donor", test_size=0.34,
                             epochs=1, batch_size=16, progress=False)
    held = res.test_groups
    assert len(held) == 2 and {DONORS[g] for g in held} == {"healthy", "diseased"}
    assert set(res.predictions["donor"]) == set(held)


def test_freeze_layers_keeps_frozen_weights(model, cells):
    res = ft.cell_classifier(model, cells, "state", group_key="donor", test_groups=["H3", "F3"],
                             freeze_layers=1, **FAST)
    clf = res.model
    sd = model.bert.state_dict()
    for k, v in clf.bert.embeddings.state_dict().items():
        assert torch.equal(v, sd[f"embeddings.{k}"]), k
    for k, v in clf.bert.encoder.layer[0].state_dict().items():
        assert torch.equal(v, sd[f"encoder.layer.0.{k}"]), k
    changed = [not torch.equal(v, sd[f"encoder.layer.1.{k}"])
               for k, v in clf.bert.encoder.layer[1].state_dict().items()]
    assert any(changed)
    assert res.settings["freeze_layers"] == 1


def test_freeze_reference_mode_trains_embeddings(vocab):
    clf = BertForSequenceClassification(_tiny_model(vocab).config)
    counts = ft.freeze(clf, 1, freeze_embeddings=False)
    assert all(p.requires_grad for p in clf.bert.embeddings.parameters())
    assert not any(p.requires_grad for p in clf.bert.encoder.layer[0].parameters())
    assert counts["trainable"] < counts["total"]
    head_only = BertForSequenceClassification(_tiny_model(vocab).config)
    c2 = ft.freeze(head_only, 2)
    trainable = {n for n, p in head_only.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("classifier", "bert.pooler")) for n in trainable)
    assert c2["trainable"] < counts["trainable"]
    with pytest.raises(CourseInputError, match="from 0 .* to 2"):
        ft.freeze(head_only, 3)


def test_save_writes_the_loadable_folder(cell_result, cells, tmp_path):
    out = cell_result.save(tmp_path / "clf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors",
                                                     "vocab.tsv"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["BertForSequenceClassification"]
    assert cfg["id2label"] == {"0": "diseased", "1": "healthy"}
    assert cfg["label2id"] == {"diseased": 0, "healthy": 1}
    assert cfg["course_helpers"]["model_version"] == "teaching"
    assert cfg["course_helpers"]["label_key"] == "state"
    assert cfg["course_helpers"]["test_groups"] == ["F3", "H3"]
    loaded = BertForSequenceClassification.from_pretrained(out).eval()
    loaded.gene_vocab = GeneVocab.from_tsv(out / "vocab.tsv")
    assert len(loaded.gene_vocab) == len(cell_result.model.gene_vocab)
    from course_helpers.model import load_model

    via_course = load_model(out, device="cpu")
    assert type(via_course) is BertForSequenceClassification
    assert via_course.model_version == "teaching"
    assert via_course.config.id2label == {0: "diseased", 1: "healthy"}
    a = ft.predict_cells(cell_result.model, cells, progress=False)
    b = ft.predict_cells(loaded, cells, progress=False)
    c = ft.predict_cells(via_course, cells, progress=False)
    np.testing.assert_allclose(a[["p_diseased"]], c[["p_diseased"]], atol=1e-5)
    np.testing.assert_allclose(a[["p_diseased", "p_healthy"]], b[["p_diseased", "p_healthy"]],
                               atol=1e-5)
    assert list(a.columns) == ["cell_id", "p_diseased", "p_healthy", "predicted"]
    # no overwrite by accident, and nothing half-written
    with pytest.raises(CourseInputError, match="already exists"):
        cell_result.save(out)
    cell_result.save(out, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_save_leaves_nothing_on_failure(cell_result, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(type(cell_result.model.gene_vocab), "to_tsv", boom)
    with pytest.raises(OSError, match="disk full"):
        cell_result.save(tmp_path / "clf")
    assert list(tmp_path.iterdir()) == []


def test_continue_training_a_classifier(cell_result, cells):
    res = ft.cell_classifier(cell_result.model, cells, "state", group_key="donor",
                             test_groups=["H3", "F3"], epochs=1, batch_size=16, progress=False)
    assert res.accuracy >= 0.9


# --------------------------------------------------------------------------------------------
# bad input: clear message, nothing trained
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"label_key": "disease"}, "no label column 'disease'"),
    ({"label_key": "state", "group_key": "patient"}, "no group column 'patient'"),
    ({"label_key": "state", "group_key": "donor", "test_groups": ["H9"]},
     r"Held-out group\(s\) \['H9'\] do not occur"),
    ({"label_key": "state", "group_key": "donor", "test_groups": ["F1", "F2", "F3"]},
     r"class\(es\) \['diseased'\] have no training cells"),
    ({"label_key": "state", "test_groups": ["H1"]}, "without group_key"),
    ({"label_key": "state", "freeze_layers": 5}, "out of range"),
    ({"label_key": "state", "epochs": 0}, "epochs must be > 0"),
    ({"label_key": "state", "learning_rate": 5}, "learning_rate must be between"),
    ({"label_key": "state", "test_size": 1.5}, "test_size must be between"),
    ({"label_key": "state", "lora": 4, "freeze_layers": 1}, "either lora"),
])
def test_cell_classifier_bad_input(model, cells, kwargs, match):
    with pytest.raises(CourseInputError, match=match):
        ft.cell_classifier(model, cells, progress=False, **kwargs)


def test_cell_classifier_single_class_and_tiny_class(model, cells):
    healthy = cells.filter(lambda r: r["state"] == "healthy")
    with pytest.raises(CourseInputError, match="single class"):
        ft.cell_classifier(model, healthy, "state", progress=False)
    one_sick = datasets.concatenate_datasets([healthy, cells.select([119])])
    with pytest.raises(CourseInputError, match=r"\['diseased'\] have fewer than 2 cells"):
        ft.cell_classifier(model, one_sick, "state", progress=False)
    # groups: a class seen in one donor only cannot be held out by donor
    with pytest.raises(CourseInputError, match="Cannot hold out whole"):
        small = cells.filter(lambda r: r["donor"] in ("H1", "F1"))
        ft.cell_classifier(model, small, "state", group_key="donor", progress=False)


def test_cell_classifier_label_count_mismatch(cell_result, cells):
    three = cells.map(lambda r, i: {"state": ["a", "b", "c"][i % 3]}, with_indices=True)
    with pytest.raises(CourseInputError, match="already a BertForSequenceClassification "
                                               "with 2 labels"):
        ft.cell_classifier(cell_result.model, three, "state", progress=False)
    renamed = cells.map(lambda r: {"state": "sick" if r["state"] == "diseased" else "well"})
    with pytest.raises(CourseInputError, match="already a classifier for the classes"):
        ft.cell_classifier(cell_result.model, renamed, "state", progress=False)


def test_cell_classifier_rejects_non_models(cells):
    with pytest.raises(CourseInputError, match="Geneformer-family BERT model"):
        ft.cell_classifier("teaching", cells, "state", progress=False)
    with pytest.raises(CourseInputError, match="input_ids"):
        ft.cell_classifier(_tiny_model(GeneVocab.teaching()), {"state": ["a", "b"]}, "state")


# --------------------------------------------------------------------------------------------
# fine-tuned models in the rest of the package
# --------------------------------------------------------------------------------------------
def test_perturbation_on_classifier_equals_mlm_with_same_encoder(cell_result, cells, vocab):
    """The perturbation of a classifier uses its encoder exactly like a masked-LM model's."""
    from course_helpers.perturb import in_silico_perturb

    clf = cell_result.model
    mlm = BertForMaskedLM(clf.config).eval()
    missing, _unexpected = mlm.bert.load_state_dict(clf.bert.state_dict(), strict=False)
    assert not [k for k in missing if not k.startswith("pooler")]
    mlm.gene_vocab, mlm.model_version = vocab, "teaching"
    genes = vocab.symbols(cells[0]["input_ids"][:3])
    a = in_silico_perturb(clf, cells.select(range(4)), "delete", genes=genes, progress=False)
    b = in_silico_perturb(mlm, cells.select(range(4)), "delete", genes=genes, progress=False)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                  check_exact=False, atol=1e-6)


def test_lora_when_peft_is_installed(model, cells):
    pytest.importorskip("peft")
    res = ft.cell_classifier(model, cells, "state", group_key="donor", test_groups=["H3", "F3"],
                             lora=4, epochs=4, learning_rate=5e-3, batch_size=8, progress=False)
    clf = res.model
    assert type(clf) is BertForSequenceClassification  # merged back: a plain classifier
    assert not any("lora" in n for n, _ in clf.named_parameters())
    sd = model.bert.state_dict()
    # LoRA changes the adapted projections only; embeddings and feed-forward stay pretrained
    assert torch.equal(clf.bert.embeddings.word_embeddings.weight, sd["embeddings.word_embeddings.weight"])
    assert torch.equal(clf.bert.encoder.layer[0].intermediate.dense.weight,
                       sd["encoder.layer.0.intermediate.dense.weight"])
    assert not torch.equal(clf.bert.encoder.layer[0].attention.self.query.weight,
                           sd["encoder.layer.0.attention.self.query.weight"])
    assert res.accuracy >= 0.8, res.metrics


def test_lora_without_peft_says_how_to_install(model, cells, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_peft(name, *a, **k):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("no peft")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(CourseInputError, match="pip install 'course_helpers\\[finetune\\]'"):
        ft.cell_classifier(model, cells, "state", lora=4, progress=False)


def test_new_classifier(model):
    clf = ft.new_classifier(model, ["healthy", "diseased"])
    assert isinstance(clf, BertForSequenceClassification)
    assert clf.config.id2label == {0: "healthy", 1: "diseased"} and clf.gene_vocab is model.gene_vocab
    tok = ft.new_classifier(model, ["a", "b", "c"], task="gene")
    assert isinstance(tok, BertForTokenClassification) and tok.config.num_labels == 3
    assert torch.equal(tok.bert.embeddings.word_embeddings.weight,
                       model.bert.embeddings.word_embeddings.weight)
    with pytest.raises(CourseInputError, match="task must be"):
        ft.new_classifier(model, ["a", "b"], task="cells")
    with pytest.raises(CourseInputError, match="at least two different"):
        ft.new_classifier(model, ["a", "a"])


def test_training_has_one_patch_point(model, cells):
    """Chapter 5 checks that bad input fails before training: it patches training._train."""
    from unittest import mock

    with mock.patch("course_helpers.finetune.training._train",
                    side_effect=RuntimeError("training started")) as train:
        with pytest.raises(CourseInputError):
            ft.cell_classifier(model, cells, "disease", progress=False)
        assert train.call_count == 0
        with pytest.raises(RuntimeError, match="training started"):
            ft.cell_classifier(model, cells, "state", group_key="donor", test_groups=["H3", "F3"],
                               **FAST)
        assert train.call_count == 1
