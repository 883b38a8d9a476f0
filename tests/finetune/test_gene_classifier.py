"""Tests for course_helpers.finetune.gene_classifier on a tiny model and toy cells.

The model is a 2-layer BERT with the teaching vocabulary and hidden size 32. A gene's class decides
whether it sits at the top or at the bottom of the cells.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")

from transformers import (
    BertForTokenClassification,
)

from course_helpers import finetune as ft
from course_helpers._utils import CourseInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gene_task(vocab, gene_tokens):
    """"top" genes always sit in the first positions of a cell, "bottom" genes in the last."""
    rng = np.random.default_rng(1)
    toks = gene_tokens(vocab, 140)
    top, bottom, filler = toks[:20], toks[20:40], toks[40:]
    rows = {"input_ids": [], "length": []}
    for _ in range(80):
        ids = (list(rng.choice(top, 4, replace=False)) + list(rng.choice(filler, 10, replace=False))
               + list(rng.choice(bottom, 4, replace=False)))
        rows["input_ids"].append([int(t) for t in ids])
        rows["length"].append(len(ids))
    sym = vocab.symbols(top + bottom)
    labels = {s: "top" for s in sym[:20]} | {s: "bottom" for s in sym[20:]}
    return datasets.Dataset.from_dict(rows), labels


@pytest.fixture(scope="module")
def gene_result(model, gene_task):
    ds, labels = gene_task
    return ft.gene_classifier(model, ds, labels, n_splits=4, epochs=3, learning_rate=3e-3,
                              batch_size=8, progress=False)


def test_gene_classifier_cross_validates_over_genes(gene_result, gene_task, gene_tokens):
    _ds, labels = gene_task
    res = gene_result
    p = res.predictions
    assert len(p) == 40 and p["symbol"].is_unique and set(p["symbol"]) == set(labels)
    assert sorted(p["fold"].unique()) == [0, 1, 2, 3]
    assert p.groupby("fold").size().tolist() == [10, 10, 10, 10]
    assert (p.groupby("fold")["true"].nunique() == 2).all()  # stratified
    assert (p["true"] == p["symbol"].map(labels)).all()
    assert p["gene"].str.startswith("ENSG").all()
    np.testing.assert_allclose(p[["p_bottom", "p_top"]].sum(1), 1.0, atol=1e-5)
    assert (p["n_cells"] > 0).all()
    m = res.metrics
    assert list(m.index) == [0, 1, 2, 3, "mean"]
    assert (m.loc[[0, 1, 2, 3], "n_test_genes"] == 10).all()
    assert (m.loc[[0, 1, 2, 3], "n_train_genes"] == 30).all()
    assert m.loc["mean", "roc_auc"] == pytest.approx(m.loc[[0, 1, 2, 3], "roc_auc"].mean())
    from sklearn.metrics import roc_auc_score

    for k in range(4):
        sub = p[p["fold"] == k]
        assert m.loc[k, "roc_auc"] == pytest.approx(
            roc_auc_score(sub["true"] == "top", sub["p_top"]))
    assert res.roc_auc > 0.9, m
    assert res.positive == "top" and len(res.models) == 4
    assert all(isinstance(x, BertForTokenClassification) for x in res.models)
    assert list(res.history.columns) == ["fold", "epoch", "train_loss"]


def test_gene_classifier_roc_curve(gene_result):
    roc = gene_result.roc_curve()
    assert list(roc.columns) == ["fold", "fpr", "tpr", "threshold", "auc"]
    assert set(roc["fold"].astype(str)) == {"0", "1", "2", "3", "all"}
    pooled = roc[roc["fold"] == "all"]
    assert pooled["fpr"].iloc[0] == 0 and pooled["tpr"].iloc[-1] == 1
    assert pooled["fpr"].is_monotonic_increasing
    flipped = gene_result.roc_curve(positive="bottom")  # scored by p_bottom = 1 - p_top
    a = pooled["auc"].iloc[0]
    assert flipped[flipped["fold"] == "all"]["auc"].iloc[0] == pytest.approx(a)
    assert len(flipped) == len(roc)
    with pytest.raises(CourseInputError, match="not one of the classes"):
        gene_result.roc_curve(positive="middle")


def test_gene_classifier_is_deterministic(model, gene_task, gene_result):
    ds, labels = gene_task
    again = ft.gene_classifier(model, ds, labels, n_splits=4, epochs=3, learning_rate=3e-3,
                               batch_size=8, progress=False)
    pd.testing.assert_frame_equal(again.predictions, gene_result.predictions)


def test_gene_classifier_bad_input(model, gene_task, gene_tokens):
    ds, labels = gene_task
    with pytest.raises(CourseInputError, match=r"not in the model's vocabulary: \['NOTAGENE'\]"):
        ft.gene_classifier(model, ds, {**labels, "NOTAGENE": "top"}, progress=False)
    with pytest.raises(CourseInputError, match="single class"):
        ft.gene_classifier(model, ds, {g: "top" for g in labels}, progress=False)
    few = dict(list(labels.items())[:22])  # 20 top, 2 bottom
    with pytest.raises(CourseInputError, match="fewer genes than n_splits=5"):
        ft.gene_classifier(model, ds, few, progress=False)
    absent = model.gene_vocab.symbols(gene_tokens(model.gene_vocab, 300)[250:251])[0]
    with pytest.raises(CourseInputError, match="occur in no cell"):
        ft.gene_classifier(model, ds, {**labels, absent: "top"}, n_splits=2, progress=False)
    with pytest.raises(CourseInputError, match="non-empty mapping"):
        ft.gene_classifier(model, ds, ["A", "B"], progress=False)


def test_training_has_one_patch_point(model, gene_task):
    """Chapter 5 patches training._train; gene_classifier goes through it too."""
    from unittest import mock

    ds, labels = gene_task
    with mock.patch("course_helpers.finetune.training._train",
                    side_effect=RuntimeError("training started")) as train, \
            pytest.raises(RuntimeError, match="training started"):
        ft.gene_classifier(model, ds, labels, n_splits=2, progress=False)
    assert train.call_count == 1
