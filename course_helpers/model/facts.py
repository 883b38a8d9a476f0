"""Model facts: :class:`ModelFacts` / :func:`model_facts`, the one place that reads special tokens,
sizes, device and the chosen layer off a model (and resolves genes for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._utils import CourseInputError
from ..vocab import (
    GeneVocab,
)
from .hidden import resolve_layer


@dataclass(frozen=True)
class ModelFacts:
    """What the analysis modules need to know about a loaded model, read in one place.

    Build it with :func:`model_facts`.

    Attributes
    ----------
    model
        The model itself.
    vocab : GeneVocab or None
        ``model.gene_vocab`` (set by :func:`load_model`), or ``None``.
    version : str or None
        ``model.model_version`` (``"V1"``, ``"V2"``, ``"teaching"``), else the vocabulary's.
    pad_id, mask_id, cls_id, eos_id : int or None
        Special token ids (``pad_id`` is always an int: the vocabulary's, else the config's,
        else 0).
    special_ids : numpy.ndarray
        Sorted int64 ids that are not genes: pad/mask/cls/eos and every ``<...>`` token of the
        vocabulary.
    vocab_size, max_len, hidden : int
        ``config.vocab_size``, ``config.max_position_embeddings``, ``config.hidden_size``.
    device : torch.device
        Where the model's weights are.
    emb_layer : int
        The validated hidden-state layer (reference ``emb_layer``: 0 = last, -1 =
        second-to-last); ``hidden_index`` is its index into ``hidden_states``.

    Examples
    --------
    >>> from course_helpers.model import load_model
    >>> facts = model_facts(load_model("teaching"), emb_layer=0)
    >>> facts.n_layers, facts.emb_layer, facts.hidden_index, facts.max_len
    (4, 0, 4, 1024)
    """

    model: object
    vocab: GeneVocab | None
    version: str | None
    pad_id: int
    mask_id: int | None
    cls_id: int | None
    eos_id: int | None
    special_ids: np.ndarray
    vocab_size: int
    max_len: int
    hidden: int
    device: object
    emb_layer: int
    hidden_index: int

    @property
    def n_layers(self) -> int:
        """Number of encoder layers."""
        return int(self.model.config.num_hidden_layers)

    def is_special(self, token_ids) -> np.ndarray:
        """Boolean mask: which of ``token_ids`` are special (non-gene) tokens.

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> facts = model_facts(load_model("teaching"))
        >>> facts.is_special([0, 1, 5]).tolist()
        [True, True, False]
        """
        return np.isin(np.asarray(token_ids, dtype=np.int64), self.special_ids)

    def resolve_genes(self, genes, *, argname: str = "genes") -> list[int]:
        """Token ids of genes for this model: :meth:`GeneVocab.resolve` with the model's checks.

        Names need the model's vocabulary; token ids must be gene tokens below ``vocab_size``
        (without a vocabulary, ids are checked against ``vocab_size`` and ``special_ids``).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> facts = model_facts(load_model("teaching"))
        >>> facts.resolve_genes(["VWF", 5])
        [439, 5]
        >>> facts.resolve_genes([0])
        Traceback (most recent call last):
        ...
        course_helpers._utils.CourseInputError: Token id(s) [0] in genes are not gene tokens ...
        """
        if isinstance(genes, (str, int, np.integer)):
            genes = [genes]
        if self.vocab is not None:
            tokens = self.vocab.resolve(genes, argname=argname)
        else:
            try:
                genes = list(genes)
            except TypeError as err:
                raise CourseInputError(
                    f"{argname} must be a gene or a list of token ids, not "
                    f"{type(genes).__name__}."
                ) from err
            if not genes:
                raise CourseInputError(
                    f"{argname} is empty. Fix: pass at least one gene token id."
                )
            names = [g for g in genes if isinstance(g, str)]
            if names:
                raise CourseInputError(
                    f"Gene {names[0]!r} is a name, but this model has no gene vocabulary attached "
                    "(model.gene_vocab), so names cannot be translated into tokens. Fix: load the "
                    "model with course_helpers.model.load_model(...), or pass token ids."
                )
            tokens = []
            for g in genes:
                if isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)):
                    raise CourseInputError(
                        f"{argname} holds {g!r} ({type(g).__name__}); pass token ids."
                    )
                tokens.append(int(g))
            tokens = list(dict.fromkeys(tokens))
        specials = set(self.special_ids.tolist())
        bad = [t for t in tokens if not 0 <= t < self.vocab_size or t in specials]
        if bad:
            raise CourseInputError(
                f"Token id(s) {bad[:5]} in {argname} are not gene tokens of this model (valid: "
                f"0..{self.vocab_size - 1}, excluding special tokens {sorted(specials)}). "
                "Fix: pass gene symbols or Ensembl IDs, or token ids from model.gene_vocab."
            )
        return tokens


def model_facts(model, *, emb_layer: int = -1) -> ModelFacts:
    """Special tokens, sizes, device and the chosen layer of a model, checked once.

    Parameters
    ----------
    model
        A Geneformer-family BERT from :func:`load_model` (any ``torch.nn.Module`` with a
        ``config``).
    emb_layer
        Hidden-state layer in the reference convention (see :func:`resolve_layer`).

    Returns
    -------
    ModelFacts

    Raises
    ------
    CourseInputError
        If ``model`` is not a model with a ``config``, or ``emb_layer`` is out of range.

    Examples
    --------
    >>> from course_helpers.model import load_model
    >>> facts = model_facts(load_model("teaching"))
    >>> facts.version, facts.pad_id, facts.mask_id, facts.cls_id, facts.special_ids.tolist()
    ('teaching', 0, 1, None, [0, 1])
    >>> facts.vocab_size, facts.hidden, facts.emb_layer, facts.hidden_index, str(facts.device)
    (2002, 128, -1, 3, 'cpu')
    """
    import torch

    if not isinstance(model, torch.nn.Module) or getattr(model, "config", None) is None:
        raise CourseInputError(
            f"model must be a transformers BertForMaskedLM (got {type(model).__name__}). Fix: "
            "model = course_helpers.model.load_model('teaching') (or another model name/folder)."
        )
    cfg = model.config
    idx = resolve_layer(model, emb_layer)
    vocab = getattr(model, "gene_vocab", None)

    def _vid(name):
        v = getattr(vocab, name, None) if vocab is not None else None
        return None if v is None else int(v)

    pad_id = _vid("pad_token_id")
    if pad_id is None:
        pad_id = getattr(cfg, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    mask_id, cls_id, eos_id = _vid("mask_token_id"), _vid("cls_token_id"), _vid("eos_token_id")
    specials = {t for t in (pad_id, mask_id, cls_id, eos_id) if t is not None}
    t2i = getattr(vocab, "token_to_id", None) or {}
    specials.update(int(i) for t, i in t2i.items()
                    if isinstance(t, str) and t.startswith("<") and t.endswith(">"))
    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without weights
        device = torch.device("cpu")
    version = getattr(model, "model_version", None) or getattr(vocab, "version", None)
    return ModelFacts(
        model=model,
        vocab=vocab,
        version=None if version is None else str(version),
        pad_id=pad_id,
        mask_id=mask_id,
        cls_id=cls_id,
        eos_id=eos_id,
        special_ids=np.asarray(sorted(specials), dtype=np.int64),
        vocab_size=int(cfg.vocab_size),
        max_len=int(getattr(cfg, "max_position_embeddings", None) or 10**9),
        hidden=int(cfg.hidden_size),
        device=device,
        emb_layer=int(emb_layer),
        hidden_index=idx,
    )
