"""Reading tokenized cells (until ``course_helpers.tokenize.TokenizedCells`` replaces it)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .._utils import CourseInputError


class _Cells:
    """Uniform, lazy access to the ``input_ids`` (and other columns) of tokenized cells."""

    def __init__(self, dataset):
        self._hf = None
        self._ids = None
        self._cols: Mapping | None = None
        try:
            import datasets as _ds

            is_hf = isinstance(dataset, _ds.Dataset)
        except ImportError:  # pragma: no cover
            is_hf = False
        if is_hf:
            if "input_ids" not in dataset.column_names:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {dataset.column_names}). "
                    "Fix: tokenize the cells first with course_helpers.tokenize."
                )
            self._hf = dataset.with_format(None)
            self.columns = list(dataset.column_names)
            self.n = len(dataset)
        elif isinstance(dataset, (pd.DataFrame, Mapping)):
            if "input_ids" not in dataset:
                raise CourseInputError(
                    "The cells have no 'input_ids' column. Fix: pass a tokenized dataset "
                    "(course_helpers.tokenize) or a list of token-id lists."
                )
            self._cols = dataset
            self._ids = list(dataset["input_ids"])
            self.columns = list(dataset.keys())
            self.n = len(self._ids)
        elif isinstance(dataset, (Sequence, np.ndarray)):
            self._ids = list(dataset)
            self.columns = ["input_ids"]
            self.n = len(self._ids)
        else:
            raise CourseInputError(
                f"Cannot read cells from a {type(dataset).__name__}. Fix: pass the tokenized "
                "datasets.Dataset (with an 'input_ids' column) or a list of token-id lists."
            )
        if self.n == 0:
            raise CourseInputError("The dataset holds no cells. Fix: check the tokenization step.")

    def column(self, name: str) -> list:
        if name not in self.columns:
            raise CourseInputError(
                f"The dataset has no column {name!r} (columns: {self.columns}). Fix: keep it when "
                "tokenizing, e.g. tokenize(..., cell_attrs=[...]) / custom_attr_name_dict."
            )
        if self._hf is not None:
            return list(self._hf[name])
        return list(self._cols[name])

    def lengths(self) -> np.ndarray:
        if "length" in self.columns:
            lengths = np.asarray(self.column("length"), dtype=np.int64)
        elif self._hf is not None:
            lengths = np.asarray([len(x) for x in self._hf["input_ids"]], dtype=np.int64)
        else:
            lengths = np.asarray([len(x) for x in self._ids], dtype=np.int64)
        return lengths

    def ids(self, indices: np.ndarray) -> list:
        if self._hf is not None:
            return self._hf[[int(i) for i in indices]]["input_ids"]
        return [self._ids[int(i)] for i in indices]
