"""Checking the arguments of the attention functions: cells, layers/heads, genes, labels."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .extract import _pad_id

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


class _Cells:
    """Uniform access to tokenized cells: HF Dataset, dict of columns, DataFrame, list of lists."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._hf = False
        if hasattr(dataset, "column_names") and hasattr(dataset, "select_columns"):
            if "input_ids" not in dataset.column_names:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {dataset.column_names}). "
                    "Fix: pass a tokenized dataset (course_helpers.tokenize output)."
                )
            self._hf = True
            self._ids = dataset.select_columns(["input_ids"])
            self.n = len(dataset)
            self.columns = list(dataset.column_names)
        elif isinstance(dataset, pd.DataFrame):
            if "input_ids" not in dataset.columns:
                raise CourseInputError(
                    "The DataFrame has no 'input_ids' column. Fix: pass a tokenized dataset."
                )
            self._ids = list(dataset["input_ids"])
            self.n = len(dataset)
            self.columns = list(dataset.columns)
        elif isinstance(dataset, dict):
            if "input_ids" not in dataset:
                raise CourseInputError(
                    f"The dict has no 'input_ids' key (keys: {list(dataset)}). Fix: pass "
                    "{'input_ids': [[...], ...]} or a tokenized Hugging Face dataset."
                )
            self._ids = list(dataset["input_ids"])
            self.n = len(self._ids)
            self.columns = list(dataset)
        elif isinstance(dataset, (list, tuple)):
            self._ids = list(dataset)
            self.n = len(self._ids)
            self.columns = ["input_ids"]
        else:
            raise CourseInputError(
                f"Cannot read cells from a {type(dataset).__name__}. Fix: pass a tokenized "
                "Hugging Face dataset (with 'input_ids'), a dict of columns or a list of token id "
                "lists."
            )
        if self.n == 0:
            raise CourseInputError("The dataset has no cells. Fix: pass at least one cell.")

    def lengths(self) -> np.ndarray:
        if "length" in self.columns:
            col = self.column("length")
            return np.asarray(list(col), dtype=np.int64)
        if self._hf:
            return np.asarray([len(x) for x in self._ids["input_ids"]], dtype=np.int64)
        return np.asarray([len(x) for x in self._ids], dtype=np.int64)

    def column(self, name):
        if name not in self.columns:
            return None
        if self._hf or isinstance(self.dataset, (pd.DataFrame, dict)):
            return list(self.dataset[name])
        return None

    def ids(self, idx) -> list:
        idx = [int(i) for i in idx]
        if self._hf:
            return self._ids[idx]["input_ids"]
        return [self._ids[i] for i in idx]

    def iter_chunks(self, idx, chunk: int = 2048):
        for s in range(0, len(idx), chunk):
            yield self.ids(idx[s:s + chunk])


def _select_cells(cells: _Cells, max_cells, seed) -> np.ndarray:
    n = cells.n
    if max_cells is None or int(max_cells) >= n:
        return np.arange(n)
    if int(max_cells) < 1:
        raise CourseInputError(f"max_cells must be at least 1, got {max_cells}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_cells), replace=False))


def _special_ids(model) -> set[int]:
    vocab = getattr(model, "gene_vocab", None)
    out = {_pad_id(model)}
    if vocab is not None:
        for name in ("pad_token_id", "mask_token_id", "cls_token_id", "eos_token_id"):
            v = getattr(vocab, name, None)
            if v is not None:
                out.add(int(v))
        t2i = getattr(vocab, "token_to_id", {}) or {}
        for tok, i in t2i.items():
            if isinstance(tok, str) and tok.startswith("<") and tok.endswith(">"):
                out.add(int(i))
    return out


def _resolve_tokens(model, genes, what="genes") -> np.ndarray:
    """Token ids from ints, symbols/Ensembl IDs (needs model.gene_vocab), or 'mito'/'ribo'."""
    if isinstance(genes, str) and genes in ("mito", "ribo"):
        vocab = getattr(model, "gene_vocab", None)
        if vocab is None:
            raise CourseInputError(
                f"{what}={genes!r} needs the model's gene vocabulary (model.gene_vocab). Fix: load "
                "the model with load_model(...) or pass token ids."
            )
        prefixes = ("MT-",) if genes == "mito" else ("RPL", "RPS")
        ids = sorted(int(i) for i, s in zip(vocab.id_to_token, vocab.symbols(list(vocab.id_to_token)))
                     if isinstance(s, str) and s.upper().startswith(prefixes))
        if not ids:
            raise CourseInputError(f"No {genes} genes in the model's vocabulary.")
        return np.asarray(ids, dtype=np.int64)
    if isinstance(genes, (str, int, np.integer)):
        genes = [genes]
    items = list(genes)
    if not items:
        raise CourseInputError(f"{what} is empty. Fix: pass at least one gene.")
    if all(isinstance(g, (int, np.integer)) for g in items):
        arr = np.asarray(items, dtype=np.int64)
    else:
        vocab = getattr(model, "gene_vocab", None)
        if vocab is None:
            raise CourseInputError(
                f"{what} are given as names but the model has no gene vocabulary "
                "(model.gene_vocab). Fix: load it with load_model(...) or pass token ids."
            )
        arr = np.asarray(vocab.tokens([str(g) for g in items]), dtype=np.int64)
    vs = int(getattr(model.config, "vocab_size", 0) or 0)
    if vs and (arr.min() < 0 or arr.max() >= vs):
        raise CourseInputError(
            f"{what} contain token ids outside the model's vocabulary (0..{vs - 1}). Fix: use "
            "token ids from model.gene_vocab."
        )
    _, first = np.unique(arr, return_index=True)
    return arr[np.sort(first)]


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


def _frequent_genes(model, cells: _Cells, sel: np.ndarray, max_genes: int) -> tuple[np.ndarray, int]:
    counts = np.zeros(int(model.config.vocab_size), dtype=np.int64)
    for chunk in cells.iter_chunks(sel):
        flat = np.concatenate([np.asarray(c, dtype=np.int64) for c in chunk]) if chunk else []
        if len(flat):
            counts += np.bincount(flat, minlength=len(counts))[: len(counts)]
    for s in _special_ids(model):
        if 0 <= s < len(counts):
            counts[s] = 0
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


def _gene_set(model, cells: _Cells, sel: np.ndarray, genes, max_genes: int, *, what: str,
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
            f"frequently present{note}. Pass genes=[...] or max_genes= to choose.", stacklevel=3)
    return tokens
