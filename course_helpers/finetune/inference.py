"""Predictions of a fine-tuned cell classifier."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .._utils import progress as _progress
from ..model import length_sorted_batches, model_facts, pad_batch
from .inputs import _as_dataset, _check_int


def _logits(model, seqs: Sequence, batch_size: int, progress: bool, desc: str,
            token_level: bool = False):
    """Softmax probabilities per cell (n, C) or per position (list of (L_i, C))."""
    import torch

    facts = model_facts(model)
    device, pad = facts.device, facts.pad_id
    out: list = [None] * len(seqs)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in _progress(length_sorted_batches([len(s) for s in seqs], batch_size),
                               enabled=progress, desc=desc, leave=False):
            ids, mask = pad_batch([seqs[i] for i in batch], pad, device)
            probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            probs = probs.cpu().numpy()
            for b, i in enumerate(batch):
                out[i] = probs[b, : len(seqs[i])] if token_level else probs[b]
    if was_training:
        model.train()
    return out if token_level else np.stack(out)


def predict_cells(model, dataset, *, batch_size: int = 32, progress: bool = True) -> pd.DataFrame:
    """Class probabilities of a fine-tuned cell classifier for every cell of ``dataset``.

    Parameters
    ----------
    model
        A ``BertForSequenceClassification`` (e.g. ``cell_classifier(...).model`` or a saved one
        loaded with ``load_model``).
    dataset
        Tokenized cells (``input_ids``).
    batch_size, progress
        Cells per forward pass; progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per cell in dataset order: ``p_<class>`` for every class and ``predicted``
        (``cell_id`` first when the dataset has one).

    Examples
    --------
    >>> import course_helpers as ch
    >>> from course_helpers.finetune import new_classifier
    >>> model = ch.model.load_model("teaching")
    >>> ds = ch.tokenize.tokenize(ch.data.load_tissue()[:8], model.gene_vocab,
    ...                           cell_attrs=("cell_id",), progress=False)
    >>> clf = new_classifier(model, ["healthy", "diseased"])  # untrained head: arbitrary answers
    >>> pred = predict_cells(clf, ds, progress=False)
    >>> pred.columns.tolist(), len(pred)
    (['cell_id', 'p_healthy', 'p_diseased', 'predicted'], 8)
    >>> bool(((pred["p_healthy"] + pred["p_diseased"]).round(6) == 1).all())
    True
    >>> # after training: predict_cells(result.model, ds), result from cell_classifier(...)
    """
    from transformers import BertForSequenceClassification

    if not isinstance(model, BertForSequenceClassification):
        raise CourseInputError(
            f"predict_cells needs a fine-tuned cell classifier (BertForSequenceClassification), "
            f"got a {type(model).__name__}. Fix: pass cell_classifier(...).model."
        )
    ds = _as_dataset(dataset)
    seqs = [list(x) for x in ds["input_ids"]]
    probs = _logits(model, seqs, _check_int(batch_size, "batch_size", 1), progress,
                    "predicting cells")
    classes = [str(model.config.id2label[i]) for i in range(probs.shape[1])]
    df = pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])
    df["predicted"] = [classes[i] for i in probs.argmax(1)]
    if "cell_id" in ds.column_names:
        df.insert(0, "cell_id", list(ds["cell_id"]))
    return df
