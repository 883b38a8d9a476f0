"""A fresh classification head (cell: sequence classification; gene: token classification) on a
copy of a pretrained encoder.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

from .._utils import CourseInputError
from .inputs import _check_int, _encoder_owner, _model_version


def _make_classifier(model, task: str, classes: list[str], seed: int):
    """A new classifier whose encoder is a copy of ``model``'s (the caller's model is untouched)."""
    from transformers import BertForSequenceClassification, BertForTokenClassification
    from transformers import set_seed as hf_set_seed

    _encoder_owner(model)
    cls = BertForSequenceClassification if task == "cell" else BertForTokenClassification
    n = len(classes)
    id2label = {i: c for i, c in enumerate(classes)}
    label2id = {c: i for i, c in enumerate(classes)}
    existing = int(getattr(model.config, "num_labels", 0) or 0)
    if isinstance(model, cls) and existing != n:
        old = [model.config.id2label[i] for i in sorted(model.config.id2label)]
        raise CourseInputError(
            f"The model is already a {cls.__name__} with {existing} labels {old}, but the data "
            f"have {n} classes {classes}. Fix: fine-tune the pretrained model instead "
            "(ch.load_model('teaching')), or pass labels with the same classes."
        )
    hf_set_seed(seed)
    config = copy.deepcopy(model.config)
    config.num_labels = n
    config.id2label = id2label
    config.label2id = label2id
    config.architectures = [cls.__name__]
    if task == "cell":
        config.problem_type = "single_label_classification"
    config.output_attentions = False
    clf = cls(config)
    if isinstance(model, cls):
        old = [model.config.id2label[i] for i in sorted(model.config.id2label)]
        if [str(c) for c in old] != classes:
            raise CourseInputError(
                f"The model is already a classifier for the classes {old}, but the data have "
                f"{classes}. Fix: use labels with the same names, or fine-tune the pretrained "
                "model instead."
            )
        clf.load_state_dict(model.state_dict())
    else:
        missing, unexpected = clf.bert.load_state_dict(model.bert.state_dict(), strict=False)
        bad = [k for k in missing if not k.startswith("pooler.")]
        if bad or unexpected:
            raise CourseInputError(  # pragma: no cover - only for unusual architectures
                f"Could not copy the encoder weights into the classifier (missing {bad[:5]}, "
                f"unexpected {list(unexpected)[:5]}). Fix: pass a model from load_model()."
            )
    clf.gene_vocab = getattr(model, "gene_vocab", None)
    clf.model_version = _model_version(model)
    return clf


def new_classifier(model, classes: Sequence[str], task: str = "cell", *, seed: int = 0):
    """A new, untrained classifier on a copy of ``model``'s encoder (what the fine-tunes start from).

    Parameters
    ----------
    model
        A pretrained model from :func:`course_helpers.model.load_model`.
    classes
        Class names, in order (class 0 first).
    task
        ``"cell"`` (``BertForSequenceClassification``) or ``"gene"``
        (``BertForTokenClassification``).
    seed
        Seeds the new head's initialisation.

    Returns
    -------
    transformers.BertForSequenceClassification or transformers.BertForTokenClassification
        With ``gene_vocab``, ``model_version`` and ``config.id2label`` set.

    Examples
    --------
    >>> import course_helpers as ch
    >>> from course_helpers.finetune import freeze
    >>> model = ch.model.load_model("teaching")
    >>> clf = new_classifier(model, ["healthy", "diseased"])
    >>> clf.config.id2label, clf.gene_vocab is model.gene_vocab
    ({0: 'healthy', 1: 'diseased'}, True)
    >>> counts = freeze(clf, 2)
    >>> counts["trainable"] < counts["total"]
    True
    """
    if task not in ("cell", "gene"):
        raise CourseInputError(f"task must be 'cell' or 'gene', got {task!r}.")
    classes = [str(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise CourseInputError(
            f"classes must name at least two different classes, got {classes}."
        )
    _encoder_owner(model)
    return _make_classifier(model, task, classes, _check_int(seed, "seed", 0))
