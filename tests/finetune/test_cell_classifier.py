"""Tests for course_helpers.finetune.cell_classifier (and fine-tuned models in the rest of the package), on the tiny model and toy cells of conftest.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")

from transformers import (
    BertForMaskedLM,
    BertForSequenceClassification,
)

from course_helpers import finetune as ft
from course_helpers._utils import CourseInputError
from course_helpers.vocab import GeneVocab

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_cell_classifier_model_keeps_vocab_labels_and_leaves_input_alone(cell_result, model, tiny_model):
    clf = cell_result.model
    assert isinstance(clf, BertForSequenceClassification)
    assert clf.config.id2label == {0: "diseased", 1: "healthy"}
    assert clf.config.label2id == {"diseased": 0, "healthy": 1}
    assert clf.gene_vocab is model.gene_vocab and clf.model_version == "teaching"
    assert not clf.training
    assert all(p.requires_grad for p in clf.parameters())
    fresh = tiny_model(model.gene_vocab)  # same seed: the weights the caller passed
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), f"{k} of the caller's model changed"
    # the encoder did move during fine-tuning
    w0 = model.bert.encoder.layer[0].attention.self.query.weight
    assert not torch.allclose(clf.bert.encoder.layer[0].attention.self.query.weight, w0)


def test_cell_classifier_is_deterministic(model, cells, cell_result, fast):
    again = ft.cell_classifier(model, cells, "state", group_key="donor",
                               test_groups=["H3", "F3"], **fast)
    pd.testing.assert_frame_equal(again.predictions, cell_result.predictions)
    pd.testing.assert_frame_equal(again.history, cell_result.history)


def test_cell_classifier_random_split_without_groups(model, cells, fast):
    res = ft.cell_classifier(model, cells, "state", test_size=0.25, **fast)
    assert len(res.predictions) == 30 and res.test_groups is None
    assert res.predictions["true"].value_counts().to_dict() == {"diseased": 15, "healthy": 15}
    assert res.predictions["index"].is_unique


def test_cell_classifier_picks_groups_per_class(model, cells, donors):
    res = ft.cell_classifier(model, cells, "state", group_key="donor", test_size=0.34,
                             epochs=1, batch_size=16, progress=False)
    held = res.test_groups
    assert len(held) == 2 and {donors[g] for g in held} == {"healthy", "diseased"}
    assert set(res.predictions["donor"]) == set(held)


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


def test_cell_classifier_rejects_non_models(cells, tiny_model):
    with pytest.raises(CourseInputError, match="Geneformer-family BERT model"):
        ft.cell_classifier("teaching", cells, "state", progress=False)
    with pytest.raises(CourseInputError, match="input_ids"):
        ft.cell_classifier(tiny_model(GeneVocab.teaching()), {"state": ["a", "b"]}, "state")


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


def test_training_has_one_patch_point(model, cells, fast):
    """Chapter 5 checks that bad input fails before training: it patches training._train."""
    from unittest import mock

    with mock.patch("course_helpers.finetune.training._train",
                    side_effect=RuntimeError("training started")) as train:
        with pytest.raises(CourseInputError):
            ft.cell_classifier(model, cells, "disease", progress=False)
        assert train.call_count == 0
        with pytest.raises(RuntimeError, match="training started"):
            ft.cell_classifier(model, cells, "state", group_key="donor", test_groups=["H3", "F3"],
                               **fast)
        assert train.call_count == 1
