"""Tests for course_helpers.finetune.freezing, on the tiny model and toy cells of conftest.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")

from transformers import (
    BertForSequenceClassification,
)

from course_helpers import finetune as ft
from course_helpers._utils import CourseInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_freeze_layers_keeps_frozen_weights(model, cells, fast):
    res = ft.cell_classifier(model, cells, "state", group_key="donor", test_groups=["H3", "F3"],
                             freeze_layers=1, **fast)
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


def test_freeze_reference_mode_trains_embeddings(vocab, tiny_model):
    clf = BertForSequenceClassification(tiny_model(vocab).config)
    counts = ft.freeze(clf, 1, freeze_embeddings=False)
    assert all(p.requires_grad for p in clf.bert.embeddings.parameters())
    assert not any(p.requires_grad for p in clf.bert.encoder.layer[0].parameters())
    assert counts["trainable"] < counts["total"]
    head_only = BertForSequenceClassification(tiny_model(vocab).config)
    c2 = ft.freeze(head_only, 2)
    trainable = {n for n, p in head_only.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("classifier", "bert.pooler")) for n in trainable)
    assert c2["trainable"] < counts["trainable"]
    with pytest.raises(CourseInputError, match="from 0 .* to 2"):
        ft.freeze(head_only, 3)
