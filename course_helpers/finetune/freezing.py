"""Freezing the first encoder layers (and the embeddings) as the reference does."""
from __future__ import annotations

from .._utils import CourseInputError
from .inputs import _encoder_owner, _n_layers


def freeze(model, freeze_layers: int = 0, freeze_embeddings: bool | None = None):
    """Freeze the embeddings and the first ``freeze_layers`` encoder layers of ``model``.

    The reference ``Classifier`` freezes ``model.bert.encoder.layer[:freeze_layers]``. Here the
    embeddings are frozen as well whenever ``freeze_layers > 0`` (``freeze_embeddings=None``):
    otherwise every backward pass still runs through the frozen layers to reach the embeddings,
    and freezing saves almost no time. Pass ``freeze_embeddings=False`` for the reference's exact
    behaviour. ``freeze_layers`` equal to the number of layers trains only the classification head
    (a linear probe on frozen features).

    Parameters
    ----------
    model
        A ``BertForSequenceClassification`` / ``BertForTokenClassification`` (changed in place).
    freeze_layers
        Number of encoder layers to freeze, from the input side, ``0 .. num_hidden_layers``.
    freeze_embeddings
        ``None``: freeze them when ``freeze_layers > 0``; ``True``/``False``: always / never.

    Returns
    -------
    dict
        ``{"trainable": n, "total": n}`` parameter counts after freezing.

    Examples
    --------
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> m = BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=8,
    ...     num_hidden_layers=2, num_attention_heads=2, intermediate_size=16))
    >>> counts = freeze(m, 2)
    >>> counts["trainable"] < counts["total"]
    True
    >>> any(p.requires_grad for p in m.bert.encoder.layer[1].parameters())
    False
    """
    _encoder_owner(model)
    n_layers = _n_layers(model)
    try:
        n = int(freeze_layers)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"freeze_layers must be an integer, got {freeze_layers!r}.") from err
    if n != freeze_layers or not 0 <= n <= n_layers:
        raise CourseInputError(
            f"freeze_layers={freeze_layers!r} is out of range: the model has {n_layers} encoder "
            f"layers. Fix: pass an integer from 0 (train everything) to {n_layers} (train only the "
            "classification head)."
        )
    if freeze_embeddings is None:
        freeze_embeddings = n > 0
    if freeze_embeddings:
        for p in model.bert.embeddings.parameters():
            p.requires_grad = False
    for layer in model.bert.encoder.layer[:n]:
        for p in layer.parameters():
            p.requires_grad = False
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": int(trainable), "total": int(total)}
