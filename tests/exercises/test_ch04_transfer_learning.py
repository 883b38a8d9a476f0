"""Tests for the chapter 4 check functions (small synthetic inputs, a tiny model)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_helpers import exercises
from course_helpers.exercises import ch04_transfer_learning as ex


@pytest.fixture()
def preds():
    return pd.DataFrame({"donor": ["H3"] * 4 + ["F3"] * 4,
                         "true": ["healthy"] * 4 + ["diseased"] * 4,
                         "predicted": ["healthy", "healthy", "healthy", "diseased",
                                       "diseased", "healthy", "diseased", "diseased"]})


def test_donor_accuracy(preds, capsys):
    ref = ex.reference_donor_accuracy(preds)
    assert ref.to_dict() == {"F3": 0.75, "H3": 0.75}
    assert ex.check_donor_accuracy({"H3": 0.75, "F3": 0.75}, preds)
    assert ex.check_donor_accuracy(ref, preds)
    assert not ex.check_donor_accuracy(None, preds)
    assert "Not answered yet" in capsys.readouterr().out
    assert not ex.check_donor_accuracy({"H3": 75, "F3": 75}, preds)
    assert "percentages" in capsys.readouterr().out
    assert not ex.check_donor_accuracy({"H3": 0.75}, preds)
    assert "each held-out donor" in capsys.readouterr().out
    assert not ex.check_donor_accuracy({"H3": 0.75, "F3": 0.5}, preds)
    assert "donor F3: expected 0.750" in capsys.readouterr().out
    assert not ex.check_donor_accuracy(0.75, preds)
    assert not ex.check_donor_accuracy({"H3": 0.75, "F3": 0.75}, pd.DataFrame())
    # re-exported for the book
    assert exercises.check_donor_accuracy is ex.check_donor_accuracy


def test_trainable_parameters(capsys):
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertForMaskedLM

    from course_helpers.vocab import GeneVocab

    vocab = GeneVocab.teaching()
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=16,
                                       num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=32))
    model.gene_vocab, model.model_version = vocab, "teaching"
    n1 = ex.reference_trainable_parameters(model, 1)
    layer = sum(p.numel() for p in model.bert.encoder.layer[1].parameters())
    head = 16 * 16 + 16 + 16 * 2 + 2  # pooler + classifier
    assert n1 == layer + head
    assert ex.reference_trainable_parameters(model, 2) == head
    assert ex.check_trainable_parameters(n1, model, 1)
    assert not ex.check_trainable_parameters(None, model, 1)
    emb = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert not ex.check_trainable_parameters(n1 + emb, model, 1)
    assert "embeddings too" in capsys.readouterr().out
    assert not ex.check_trainable_parameters("many", model, 1)
    assert not ex.check_trainable_parameters(5, "not a model", 1)


def test_pooled_auc(capsys):
    rng = np.random.default_rng(0)
    true = np.array(["target"] * 10 + ["other"] * 20)
    score = np.where(true == "target", 0.6, 0.4) + rng.normal(0, 0.15, 30)
    p = pd.DataFrame({"true": true, "p_target": score, "p_other": 1 - score,
                      "fold": np.arange(30) % 3})
    auc = ex.reference_pooled_auc(p, "target")
    assert 0.5 < auc <= 1
    assert ex.check_pooled_auc(auc, p, "target")
    assert not ex.check_pooled_auc(1 - auc, p, "target")
    assert "1 - AUC" in capsys.readouterr().out
    mean_fold = np.mean([ex.reference_pooled_auc(p[p.fold == k], "target") for k in range(3)])
    if abs(mean_fold - auc) > 1e-6:
        assert not ex.check_pooled_auc(mean_fold, p, "target")
        assert "mean of the per-fold" in capsys.readouterr().out
    assert not ex.check_pooled_auc(None, p, "target")
    assert not ex.check_pooled_auc("high", p, "target")
