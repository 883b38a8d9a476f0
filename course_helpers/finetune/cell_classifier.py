"""Cell classification: fine-tune on labelled cells, hold out cells or whole donors, score the
held-out part.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from ..model import pick_device
from . import training  # training._train: one place to patch in checks that no training starts
from .freezing import freeze
from .heads import _make_classifier
from .inference import _logits
from .inputs import (
    CELL_DEFAULTS,
    _as_dataset,
    _check_int,
    _check_training,
    _column,
    _encoder_owner,
    _require_accelerate,
)
from .lora import _apply_lora
from .saving import save_classifier
from .training import _finish


@dataclass
class CellClassifierResult:
    """What :func:`cell_classifier` returns.

    Attributes
    ----------
    model
        The fine-tuned ``BertForSequenceClassification`` (eval mode) with ``gene_vocab``,
        ``model_version`` and the class names in ``model.config.id2label``.
    metrics
        Held-out scores: row ``"overall"`` (``accuracy``, ``macro_f1``, ``n_cells``) and one row
        per class (``precision``, ``recall``, ``f1``, ``n_cells``).
    predictions
        One row per held-out cell: ``index`` (row in the input dataset), ``cell_id`` and the group
        where available, ``true``, ``predicted`` and ``p_<class>`` probabilities.
    history
        Training and held-out loss per epoch (``train_loss``, ``eval_loss``). The held-out cells
        are only watched, never used to pick a model.
    classes, train_groups, test_groups, train_seconds, settings
        Class order, the groups in each part (``None`` without ``group_key``), wall time of
        training, and the arguments used.

    Examples
    --------
    Normally made by :func:`cell_classifier`; here by hand, to show what it offers:

    >>> preds = pd.DataFrame({"true": ["a", "a", "b"], "predicted": ["a", "b", "b"]})
    >>> metrics = pd.DataFrame({"accuracy": [2 / 3], "macro_f1": [0.667]}, index=["overall"])
    >>> res = CellClassifierResult(model=None, metrics=metrics, predictions=preds,
    ...                            history=pd.DataFrame(), classes=["a", "b"])
    >>> res.confusion_matrix().values.tolist()
    [[1, 1], [0, 1]]
    >>> float(res.confusion_matrix(normalize=True).loc["a", "b"]), round(res.accuracy, 3), res.macro_f1
    (0.5, 0.667, 0.667)
    """

    model: object
    metrics: pd.DataFrame
    predictions: pd.DataFrame
    history: pd.DataFrame
    classes: list[str]
    train_groups: list | None = None
    test_groups: list | None = None
    train_seconds: float = float("nan")
    settings: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Held-out accuracy."""
        return float(self.metrics.loc["overall", "accuracy"])

    @property
    def macro_f1(self) -> float:
        """Held-out macro-averaged F1."""
        return float(self.metrics.loc["overall", "macro_f1"])

    def confusion_matrix(self, normalize: bool = False) -> pd.DataFrame:
        """Held-out confusion matrix: rows = true class, columns = predicted class."""
        cm = pd.crosstab(pd.Categorical(self.predictions["true"], self.classes),
                         pd.Categorical(self.predictions["predicted"], self.classes),
                         dropna=False).astype(float if normalize else int)
        cm.index.name, cm.columns.name = "true", "predicted"
        if normalize:
            cm = cm.div(cm.sum(1).replace(0, np.nan), axis=0)
        return cm

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write the classifier folder (see :func:`save_classifier`)."""
        return save_classifier(self.model, path, overwrite=overwrite, extra={
            "task": "cell_classifier", **{k: self.settings[k] for k in
                                          ("label_key", "group_key") if k in self.settings},
            "test_groups": [str(g) for g in self.test_groups] if self.test_groups else None,
            "heldout_accuracy": self.accuracy,
        })

    def __repr__(self) -> str:
        held = f", held-out groups {self.test_groups}" if self.test_groups else ""
        return (f"CellClassifierResult(classes={self.classes}, accuracy={self.accuracy:.3f}, "
                f"macro_f1={self.macro_f1:.3f}, n_test={len(self.predictions)}{held})")


def _clean_labels(values, label_key) -> list[str]:
    bad = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and np.isnan(v))]
    if bad:
        raise CourseInputError(
            f"{len(bad)} cell(s) have no value in {label_key!r} (e.g. row {bad[0]}). Fix: remove "
            "them from the dataset first (dataset.filter(...)) or fill the labels in."
        )
    return [str(v) for v in values]


def _class_order(labels: list[str], classes) -> list[str]:
    present = sorted(set(labels))
    if classes is None:
        return present
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise CourseInputError(f"classes={classes} repeats a class. Fix: list each class once.")
    missing = sorted(set(present) - set(classes))
    if missing:
        raise CourseInputError(
            f"The labels contain {missing}, which are not in classes={classes}. Fix: add them to "
            "classes, or filter those cells out first."
        )
    return classes


def _split_cells(labels: np.ndarray, groups: np.ndarray | None, test_groups, test_size: float,
                 seed: int, classes: list[str], group_key: str | None):
    """Indices of training and held-out cells, and the groups of each part."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    if groups is None:
        if test_groups is not None:
            raise CourseInputError(
                "test_groups was given without group_key. Fix: pass group_key='donor' (the "
                "dataset column that holds the groups) together with test_groups."
            )
        counts = pd.Series(labels).value_counts()
        small = counts[counts < 2]
        if len(small):
            raise CourseInputError(
                f"Class(es) {list(small.index)} have fewer than 2 cells, too few to put cells in "
                "both the training and the held-out part. Fix: add cells of that class or drop it."
            )
        from sklearn.model_selection import train_test_split

        n_test = max(round(test_size * n), len(counts))
        if n - n_test < len(counts):
            raise CourseInputError(
                f"test_size={test_size} leaves too few training cells ({n - n_test}) for "
                f"{len(counts)} classes. Fix: use a smaller test_size or more cells."
            )
        train, test = train_test_split(np.arange(n), test_size=n_test, stratify=labels,
                                       random_state=seed)
        return np.sort(train), np.sort(test), None, None
    group_names = sorted(set(groups.tolist()), key=str)
    if test_groups is not None:
        if isinstance(test_groups, (str, bytes)) or not isinstance(test_groups, (Sequence, set,
                                                                                 np.ndarray)):
            test_groups = [test_groups]
        wanted = [str(g) for g in test_groups]
        absent = [g for g in wanted if g not in {str(x) for x in group_names}]
        if absent:
            raise CourseInputError(
                f"Held-out group(s) {absent} do not occur in {group_key!r} (groups present: "
                f"{[str(g) for g in group_names]}). Fix: choose test_groups from those."
            )
        held = sorted(set(wanted))
    else:
        # stratified over groups: each group counts for its majority class
        major = pd.Series(labels).groupby(groups.astype(str)).agg(lambda s: s.value_counts().index[0])
        held = []
        for c in classes:
            gs = sorted(major[major == c].index.tolist())
            if len(gs) >= 2:
                k = max(1, round(test_size * len(gs)))
                held += list(rng.choice(gs, size=min(k, len(gs) - 1), replace=False))
        if not held:
            raise CourseInputError(
                f"Cannot hold out whole {group_key!r} groups: no class has cells from at least 2 "
                "groups. Fix: pass test_groups=[...] explicitly, or leave group_key=None to split "
                "cells at random."
            )
        held = sorted(set(held))
    is_test = np.isin(groups.astype(str), held)
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if len(train) == 0:
        raise CourseInputError(
            f"Holding out {held} leaves no training cells. Fix: hold out fewer groups."
        )
    train_classes = set(labels[train].tolist())
    missing = [c for c in classes if c not in train_classes]
    if missing:
        raise CourseInputError(
            f"After holding out {group_key} {held}, class(es) {missing} have no training cells "
            f"(all their cells are in the held-out groups). Fix: hold out fewer groups, or groups "
            "that leave every class some training cells."
        )
    train_groups = sorted({str(g) for g in groups[train]})
    return train, test, train_groups, held


