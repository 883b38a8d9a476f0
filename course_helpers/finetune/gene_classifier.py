"""Gene classification: token classification cross-validated over genes."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .._utils import progress as _progress
from ..model import pick_device
from . import training  # training._train: one place to patch in checks that no training starts
from .freezing import freeze
from .heads import _make_classifier
from .inference import _logits
from .inputs import (
    _IGNORE,
    GENE_DEFAULTS,
    _as_dataset,
    _check_int,
    _check_training,
    _encoder_owner,
    _require_accelerate,
    _vocab_of,
)
from .lora import _apply_lora
from .saving import save_classifier
from .training import _finish


@dataclass
class GeneClassifierResult:
    """What :func:`gene_classifier` returns.

    Attributes
    ----------
    metrics
        One row per fold (``roc_auc`` over held-out genes, each scored by its mean probability
        over the cells it occurs in; ``token_roc_auc`` over every occurrence, as the reference
        reports; ``accuracy``; gene, cell counts and training seconds) and a ``"mean"`` row.
    predictions
        One row per labelled gene, from the fold where it was held out: ``gene`` (Ensembl ID),
        ``symbol``, ``true``, ``fold``, ``p_<class>``, ``predicted``, ``n_cells``.
    history
        Training loss per epoch and fold.
    models
        The fine-tuned ``BertForTokenClassification`` of each fold.
    classes, positive, settings
        Class order, the class scored as positive by ROC AUC (binary tasks), arguments used.

    Examples
    --------
    Normally made by :func:`gene_classifier`; here by hand, to show what it offers:

    >>> preds = pd.DataFrame({"gene": list("wxyz"), "true": ["t", "t", "o", "o"],
    ...                       "fold": [0, 1, 0, 1], "p_o": [0.2, 0.4, 0.7, 0.3],
    ...                       "p_t": [0.8, 0.6, 0.3, 0.7]})
    >>> res = GeneClassifierResult(metrics=pd.DataFrame({"roc_auc": [0.75]}, index=["mean"]),
    ...                            predictions=preds, history=pd.DataFrame(), models=[],
    ...                            classes=["o", "t"], positive="t")
    >>> res.roc_auc
    0.75
    >>> sorted(res.roc_curve().columns)[:3]
    ['auc', 'fold', 'fpr']
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    history: pd.DataFrame
    models: list
    classes: list[str]
    positive: str | None = None
    settings: dict = field(default_factory=dict)

    @property
    def roc_auc(self) -> float:
        """Mean held-out ROC AUC over the folds."""
        return float(self.metrics.loc["mean", "roc_auc"])

    def roc_curve(self, positive: str | None = None) -> pd.DataFrame:
        """ROC curve data of the held-out genes, per fold and pooled over folds.

        Parameters
        ----------
        positive
            Class treated as positive (default: :attr:`positive`, the second class of a binary
            task). Required for tasks with more than two classes (one-vs-rest).

        Returns
        -------
        pandas.DataFrame
            Columns ``fold`` (an integer, or ``"all"`` for the pooled curve), ``fpr``, ``tpr``,
            ``threshold``, ``auc`` (of that curve).
        """
        from sklearn.metrics import roc_auc_score, roc_curve

        pos = positive if positive is not None else self.positive
        if pos is None:
            raise CourseInputError(
                f"This task has {len(self.classes)} classes {self.classes}. Fix: say which one is "
                "positive, e.g. result.roc_curve(positive=...)."
            )
        if str(pos) not in self.classes:
            raise CourseInputError(f"positive={pos!r} is not one of the classes {self.classes}.")
        pos = str(pos)
        parts = []
        preds = self.predictions
        for fold, sub in [*preds.groupby("fold"), ("all", preds)]:
            y = (sub["true"] == pos).to_numpy()
            if y.all() or not y.any():
                continue
            s = sub[f"p_{pos}"].to_numpy()
            fpr, tpr, thr = roc_curve(y, s)
            parts.append(pd.DataFrame({"fold": fold, "fpr": fpr, "tpr": tpr, "threshold": thr,
                                       "auc": roc_auc_score(y, s)}))
        return pd.concat(parts, ignore_index=True)

    def save(self, path, *, fold: int = 0, overwrite: bool = False) -> Path:
        """Write one fold's classifier folder (see :func:`save_classifier`)."""
        if not 0 <= int(fold) < len(self.models):
            raise CourseInputError(f"fold must be 0..{len(self.models) - 1}, got {fold}.")
        return save_classifier(self.models[int(fold)], path, overwrite=overwrite,
                               extra={"task": "gene_classifier", "fold": int(fold)})

    def __repr__(self) -> str:
        return (f"GeneClassifierResult(classes={self.classes}, folds={len(self.models)}, "
                f"mean roc_auc={self.roc_auc:.3f}, n_genes={len(self.predictions)})")


