"""The explorers' cells and genes: reading tokenized cells, tokenizing an AnnData, gene names.

Everything here is glue between the explorers and the layers below: the cells are read by
``_CellTable`` (token ids and metadata, with the small caches the widgets need for fast
redraws) and genes are looked up in the model's vocabulary without raising inside a widget.
"""
from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._utils import CourseInputError


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


class _CellTable:
    """Token ids and metadata of tokenized cells (HF dataset, DataFrame, dict or list)."""

    def __init__(self, dataset):
        if dataset is None:
            raise CourseInputError(
                "No cells given. Fix: pass a tokenized dataset (course_helpers.tokenize) or an "
                "AnnData together with vocab=..."
            )
        self.dataset = dataset
        self._hf = hasattr(dataset, "column_names") and hasattr(dataset, "select_columns")
        if self._hf:
            cols = list(dataset.column_names)
            if "input_ids" not in cols:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {cols}). Fix: tokenize the "
                    "cells first with course_helpers.tokenize."
                )
            self.columns = cols
            self.n = len(dataset)
            self._ids_ds = dataset.select_columns(["input_ids"])
            self.meta = pd.DataFrame(
                {c: list(dataset[c]) for c in cols if c not in ("input_ids",)})
        else:
            if isinstance(dataset, (list, tuple)):
                frame = pd.DataFrame({"input_ids": list(dataset)})
            elif isinstance(dataset, pd.DataFrame):
                frame = dataset
            elif isinstance(dataset, dict):
                frame = pd.DataFrame(dict(dataset))
            else:
                raise CourseInputError(
                    f"Cannot read cells from a {type(dataset).__name__}. Fix: pass a tokenized "
                    "Hugging Face dataset, a DataFrame/dict with 'input_ids', or an AnnData with "
                    "vocab=..."
                )
            if "input_ids" not in frame.columns:
                raise CourseInputError("The cells have no 'input_ids'. Fix: tokenize them first.")
            self.columns = list(frame.columns)
            self.n = len(frame)
            self._ids_list = [np.asarray(x, dtype=np.int64) for x in frame["input_ids"]]
            self.meta = frame.drop(columns=["input_ids"]).reset_index(drop=True)
        if self.n == 0:
            raise CourseInputError("The dataset has no cells. Fix: pass at least one cell.")
        if "length" not in self.meta:
            self.meta["length"] = [len(self.ids(i)) for i in range(self.n)]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def ids(self, i: int) -> np.ndarray:
        i = int(i)
        if not self._hf:
            return self._ids_list[i]
        bulk = self.__dict__.get("_all_ids")
        if bulk is not None and i < len(bulk):
            return bulk[i]
        hit = self._cache.get(i)
        if hit is None:
            hit = np.asarray(self._ids_ds[i]["input_ids"], dtype=np.int64)
            self._cache[i] = hit
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return hit

    def all_ids(self, limit: int = 20000) -> list[np.ndarray]:
        """Token ids of the first ``limit`` cells, read in bulk once (for searches)."""
        hit = self.__dict__.get("_all_ids")
        if hit is None:
            n = min(self.n, int(limit))
            if self._hf:
                sub = self._ids_ds if n == self.n else self._ids_ds.select(range(n))
                col = sub.with_format("numpy")["input_ids"]
                hit = [np.asarray(c, dtype=np.int64) for c in col]
            else:
                hit = self._ids_list[:n]
            self._all_ids = hit
        return hit

    def column(self, name: str):
        if name in self.meta:
            return self.meta[name].tolist()
        return None

    def label(self, i: int, type_key: str | None = None) -> str:
        key = type_key if type_key and type_key in self.meta else None
        cache = self.__dict__.setdefault("_labels", {})
        if key not in cache:
            ids = ([str(x) for x in self.meta["cell_id"]] if "cell_id" in self.meta
                   else [f"cell {j}" for j in range(self.n)])
            if key is not None:
                ids = [f"{c} ({t})" for c, t in zip(ids, self.meta[key].astype(str))]
            cache[key] = ids
        return cache[key][int(i)]


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


def _read_cells(dataset, vocab, model, extra_attrs=()) -> _CellTable:
    """The explorer's cells: a tokenized dataset as it is, an AnnData tokenized first."""
    if _is_anndata(dataset):
        dataset = _tokenize_adata(dataset, vocab, model, extra_attrs)
    return _CellTable(dataset)


def _gene_tokens_safe(vocab, genes) -> tuple[list[int], list[str]]:
    """Token ids of the genes that the vocabulary knows, and the names it does not know."""
    known, unknown = [], []
    for g in genes:
        if g is None or (isinstance(g, float) and np.isnan(g)):
            continue
        if isinstance(g, (int, np.integer)):
            known.append(int(g))
            continue
        try:
            known.append(int(vocab.tokens([str(g)])[0]))
        except (CourseInputError, KeyError, ValueError):
            unknown.append(str(g))
    return known, unknown


def _suggest(word: str, choices: Sequence[str], n: int = 4) -> str:
    if not choices:
        return ""
    up = {c.upper(): c for c in choices}
    close = difflib.get_close_matches(word.upper(), list(up), n=n, cutoff=0.6)
    starts = [c for u, c in up.items() if u.startswith(word.upper()[:3])][:n] if len(word) >= 3 \
        else []
    found = list(dict.fromkeys([up[c] for c in close] + starts))[:n]
    return f" Did you mean: {', '.join(found)}?" if found else ""

