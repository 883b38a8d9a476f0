"""Checking the arguments of the attention functions: cells, layers/heads, genes, labels."""
from __future__ import annotations

import warnings

import numpy as np

from .._utils import CourseInputError, find_stack_level
from ..model import model_facts
from ..tokenize import TokenizedCells
from ..vocab import GENE_GROUPS

_DEFAULT_MAX_GENES = 1000


def _resolve_index_list(value, n: int, what: str, noun: str | None = None) -> list[int]:
    """``"all"``, an int or a list of ints (negative counts from the end) -> sorted unique.

    ``what`` is the parameter's name, ``noun`` what the model has ``n`` of (default ``what``).
    """
    noun = what if noun is None else noun
    if value is None or (isinstance(value, str) and value == "all"):
        return list(range(n))
    if isinstance(value, str):
        raise CourseInputError(
            f"{what}={value!r} is not understood. Fix: use 'all', an integer (0 = first, -1 = "
            f"last) or a list of integers between {-n} and {n - 1}."
        )
    items = [value] if np.isscalar(value) else list(value)
    out = []
    for v in items:
        try:
            iv = int(v)
        except (TypeError, ValueError) as err:
            raise CourseInputError(f"{what} must be integers, got {v!r}.") from err
        if not -n <= iv < n:
            raise CourseInputError(
                f"{what}={iv} is out of range: the model has {n} {noun} (0 to {n - 1}, or "
                f"{-n} to -1 counting from the end). Fix: pick indices in that range."
            )
        out.append(iv % n)
    if not out:
        raise CourseInputError(f"{what} is empty. Fix: pass 'all' or at least one index.")
    return sorted(set(out))


def _check_method(method: str) -> str:
    if method not in ("weight", "norm"):
        raise CourseInputError(
            f"method={method!r} is not known. Fix: use 'weight' (attention weights) or 'norm' "
            "(Kobayashi et al. 2020: weight x norm of the transformed value vector)."
        )
    return method


def _select_cells(cells: TokenizedCells, max_cells, seed) -> np.ndarray:
    n = cells.n
    if max_cells is None or int(max_cells) >= n:
        return np.arange(n)
    if int(max_cells) < 1:
        raise CourseInputError(f"max_cells must be at least 1, got {max_cells}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_cells), replace=False))


def _resolve_tokens(model, genes, what="genes") -> np.ndarray:
    """Token ids of genes (``GeneVocab.resolve`` rules, via ``model_facts``), or of a named group
    of the model's vocabulary (``"mito"``, ``"ribo"``: ``GeneVocab.group``)."""
    if isinstance(genes, str) and genes in GENE_GROUPS:
        vocab = model_facts(model).vocab
        if vocab is None:
            raise CourseInputError(
                f"{what}={genes!r} needs the model's gene vocabulary (model.gene_vocab). Fix: load "
                "the model with load_model(...) or pass token ids."
            )
        ids = vocab.group(genes)
        if not ids:
            raise CourseInputError(f"No {genes} genes in the model's vocabulary.")
        return np.asarray(ids, dtype=np.int64)
    return np.asarray(model_facts(model).resolve_genes(genes, argname=what), dtype=np.int64)


def _gene_labels(model, tokens: np.ndarray) -> list[str]:
    vocab = getattr(model, "gene_vocab", None)
    if vocab is not None and hasattr(vocab, "symbols"):
        try:
            labels = [str(s) for s in vocab.symbols([int(t) for t in tokens])]
        except (CourseInputError, KeyError, ValueError):  # pragma: no cover - unknown ids
            labels = [str(int(t)) for t in tokens]
    else:
        labels = [str(int(t)) for t in tokens]
    seen: dict[str, int] = {}
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
    if any(c > 1 for c in seen.values()):  # duplicated symbols: make labels unique
        labels = [f"{lab}_{int(t)}" if seen[lab] > 1 else lab for lab, t in zip(labels, tokens)]
    return labels


def _frequent_genes(model, cells: TokenizedCells, sel: np.ndarray, max_genes: int) -> tuple[np.ndarray, int]:
    counts = np.zeros(int(model.config.vocab_size), dtype=np.int64)
    for chunk in cells.iter_chunks(sel):
        flat = np.concatenate([np.asarray(c, dtype=np.int64) for c in chunk]) if chunk else []
        if len(flat):
            counts += np.bincount(flat, minlength=len(counts))[: len(counts)]
    special = model_facts(model).special_ids
    counts[special[(special >= 0) & (special < len(counts))]] = 0
    seen = np.flatnonzero(counts)
    order = seen[np.lexsort((seen, -counts[seen]))]  # most frequent first, ties by token id
    return order[: int(max_genes)], len(seen)


def _average_flags(average) -> tuple[bool, bool]:
    if average in (None, False, "none"):
        return False, False
    if average == "heads":
        return True, False
    if average == "layers":
        return False, True
    if average in ("all", True, "both"):
        return True, True
    raise CourseInputError(
        f"average={average!r} is not understood. Fix: use None, 'heads', 'layers' or 'all'."
    )


def _gene_set(model, cells: TokenizedCells, sel: np.ndarray, genes, max_genes: int, *, what: str,
              note: str = "") -> np.ndarray:
    """Token ids to aggregate: ``genes`` resolved, or the ``max_genes`` most frequent in ``sel``.

    Warns (naming ``what``, the calling function) when the default set leaves genes out.
    """
    if genes is not None:
        return _resolve_tokens(model, genes)
    if int(max_genes) < 1:
        raise CourseInputError(f"max_genes must be at least 1, got {max_genes}.")
    tokens, n_seen = _frequent_genes(model, cells, sel, max_genes)
    if len(tokens) == 0:
        raise CourseInputError("The cells contain no gene tokens. Fix: check the dataset.")
    if n_seen > len(tokens):
        warnings.warn(
            f"{what}: the cells contain {n_seen} genes; keeping the {len(tokens)} most "
            f"frequently present{note}. Pass genes=[...] or max_genes= to choose.",
            stacklevel=find_stack_level())
    return tokens
