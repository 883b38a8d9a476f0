"""Tests for course_helpers.finetune.heads, on the tiny model and toy cells of conftest.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")

from transformers import (
    BertForSequenceClassification,
    BertForTokenClassification,
)

from course_helpers import finetune as ft
from course_helpers._utils import CourseInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
