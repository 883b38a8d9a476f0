"""Reading tokenized cells: :class:`TokenizedCells`, the one reader of a tokenized dataset (Hugging
Face dataset, DataFrame, dict of columns or list of token-id lists) for every analysis module.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .._utils import CourseInputError


class TokenizedCells:
    """Uniform, lazy access to tokenized cells: their token ids and the other columns.

    The one reader of tokenized cells for every analysis module. Accepts a Hugging Face
    ``datasets.Dataset`` with an ``input_ids`` column (as :func:`tokenize` returns), a pandas
    DataFrame or a dict of columns with ``input_ids``, or a plain list of token-id lists.

    Parameters
    ----------
    dataset
        The tokenized cells.

    Attributes
    ----------
    dataset
        What was passed in.
    n : int
        Number of cells (also ``len(cells)``).
    columns : list of str
        Column names (``["input_ids"]`` for a list of id lists).

    Raises
    ------
    CourseInputError
        If there is no ``input_ids`` column, no cell, or the container type is not supported.

    Examples
    --------
    >>> cells = TokenizedCells({"input_ids": [[5, 6, 7], [8]], "cell_type": ["B", "T"]})
    >>> len(cells), cells.columns, cells.lengths().tolist()
    (2, ['input_ids', 'cell_type'], [3, 1])
    >>> cells.ids([1, 0]), cells.ids_of(0).tolist(), cells.column("cell_type")
    ([[8], [5, 6, 7]], [5, 6, 7], ['B', 'T'])
    >>> cells.get("donor") is None, cells.meta.columns.tolist(), cells.label(1, "cell_type")
    (True, ['cell_type', 'length'], 'cell 1 (T)')
    """

    #: Cells kept by :meth:`ids_of` (least recently used ones are dropped).
    CACHE_SIZE = 256

    def __init__(self, dataset):
        if dataset is None:
            raise CourseInputError(
                "No cells given. Fix: pass a tokenized dataset (course_helpers.tokenize) or a "
                "list of token-id lists."
            )
        self.dataset = dataset
        self._hf = None
        self._cols = None
        self._ids = None
        if hasattr(dataset, "column_names") and hasattr(dataset, "select_columns"):
            cols = dataset.column_names
            if isinstance(cols, Mapping):  # a DatasetDict
                raise CourseInputError(
                    f"The dataset has several splits ({list(cols)}), so it has no 'input_ids' "
                    "column of its own. Fix: pass one split, e.g. dataset['train']."
                )
            if "input_ids" not in cols:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {list(cols)}). Fix: "
                    "tokenize the cells first with course_helpers.tokenize."
                )
            self._hf = dataset.with_format(None)
            self._ids_ds = self._hf.select_columns(["input_ids"])
            self.columns = list(cols)
            self.n = len(dataset)
        elif isinstance(dataset, (pd.DataFrame, Mapping)):
            keys = list(dataset.columns if isinstance(dataset, pd.DataFrame) else dataset.keys())
            if "input_ids" not in keys:
                raise CourseInputError(
                    f"The cells have no 'input_ids' column (columns: {keys}). Fix: pass a "
                    "tokenized dataset (course_helpers.tokenize) or a list of token-id lists."
                )
            self._cols = dataset
            self._ids = list(dataset["input_ids"])
            self.columns = [str(k) for k in keys]
            self.n = len(self._ids)
        elif isinstance(dataset, (list, tuple, np.ndarray)):
            self._ids = list(dataset)
            self.columns = ["input_ids"]
            self.n = len(self._ids)
        else:
            raise CourseInputError(
                f"Cannot read cells from a {type(dataset).__name__}. Fix: pass a tokenized "
                "Hugging Face dataset (with 'input_ids'), a DataFrame or dict of columns with "
                "'input_ids', or a list of token-id lists."
            )
        if self.n == 0:
            raise CourseInputError("The dataset has no cells. Fix: pass at least one cell.")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._all = None
        self._meta = None
        self._labels: dict = {}

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"TokenizedCells(n={self.n}, columns={self.columns})"

    # -- token ids ---------------------------------------------------------------------------
    def ids(self, indices) -> list:
        """Token ids of the cells ``indices``, one sequence per cell (lists for a dataset).

        Examples
        --------
        >>> TokenizedCells([[5, 6], [7]]).ids([1])
        [[7]]
        """
        idx = [int(i) for i in indices]
        if self._hf is not None:
            return self._ids_ds[idx]["input_ids"]
        return [self._ids[i] for i in idx]

    def iter_chunks(self, indices, chunk: int = 2048):
        """Yield :meth:`ids` of ``indices`` in chunks of ``chunk`` cells.

        Examples
        --------
        >>> list(TokenizedCells([[5], [6], [7]]).iter_chunks([0, 1, 2], chunk=2))
        [[[5], [6]], [[7]]]
        """
        for s in range(0, len(indices), int(chunk)):
            yield self.ids(indices[s:s + int(chunk)])

    def ids_of(self, i) -> np.ndarray:
        """Token ids of one cell as an int64 array (recently used cells are cached).

        Examples
        --------
        >>> TokenizedCells([[5, 6], [7]]).ids_of(0)
        array([5, 6])
        """
        i = int(i)
        if not -self.n <= i < self.n:
            raise CourseInputError(f"Cell {i} does not exist (the dataset has {self.n} cells).")
        i %= self.n
        if self._all is not None and i < len(self._all):
            return self._all[i]
        hit = self._cache.get(i)
        if hit is None:
            raw = self._ids_ds[i]["input_ids"] if self._hf is not None else self._ids[i]
            hit = np.asarray(raw, dtype=np.int64).reshape(-1)
            self._cache[i] = hit
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return hit

    def all_ids(self, limit: int = 20000) -> list[np.ndarray]:
        """Token ids of the first ``limit`` cells as int64 arrays, read in bulk once.

        Examples
        --------
        >>> [a.tolist() for a in TokenizedCells([[5, 6], [7], [8]]).all_ids(limit=2)]
        [[5, 6], [7]]
        """
        if self._all is None:
            n = min(self.n, int(limit))
            if self._hf is not None:
                sub = self._ids_ds if n == self.n else self._ids_ds.select(range(n))
                col = sub.with_format("numpy")["input_ids"]
                self._all = [np.asarray(c, dtype=np.int64) for c in col]
            else:
                self._all = [np.asarray(x, dtype=np.int64).reshape(-1) for x in self._ids[:n]]
        return self._all

    def lengths(self) -> np.ndarray:
        """Number of tokens of every cell (the ``length`` column where there is one).

        Examples
        --------
        >>> TokenizedCells([[5, 6], [7]]).lengths()
        array([2, 1])
        """
        if "length" in self.columns:
            return np.asarray(list(self.column("length")), dtype=np.int64)
        ids = self._ids_ds["input_ids"] if self._hf is not None else self._ids
        return np.asarray([len(x) for x in ids], dtype=np.int64)

    # -- other columns -----------------------------------------------------------------------
    def column(self, name: str) -> list:
        """One column as a list; :class:`CourseInputError` naming the columns if it is absent.

        Examples
        --------
        >>> TokenizedCells({"input_ids": [[5]], "cell_type": ["B"]}).column("cell_type")
        ['B']
        """
        if name not in self.columns:
            raise CourseInputError(
                f"The dataset has no column {name!r} (columns: {self.columns}). Fix: keep it when "
                "tokenizing, e.g. tokenize(..., cell_attrs=[...]) / custom_attr_name_dict."
            )
        if self._hf is not None:
            return list(self._hf[name])
        if self._cols is not None:
            return list(self._cols[name])
        return list(self._ids)

    def get(self, name: str) -> list | None:
        """One column as a list, or ``None`` if there is no such column.

        Examples
        --------
        >>> TokenizedCells([[5]]).get("cell_type") is None
        True
        """
        return self.column(name) if name in self.columns else None

    @property
    def meta(self) -> pd.DataFrame:
        """Every column but ``input_ids`` as a DataFrame (built once), plus ``length``.

        Examples
        --------
        >>> TokenizedCells({"input_ids": [[5, 6]], "cell_id": ["c0"]}).meta
          cell_id  length
        0      c0       2
        """
        if self._meta is None:
            if self._hf is not None:
                meta = pd.DataFrame({c: list(self._hf[c]) for c in self.columns
                                     if c != "input_ids"})
            elif isinstance(self._cols, pd.DataFrame):
                meta = self._cols.drop(columns=["input_ids"]).reset_index(drop=True)
            elif self._cols is not None:
                meta = pd.DataFrame({k: list(v) for k, v in self._cols.items()
                                     if k != "input_ids"})
            else:
                meta = pd.DataFrame(index=range(self.n))
            if "length" not in meta:
                meta["length"] = self.lengths()
            self._meta = meta
        return self._meta

    def label(self, i, type_key: str | None = None) -> str:
        """A readable name of cell ``i``: its ``cell_id`` (or ``"cell i"``), with ``(type)``.

        Examples
        --------
        >>> cells = TokenizedCells({"input_ids": [[5]], "cell_id": ["c0"], "cell_type": ["B"]})
        >>> cells.label(0, "cell_type")
        'c0 (B)'
        """
        key = type_key if type_key and type_key in self.meta else None
        if key not in self._labels:
            meta = self.meta
            names = ([str(x) for x in meta["cell_id"]] if "cell_id" in meta
                     else [f"cell {j}" for j in range(self.n)])
            if key is not None:
                names = [f"{c} ({t})" for c, t in zip(names, meta[key].astype(str))]
            self._labels[key] = names
        return self._labels[key][int(i)]

    def subset(self, indices):
        """The cells ``indices`` in the container type that was passed in.

        Examples
        --------
        >>> cells = TokenizedCells({"input_ids": [[5], [6], [7]], "cell_id": ["a", "b", "c"]})
        >>> cells.subset([2, 0])
        {'input_ids': [[7], [5]], 'cell_id': ['c', 'a']}
        """
        idx = [int(i) for i in indices]
        ds = self.dataset
        if self._hf is not None:
            return ds.select(idx)
        if isinstance(ds, pd.DataFrame):
            return ds.iloc[idx].reset_index(drop=True)
        if isinstance(ds, Mapping):
            return {k: [list(v)[i] for i in idx] for k, v in ds.items()}
        return [ds[i] for i in idx]