def _resolve_gene_labels(gene_labels, vocab) -> tuple[list[int], list[str], list[str]]:
    if isinstance(gene_labels, pd.Series):
        gene_labels = gene_labels.to_dict()
    if not isinstance(gene_labels, Mapping) or not gene_labels:
        raise CourseInputError(
            "gene_labels must be a non-empty mapping gene -> class, e.g. {'NPPA': 'target', "
            "'GAPDH': 'other'} (gene symbols or Ensembl IDs)."
        )
    tokens, classes, unknown = [], [], []
    for gene, cls in gene_labels.items():
        if cls is None or (isinstance(cls, float) and np.isnan(cls)):
            raise CourseInputError(f"Gene {gene!r} has no class. Fix: give every gene a class.")
        try:
            tokens.append(int(vocab.resolve(gene, argname="gene_labels")[0]))
        except (CourseInputError, KeyError, TypeError, ValueError):
            unknown.append(str(gene))
            continue
        classes.append(str(cls))
    if unknown:
        hints = {g: vocab.suggest(g) for g in unknown[:10]}
        hint = "; ".join(f"{g}: did you mean {', '.join(s)}?" for g, s in hints.items() if s)
        raise CourseInputError(
            f"{len(unknown)} gene(s) in gene_labels are not in the model's vocabulary: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}. Fix: check the spelling (symbols "
            "or Ensembl IDs of this model's vocabulary) or remove them."
            + (f" ({hint})" if hint else "")
        )
    seen: dict[int, str] = {}
    for t, c in zip(tokens, classes):
        if t in seen and seen[t] != c:
            raise CourseInputError(
                f"Gene {vocab.symbols([t])[0]} is listed twice with different classes "
                f"({seen[t]!r} and {c!r}), e.g. once by symbol and once by Ensembl ID. Fix: keep one."
            )
        seen[t] = c
    toks = list(seen)
    return toks, [seen[t] for t in toks], vocab.symbols(toks)


