"""Tests for course_helpers.finetune.saving and continued training, on the tiny model and toy cells of conftest.py."""
from __future__ import annotations

import json

import numpy as np
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
from course_helpers.vocab import GeneVocab

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
