"""Tests for course_helpers.finetune.lora, on the tiny model and toy cells of conftest.py."""
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
