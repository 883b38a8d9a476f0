"""The explorers' cells and genes: reading tokenized cells, tokenizing an AnnData, gene names.

Everything here is glue between the explorers and the layers below: the cells are read by
:class:`course_helpers.tokenize.TokenizedCells` (token ids, metadata and the small caches the
widgets need for fast redraws), genes are looked up with :meth:`GeneVocab.resolve` without
raising inside a widget, and suggestions come from :meth:`GeneVocab.suggest` /
:func:`course_helpers.vocab.close_matches` (the course's one fuzzy rule).
"""
from __future__ import annotations

import numpy as np

from .._utils import CourseInputError
from ..tokenize import TokenizedCells


def _is_anndata(obj) -> bool:
    return hasattr(obj, "obs") and hasattr(obj, "var") and hasattr(obj, "X")


def _model_vocab(model, vocab):
    """``vocab`` or the model's ``gene_vocab``; a clear error when there is none."""
    vocab = vocab if vocab is not None else getattr(model, "gene_vocab", None)
    if vocab is None:
        raise CourseInputError(
            "The model has no gene vocabulary (model.gene_vocab). Fix: load it with "
            "course_helpers.model.load_model(...) or pass vocab=GeneVocab..."
        )
    return vocab


def _tokenize_adata(adata, vocab, model=None, extra_attrs=()):
    """Tokenize an AnnData with :func:`course_helpers.tokenize.tokenize` (needs ``vocab``)."""
    if vocab is None:
        raise CourseInputError(
            "An AnnData was given without a vocabulary. Fix: pass vocab=model.gene_vocab, or "
            "tokenize first with course_helpers.tokenize.tokenize and pass the dataset."
        )
    from ..tokenize import tokenize

    wanted = ["cell_id", "cell_type", "state", *extra_attrs]
    attrs = list(dict.fromkeys(c for c in wanted if c and (c == "cell_id" or c in adata.obs)))
    version = "V2" if getattr(vocab, "version", "V1") == "V2" else "V1"
    kwargs = {}
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_pos:
        kwargs["model_input_size"] = int(max_pos)
    return tokenize(adata, vocab, model_version=version, cell_attrs=attrs, progress=False,
                    **kwargs)


def _read_cells(dataset, vocab, model, extra_attrs=()) -> TokenizedCells:
    """The explorer's cells: a tokenized dataset as it is, an AnnData tokenized first."""
    if _is_anndata(dataset):
        dataset = _tokenize_adata(dataset, vocab, model, extra_attrs)
    if dataset is None:
        raise CourseInputError(
            "No cells given. Fix: pass a tokenized dataset (course_helpers.tokenize) or an "
            "AnnData together with vocab=..."
        )
    return TokenizedCells(dataset)


def _lookup(vocab, gene) -> int | None:
    """Token id of one gene (:meth:`GeneVocab.resolve`), or ``None`` if the vocabulary lacks it."""
    try:
        return vocab.resolve([gene])[0]
    except CourseInputError:
        return None


def _known_genes(vocab, genes) -> tuple[list[int], list[str]]:
    """Token ids of the genes the vocabulary knows (:meth:`GeneVocab.resolve`), and the others.

    Never raises for unknown names (a widget reports them); ``None``/NaN entries are skipped.
    """
    names = [g for g in genes if g is not None and not (isinstance(g, float) and np.isnan(g))]
    if not names:
        return [], []
    try:
        return vocab.resolve(names), []
    except CourseInputError:
        pass
    known, unknown = [], []
    for g in names:
        t = _lookup(vocab, g)
        (unknown if t is None else known).append(str(g) if t is None else t)
    return known, unknown


def _did_you_mean(names) -> str:
    """`` Did you mean: A, B?`` for a message, or ``""`` when there is nothing to suggest."""
    return f" Did you mean: {', '.join(names)}?" if names else ""