def gene_classifier(
    model,
    dataset,
    gene_labels: Mapping,
    *,
    n_splits: int = 5,
    freeze_layers: int = 0,
    freeze_embeddings: bool | None = None,
    epochs: float = GENE_DEFAULTS["epochs"],
    learning_rate: float = GENE_DEFAULTS["learning_rate"],
    batch_size: int = GENE_DEFAULTS["batch_size"],
    max_cells: int | None = None,
    lora=None,
    device=None,
    seed: int = 0,
    progress: bool = True,
) -> GeneClassifierResult:
    """Fine-tune a model to classify genes (token classification), cross-validated over genes.

    The labelled genes are split into ``n_splits`` folds, stratified by class. For each fold a
    fresh ``BertForTokenClassification`` (a copy of ``model``'s encoder plus a new head) is trained
    on the cells that contain training genes, with a label on every occurrence of a training gene
    and none elsewhere (the held-out genes stay in the cells, unlabelled). It then predicts the
    held-out genes in the cells where they occur; a gene's score is its mean class probability
    over those cells. No gene is ever in both parts of a fold.

    Parameters
    ----------
    model
        A pretrained model from :func:`course_helpers.model.load_model`.
    dataset
        Tokenized cells (``input_ids``), e.g. one cell type.
    gene_labels
        Mapping gene (symbol or Ensembl ID) -> class, e.g. ``{"NPPA": "target", ...}``.
    n_splits
        Number of folds (every class needs at least this many genes).
    freeze_layers, freeze_embeddings
        See :func:`freeze`.
    epochs, learning_rate, batch_size
        Training settings per fold (the reference trains gene classifiers for 1 epoch).
    max_cells
        Use at most this many cells per fold for training and for prediction (a seeded random
        sample of the cells that contain the fold's genes, plus one cell for any held-out gene the
        sample missed); ``None``: all.
    lora
        LoRA rank or settings (see :func:`cell_classifier`).
    device, seed, progress
        As in :func:`cell_classifier`; the bar counts folds.

    Returns
    -------
    GeneClassifierResult
        ``.metrics`` (per fold and mean ROC AUC), ``.predictions`` (per gene), ``.roc_curve()``.

    Raises
    ------
    CourseInputError
        Unknown genes, a single class, a class with fewer genes than ``n_splits``, labelled genes
        that occur in no cell.

    Examples
    --------
    A tiny run (2 genes per class, 2 folds, at most 2 cells per fold, each cell cut to its top 128
    genes) that only shows the calls and the shape of the result; a real run labels more genes
    and uses whole cells and all of them (one fine-tune per fold: well over 3 s each on a CPU).

    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> cells = ch.data.load_tissue("chapter")
    >>> cells = cells[cells.obs.cell_type == "cardiomyocyte"][:20].copy()
    >>> ds = ch.tokenize.tokenize(cells, model.gene_vocab, model_input_size=128, progress=False)
    >>> labels = {"NPPA": "target", "NPPB": "target", "GAPDH": "other", "ACTB": "other"}
    >>> res = ch.finetune.gene_classifier(model, ds, labels, n_splits=2, max_cells=2,
    ...                                   progress=False)
    >>> res.metrics.index.tolist(), sorted(res.predictions.symbol)
    ([0, 1, 'mean'], ['ACTB', 'GAPDH', 'NPPA', 'NPPB'])
    >>> bool(0 <= res.metrics.loc["mean", "roc_auc"] <= 1)
    True
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    _encoder_owner(model)
    vocab = _vocab_of(model)
    ds = _as_dataset(dataset)
    tokens, gene_cls, symbols = _resolve_gene_labels(gene_labels, vocab)
    classes = sorted(set(gene_cls))
    if len(classes) < 2:
        raise CourseInputError(
            f"gene_labels hold a single class ({classes[0]!r}). Fix: label genes of at least two "
            "classes (e.g. targets and non-targets)."
        )
    n_splits = _check_int(n_splits, "n_splits", 2)
    counts = pd.Series(gene_cls).value_counts()
    small = counts[counts < n_splits]
    if len(small):
        raise CourseInputError(
            f"Class(es) {dict(small)} have fewer genes than n_splits={n_splits}, so some fold "
            f"would test no gene of that class. Fix: label more genes or use n_splits="
            f"{int(counts.min())} or fewer (at least 2)."
        )
    epochs, learning_rate, batch_size = _check_training(epochs, learning_rate, batch_size)
    seed = _check_int(seed, "seed", 0)
    if max_cells is not None:
        max_cells = _check_int(max_cells, "max_cells", 1)
    if lora is not None and freeze_layers:
        raise CourseInputError("Pass either lora=... or freeze_layers=..., not both.")
    dev = pick_device(device)

    seqs = [np.asarray(x, dtype=np.int64) for x in ds["input_ids"]]
    tok_arr = np.asarray(tokens, dtype=np.int64)
    contains = np.zeros((len(seqs), len(tokens)), dtype=bool)
    for i, s in enumerate(seqs):
        contains[i] = np.isin(tok_arr, s)
    n_cells_per_gene = contains.sum(0)
    never = [symbols[j] for j in np.flatnonzero(n_cells_per_gene == 0)]
    if never:
        raise CourseInputError(
            f"{len(never)} labelled gene(s) occur in no cell of the dataset: {never[:10]}. Fix: "
            "remove them from gene_labels, or use cells that express them."
        )
    _require_accelerate()
    class_id = {c: i for i, c in enumerate(classes)}
    y = np.asarray([class_id[c] for c in gene_cls])
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rng = np.random.default_rng(seed)
    pred_rows, metric_rows, hist, models = [], [], [], []
    folds = list(skf.split(np.zeros(len(y)), y))
    for k, (tr, te) in enumerate(_progress(folds, enabled=progress, desc="gene CV folds")):
        lab_of = {int(tok_arr[j]): int(y[j]) for j in tr}
        train_cells = np.flatnonzero(contains[:, tr].any(1))
        test_cells = np.flatnonzero(contains[:, te].any(1))
        if max_cells is not None:
            if len(train_cells) > max_cells:
                train_cells = np.sort(rng.choice(train_cells, max_cells, replace=False))
            if len(test_cells) > max_cells:
                test_cells = np.sort(rng.choice(test_cells, max_cells, replace=False))
                # every held-out gene must occur in at least one sampled cell
                for j in te[~contains[np.ix_(test_cells, te)].any(0)]:
                    test_cells = np.union1d(test_cells, [rng.choice(np.flatnonzero(contains[:, j]))])
        rows = {"input_ids": [], "labels": [], "length": []}
        for i in train_cells:
            s = seqs[i]
            rows["input_ids"].append(s.tolist())
            rows["labels"].append([lab_of.get(int(t), _IGNORE) for t in s])
            rows["length"].append(len(s))
        clf = _make_classifier(model, "gene", classes, seed)
        freeze(clf, freeze_layers, freeze_embeddings)
        trainee = _apply_lora(clf, lora, "gene") if lora is not None else clf
        trained, history, seconds = training._train(
            trainee, rows, None, task="gene", epochs=epochs, learning_rate=learning_rate,
            batch_size=batch_size, seed=seed, device=dev, progress=False, desc="")
        final = _finish(trained, clf, lora)
        models.append(final)
        hist.append(history.assign(fold=k).reset_index())
        # predict the held-out genes where they occur
        probs = _logits(final, [seqs[i].tolist() for i in test_cells], max(batch_size, 32),
                        False, "", token_level=True)
        te_tok = {int(tok_arr[j]): j for j in te}
        sums = np.zeros((len(tokens), len(classes)))
        n_occ = np.zeros(len(tokens), dtype=int)
        tok_true, tok_score = [], []
        for ci, i in enumerate(test_cells):
            s = seqs[i]
            for pos, t in enumerate(s.tolist()):
                j = te_tok.get(t)
                if j is None:
                    continue
                sums[j] += probs[ci][pos]
                n_occ[j] += 1
                tok_true.append(int(y[j]))
                tok_score.append(probs[ci][pos])
        fold_rows = []
        for j in te:
            p = sums[j] / max(n_occ[j], 1)
            row = {"gene": vocab.id_to_token.get(int(tok_arr[j]), str(tok_arr[j])),
                   "symbol": symbols[j], "true": classes[y[j]], "fold": k}
            row.update({f"p_{c}": float(p[ci]) for ci, c in enumerate(classes)})
            row["predicted"] = classes[int(np.argmax(p))]
            row["n_cells"] = int(n_occ[j])
            fold_rows.append(row)
        fold_df = pd.DataFrame(fold_rows)
        pred_rows.append(fold_df)
        tok_true = np.asarray(tok_true)
        tok_score = np.asarray(tok_score) if tok_score else np.zeros((0, len(classes)))
        metric_rows.append({
            "fold": k,
            "roc_auc": _auc(roc_auc_score, y[te], fold_df[[f"p_{c}" for c in classes]].to_numpy(),
                            len(classes)),
            "token_roc_auc": _auc(roc_auc_score, tok_true, tok_score, len(classes)),
            "accuracy": float((fold_df["predicted"] == fold_df["true"]).mean()),
            "n_train_genes": len(tr), "n_test_genes": len(te),
            "n_train_cells": len(train_cells), "n_test_cells": len(test_cells),
            "train_seconds": seconds,
        })
    metrics = pd.DataFrame(metric_rows).set_index("fold")
    mean = metrics.mean(numeric_only=True)
    metrics.loc["mean"] = mean
    for c in ("n_train_genes", "n_test_genes", "n_train_cells", "n_test_cells"):
        metrics.loc["mean", c] = round(float(mean[c]), 1)
    predictions = pd.concat(pred_rows, ignore_index=True)
    history = pd.concat(hist, ignore_index=True)[["fold", "epoch", "train_loss"]]
    settings = {"n_splits": n_splits, "freeze_layers": int(freeze_layers),
                    "freeze_embeddings": freeze_embeddings, "epochs": epochs,
                    "learning_rate": learning_rate, "batch_size": batch_size, "max_cells": max_cells,
                    "lora": lora, "seed": seed, "device": str(dev)}
    return GeneClassifierResult(metrics=metrics, predictions=predictions, history=history,
                                models=models, classes=classes,
                                positive=classes[1] if len(classes) == 2 else None,
                                settings=settings)


def _auc(roc_auc_score, y_true, scores, n_classes: int) -> float:
    """ROC AUC (binary: score of class 1; multiclass: macro one-vs-rest); NaN if undefined."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0 or len(np.unique(y_true)) < 2:
        return float("nan")
    scores = np.asarray(scores, dtype=float)
    if n_classes == 2:
        return float(roc_auc_score(y_true, scores[:, 1]))
    if len(np.unique(y_true)) < n_classes:
        return float("nan")
    scores = scores / scores.sum(1, keepdims=True)
    return float(roc_auc_score(y_true, scores, multi_class="ovr", labels=list(range(n_classes))))