def _classification_metrics(true: np.ndarray, pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(true, pred, labels=classes, zero_division=0)
    rows = {"overall": {"accuracy": accuracy_score(true, pred),
                        "macro_f1": f1_score(true, pred, labels=classes, average="macro",
                                             zero_division=0),
                        "n_cells": len(true)}}
    for i, c in enumerate(classes):
        rows[c] = {"precision": p[i], "recall": r[i], "f1": f[i], "n_cells": int(s[i])}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df = df[["accuracy", "macro_f1", "precision", "recall", "f1", "n_cells"]]
    df["n_cells"] = df["n_cells"].astype(int)
    return df


def cell_classifier(
    model,
    dataset,
    label_key: str,
    *,
    group_key: str | None = None,
    test_groups=None,
    test_size: float = 0.2,
    freeze_layers: int = 0,
    freeze_embeddings: bool | None = None,
    epochs: float = CELL_DEFAULTS["epochs"],
    learning_rate: float = CELL_DEFAULTS["learning_rate"],
    batch_size: int = CELL_DEFAULTS["batch_size"],
    classes: Sequence[str] | None = None,
    lora=None,
    device=None,
    seed: int = 0,
    progress: bool = True,
) -> CellClassifierResult:
    """Fine-tune a pretrained model to classify cells, and score it on held-out cells.

    A ``BertForSequenceClassification`` is built on a copy of ``model``'s encoder (the model
    you pass is not changed), trained with the Hugging Face ``Trainer`` on the training cells,
    and scored on the held-out cells. As in the reference, the classification head reads the
    first position of the last layer (for V1 that is the cell's top-ranked gene; for V2 the
    ``<cls>`` token) through BERT's pooler.

    Parameters
    ----------
    model
        A pretrained model from :func:`course_helpers.model.load_model` (a fine-tuned cell
        classifier with the same classes is trained further).
    dataset
        Tokenized cells (``datasets.Dataset`` with ``input_ids`` and the label column; tokenize
        with ``cell_attrs=("cell_id", label_key, group_key)``).
    label_key
        Column with each cell's class (e.g. ``"state"``).
    group_key
        Column with groups that must not be split (e.g. ``"donor"``): a group is entirely in the
        training part or entirely held out.
    test_groups
        Groups to hold out (with ``group_key``). ``None``: about ``test_size`` of the groups of
        each class, chosen with ``seed``.
    test_size
        Fraction of cells (no ``group_key``) or of groups per class held out.
    freeze_layers, freeze_embeddings
        Freeze the first ``freeze_layers`` encoder layers (and the embeddings): see :func:`freeze`.
    epochs, learning_rate, batch_size
        Training settings (linear decay after a 10 % warm-up, weight decay 0.001, as the
        reference). Defaults suit the teaching model on a CPU; for Geneformer V1-10M the
        reference uses ``learning_rate=5e-5``, ``batch_size=12``, 10 epochs.
    classes
        Order of the classes (default: sorted). The first is class 0.
    lora
        ``None`` (train the whole model), a LoRA rank (``8``) or a dict of ``peft.LoraConfig``
        settings: only low-rank adapters and the head are trained, then merged back so the result
        is a plain BERT classifier. Needs ``peft``.
    device
        ``None`` (GPU when available), ``"cpu"``, ``"cuda"``, ...
    seed
        Seeds the split, the head's initialisation, the data order and dropout: the same seed
        gives the same model and scores.
    progress
        Show a progress bar over the training steps.

    Returns
    -------
    CellClassifierResult
        ``.model``, ``.metrics``, ``.predictions``, ``.history``, ``.save(path)``.

    Raises
    ------
    CourseInputError
        Missing label or group column, a single class, a class with too few cells (or groups) for
        the split, held-out groups that do not occur, a classifier whose label count differs.

    Examples
    --------
    A tiny run (1 cardiomyocyte per donor, 1 epoch) that only shows the calls and the shape of
    the result; a real run uses all cardiomyocytes and the default 3 epochs (~10-20 s on a CPU).

    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> cm = ch.data.load_tissue("chapter")
    >>> cm = cm[cm.obs.cell_type == "cardiomyocyte"]
    >>> cm = cm[(cm.obs.groupby("donor", observed=True).cumcount() < 1).to_numpy()].copy()
    >>> ds = ch.tokenize.tokenize(cm, model.gene_vocab, progress=False,
    ...                           cell_attrs=("cell_id", "state", "donor"))
    >>> res = ch.finetune.cell_classifier(model, ds, "state", group_key="donor",
    ...                                   test_groups=["H3", "F3"], epochs=1, progress=False)
    >>> res.metrics.index.tolist(), len(res.predictions)
    (['overall', 'diseased', 'healthy'], 2)
    >>> bool(0 <= res.metrics.loc["overall", "accuracy"] <= 1)
    True
    """
    _encoder_owner(model)
    ds = _as_dataset(dataset)
    labels = np.asarray(_clean_labels(
        _column(ds, label_key, "label", f"tokenize with cell_attrs=('cell_id', {label_key!r}, "
                "...) so the labels travel with the cells."), label_key), dtype=object)
    classes = _class_order(labels.tolist(), classes)
    if len(classes) < 2:
        raise CourseInputError(
            f"Column {label_key!r} holds a single class ({classes[0]!r}): there is nothing to "
            "tell apart. Fix: include cells of at least two classes."
        )
    groups = None
    if group_key is not None:
        groups = np.asarray([str(g) for g in _column(
            ds, group_key, "group", f"tokenize with cell_attrs=(..., {group_key!r}) or leave "
            "group_key=None.")], dtype=object)
    try:
        test_size = float(test_size)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"test_size must be a number, got {test_size!r}.") from err
    if not 0 < test_size < 1:
        raise CourseInputError(f"test_size must be between 0 and 1, got {test_size}.")
    epochs, learning_rate, batch_size = _check_training(epochs, learning_rate, batch_size)
    seed = _check_int(seed, "seed", 0)
    if lora is not None and freeze_layers:
        raise CourseInputError(
            "Pass either lora=... or freeze_layers=..., not both: LoRA already keeps the "
            "pretrained weights fixed and trains small adapters."
        )
    train, test, train_groups, held = _split_cells(labels, groups, test_groups, test_size, seed,
                                                   classes, group_key)
    dev = pick_device(device)
    _require_accelerate()

    clf = _make_classifier(model, "cell", classes, seed)
    freeze(clf, freeze_layers, freeze_embeddings)
    trainee = _apply_lora(clf, lora, "cell") if lora is not None else clf
    class_id = {c: i for i, c in enumerate(classes)}
    seqs = [list(x) for x in ds["input_ids"]]

    def rows(idx):
        return {"input_ids": [seqs[i] for i in idx],
                "labels": [class_id[labels[i]] for i in idx],
                "length": [len(seqs[i]) for i in idx]}

    test_seqs = [seqs[i] for i in test]
    test_y = np.asarray([class_id[labels[i]] for i in test])
    last = {}

    def held_out_loss(m):  # also keeps the last epoch's probabilities as the predictions
        p = _logits(m, test_seqs, max(batch_size, 32), False, "")
        last["probs"] = p
        return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), test_y], 1e-12, None))))

    trained, history, seconds = training._train(
        trainee, rows(train), held_out_loss, task="cell", epochs=epochs,
        learning_rate=learning_rate, batch_size=batch_size, seed=seed, device=dev,
        progress=progress, desc="fine-tuning (cells)")
    final = _finish(trained, clf, lora)
    if lora is not None or "probs" not in last:  # merged weights: predict again to be exact
        last["probs"] = _logits(final, test_seqs, max(batch_size, 32), False, "")
    probs = last["probs"]
    pred = np.asarray([classes[j] for j in probs.argmax(1)], dtype=object)
    preds = pd.DataFrame({"index": test})
    if "cell_id" in ds.column_names:
        all_ids = ds["cell_id"]
        preds["cell_id"] = [all_ids[int(i)] for i in test]
    if groups is not None:
        preds[group_key] = groups[test]
    preds["true"] = labels[test]
    preds["predicted"] = pred
    for j, c in enumerate(classes):
        preds[f"p_{c}"] = probs[:, j]
    metrics = _classification_metrics(labels[test].astype(str), pred.astype(str), classes)
    settings = {"label_key": label_key, "group_key": group_key, "test_size": test_size,
                    "freeze_layers": int(freeze_layers), "freeze_embeddings": freeze_embeddings,
                    "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
                    "lora": lora, "seed": seed, "device": str(dev), "n_train": len(train), "n_test": len(test)}
    return CellClassifierResult(model=final, metrics=metrics, predictions=preds, history=history,
                                classes=classes, train_groups=train_groups, test_groups=held,
                                train_seconds=seconds, settings=settings)
