"""Checks for chapter 4 (Transfer learning for network biology).

Every check recomputes the expected answer from the objects it is given (held-out predictions, the
pretrained model), never from a learner's intermediate variables.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._common import _as_number, _expected, _feedback


# --------------------------------------------------------------------------------------------
# exercise 1: accuracy per held-out donor
# --------------------------------------------------------------------------------------------
def reference_donor_accuracy(predictions: pd.DataFrame, group_key: str = "donor") -> pd.Series:
    """Fraction of correctly classified held-out cells per group (e.g. donor)."""
    correct = predictions["true"].astype(str) == predictions["predicted"].astype(str)
    return correct.groupby(predictions[group_key].astype(str)).mean().rename("accuracy")


def check_donor_accuracy(answer, predictions: pd.DataFrame, group_key: str = "donor") -> bool:
    """Check a mapping donor -> accuracy (fraction of that donor's held-out cells predicted right).

    Examples
    --------
    >>> p = pd.DataFrame({"donor": ["A", "A", "B"], "true": ["x", "y", "y"],
    ...                   "predicted": ["x", "x", "y"]})
    >>> check_donor_accuracy({"A": 0.5, "B": 1.0}, p)
    Correct! Held-out accuracy per donor: A 0.500, B 1.000.
    True
    """
    go, expected = _expected(answer, "a dict (or Series) donor -> accuracy, e.g. {'H3': 0.9, "
                             "'F3': 0.8}.", reference_donor_accuracy, (predictions, group_key),
                             "the accuracies ({err}); pass the classifier's .predictions table.")
    if not go:
        return False
    if isinstance(answer, pd.DataFrame) and answer.shape[1] == 1:
        answer = answer.iloc[:, 0]
    if not isinstance(answer, (Mapping, pd.Series)):
        return _feedback(False, "", "the answer should map each held-out donor to a number, e.g. "
                         "a dict {'H3': 0.9, ...} or a pandas Series indexed by donor.")
    got = {str(k): v for k, v in dict(answer).items()}
    if set(got) != set(expected.index):
        return _feedback(False, "", f"expected one value for each held-out donor "
                         f"{sorted(expected.index)}, got keys {sorted(got)}.")
    try:
        vals = {k: float(v) for k, v in got.items()}
    except (TypeError, ValueError):
        return _feedback(False, "", "every value should be a number between 0 and 1.")
    if any(v > 1.0 for v in vals.values()) and all(
            abs(vals[k] / 100 - expected[k]) < 1e-3 for k in vals):
        return _feedback(False, "", "these look like percentages; give fractions (0-1).")
    wrong = [k for k in expected.index if abs(vals[k] - expected[k]) > 1e-3]
    if not wrong:
        text = ", ".join(f"{k} {expected[k]:.3f}" for k in expected.index)
        return _feedback(True, f"Held-out accuracy per donor: {text}.", "")
    k = wrong[0]
    n_cells = int((predictions[group_key].astype(str) == k).sum())
    return _feedback(False, "", f"donor {k}: expected {expected[k]:.3f} (over its {n_cells} "
                     f"held-out cells), got {vals[k]:.3f}. Compare 'true' with 'predicted' "
                     "within each donor.")


# --------------------------------------------------------------------------------------------
# exercise 2: trainable parameters after freezing
# --------------------------------------------------------------------------------------------
def reference_trainable_parameters(model, freeze_layers: int, num_labels: int = 2) -> int:
    """Trainable parameters of a new cell classifier on ``model`` with ``freeze_layers`` frozen."""
    from ..finetune import freeze, new_classifier

    clf = new_classifier(model, [f"class{i}" for i in range(num_labels)])
    return freeze(clf, freeze_layers)["trainable"]


def check_trainable_parameters(answer, model, freeze_layers: int, num_labels: int = 2) -> bool:
    """Check the number of parameters still trained when ``freeze_layers`` layers are frozen."""
    go, expected = _expected(answer, "an integer: how many parameters are still trained.",
                             reference_trainable_parameters, (model, freeze_layers, num_labels),
                             "the count ({err}); pass the pretrained model and the number of "
                             "frozen layers.")
    if not go:
        return False
    got = _as_number(answer, int, "the answer should be one integer (a parameter count).")
    if got is None:
        return False
    if got == expected:
        return _feedback(True, f"{expected:,} parameters are trained with {freeze_layers} "
                         "frozen layer(s) (and frozen embeddings).", "")
    from ..finetune import new_classifier

    clf = new_classifier(model, [f"class{i}" for i in range(num_labels)])
    total = sum(p.numel() for p in clf.parameters())
    emb = sum(p.numel() for p in clf.bert.embeddings.parameters())
    if got == total:
        return _feedback(False, "", "that is every parameter of the classifier; count only those "
                         "with requires_grad=True after freezing.")
    if got == expected + emb:
        return _feedback(False, "", "close: the course freezes the embeddings too whenever "
                         "freeze_layers > 0 (see ch.finetune.freeze).")
    return _feedback(False, "", f"expected {expected:,}. Build the classifier, call "
                     "ch.finetune.freeze(clf, n) and sum p.numel() over parameters with "
                     "p.requires_grad.")


# --------------------------------------------------------------------------------------------
# exercise 3: pooled ROC AUC of the gene classifier
# --------------------------------------------------------------------------------------------
def reference_pooled_auc(predictions: pd.DataFrame, positive: str) -> float:
    """ROC AUC over all held-out genes of all folds at once, scored by ``p_<positive>``."""
    from sklearn.metrics import roc_auc_score

    y = (predictions["true"].astype(str) == str(positive)).to_numpy()
    return float(roc_auc_score(y, predictions[f"p_{positive}"].to_numpy()))


def check_pooled_auc(answer, predictions: pd.DataFrame, positive: str) -> bool:
    """Check the ROC AUC of the held-out genes pooled over the folds."""
    go, expected = _expected(answer, "a number between 0 and 1 (the pooled ROC AUC).",
                             reference_pooled_auc, (predictions, positive),
                             "the AUC ({err}); pass the gene classifier's .predictions and the "
                             "positive class.")
    if not go:
        return False
    got = _as_number(answer, float, "the answer should be one number.")
    if got is None:
        return False
    if abs(got - expected) < 1e-6:
        return _feedback(True, f"pooled ROC AUC = {expected:.3f} over {len(predictions)} "
                         "held-out genes.", "")
    if abs(got - (1 - expected)) < 1e-6:
        return _feedback(False, "", f"that is 1 - AUC: score the genes by p_{positive}, the "
                         f"probability of the positive class {positive!r}.")
    folds = predictions.groupby("fold").apply(
        lambda d: reference_pooled_auc(d, positive) if d["true"].nunique() == 2 else np.nan,
        include_groups=False)
    if abs(got - float(folds.mean())) < 1e-6:
        return _feedback(False, "", "that is the mean of the per-fold AUCs; pool the genes of "
                         "all folds into one ROC AUC instead.")
    return _feedback(False, "", f"expected {expected:.3f}: sklearn.metrics.roc_auc_score(true == "
                     f"{positive!r}, p_{positive}) over every row of .predictions.")
