"""Argument checks shared by the perturbation functions, and token ids to gene symbols.

The model's facts (special tokens, sizes, device) come from :func:`course_helpers.model.model_facts`
and gene names are resolved by its ``resolve_genes`` (:meth:`GeneVocab.resolve` plus the model's
checks); here: the ``perturb_type`` / ``emb_mode`` checks and the reference ``emb_mode`` default.
"""
from __future__ import annotations

import warnings

import numpy as np

from .._utils import CourseInputError, find_stack_level
from ..model import ModelFacts
from .rule import _check_perturb_type
from .warnings import EmbModeFallbackWarning

_EMB_MODES = ("cls", "cell", "cls_and_gene", "cell_and_gene")


def _symbols(tokens, vocab) -> list[str] | None:
    if vocab is None or not hasattr(vocab, "symbols"):
        return None
    tokens = np.asarray(tokens, dtype=np.int64)
    uniq, inv = np.unique(tokens, return_inverse=True)
    names = np.asarray(list(vocab.symbols([int(t) for t in uniq])), dtype=object)
    return names[inv].tolist()


def _check_common(perturb_type, emb_mode):
    _check_perturb_type(perturb_type)
    if emb_mode is not None and emb_mode not in _EMB_MODES:
        raise CourseInputError(
            f"emb_mode={emb_mode!r} is not supported. Fix: use 'cell' (the mean of the gene "
            "embeddings), 'cls' (the <cls> embedding, V2 models), or 'cell_and_gene' / "
            "'cls_and_gene' (the same, plus the change of every other gene's embedding); or "
            "leave it out for the reference default ('cls' for V2, 'cell' for V1)."
        )


def _resolve_emb_mode(emb_mode, info: ModelFacts) -> str:
    """The reference defaults: ``"cls"`` for models with ``<cls>`` (V2), else ``"cell"``."""
    if emb_mode is None:
        return "cls" if info.cls_id is not None else "cell"
    if emb_mode.startswith("cls") and info.cls_id is None:
        new = emb_mode.replace("cls", "cell")
        warnings.warn(
            EmbModeFallbackWarning(
                f"emb_mode={emb_mode!r} needs a <cls> token, which this model (V1 or the teaching "
                f"model) does not have; using emb_mode={new!r} (the mean of the gene embeddings), "
                "as the reference does.",
                emb_mode,
                new,
            ),
            stacklevel=find_stack_level(),
        )
        return new
    return emb_mode
