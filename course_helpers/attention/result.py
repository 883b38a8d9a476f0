"""The result of an aggregation: :class:`AttentionResult` (gene x gene sums and counts)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import CourseInputError, renamed_parameters


def _ranked_pairs(scores: np.ndarray, valid: np.ndarray, *, symmetric: bool, self_loops: bool,
                  top_k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and scores of the ``valid`` gene pairs, highest score first.

    Symmetric: only ``i <= j``; ties are broken by position; ``top_k`` keeps the k best.
    """
    G = scores.shape[0]
    ii, jj = np.meshgrid(np.arange(G), np.arange(G), indexing="ij")
    keep = valid.copy()
    if symmetric:
        keep &= ii <= jj
    if not self_loops:
        keep &= ii != jj
    i, j, score = ii[keep], jj[keep], scores[keep]
    order = np.lexsort((j, i, -score))
    if top_k is not None:
        order = order[: int(top_k)]
    return i[order], j[order], score[order]


@dataclass
class AttentionResult:
    """Gene x gene attention accumulated over cells (output of :func:`aggregate_attention`).

    Attributes
    ----------
    sums : numpy.ndarray
        ``(n_layers, n_heads, G, G)`` float32: summed attention from gene ``i`` (query, row) to
        gene ``j`` (key, column) over all cells and layer/head slots kept.  A slot labelled
        ``"mean"`` holds the average over layers/heads taken on the fly.
    counts : numpy.ndarray
        ``(G, G)`` int64: number of cells in which both genes were present (the diagonal: cells
        expressing the gene).  Identical for every layer and head.
    tokens : numpy.ndarray
        Token ids of the G genes (row/column order).
    genes : list of str
        Gene labels (symbols from ``model.gene_vocab``, else token ids).
    layers, heads : list
        What the slots of ``sums`` are (model layer / head indices, 0 = first, or ``"mean"``).
    method : str
        ``"weight"`` or ``"norm"``.
    n_cells : int
        Cells aggregated.
    symmetric : bool
        Default view of :meth:`matrix` and :meth:`to_edges`.
    info : dict
        Run details (batch size, longest cell, seconds, memory estimate, ...).

    Examples
    --------
    Usually made by :func:`aggregate_attention`; by hand, two genes seen in 4 and 3 cells,
    together in 2:

    >>> import numpy as np
    >>> res = AttentionResult(sums=np.array([[[[2.0, 6.0], [1.0, 3.0]]]]),
    ...                       counts=np.array([[4, 2], [2, 3]]), tokens=np.array([10, 11]),
    ...                       genes=["A", "B"], layers=[0], heads=[0], n_cells=4)
    >>> res.matrix()                                 # mean = sum / cells expressing both
    target (key)      A    B
    source (query)
    A               0.5  3.0
    B               0.5  1.0
    >>> res.to_edges()
      source target  score  n_cells
    0      A      B    3.0        2
    1      B      A    0.5        2
    >>> res.matrix(attn_layer=0, symmetric=True).loc["A", "B"].item()   # (3.0 + 0.5) / 2
    1.75
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     AttentionResult.load(res.save(folder + "/attention.npz")).genes
    ['A', 'B']
    """

    sums: np.ndarray
    counts: np.ndarray
    tokens: np.ndarray
    genes: list
    layers: list
    heads: list
    method: str = "weight"
    n_cells: int = 0
    symmetric: bool = False
    info: dict = field(default_factory=dict)

    # -- selection -----------------------------------------------------------------------
    def _slot(self, value, slots: list, what: str, n_model: int | None):
        if value is None:
            return slice(None)
        if isinstance(value, str) and value == "mean":
            if "mean" in slots:
                return [slots.index("mean")]
            return slice(None)
        try:
            iv = int(value)
        except (TypeError, ValueError) as err:
            raise CourseInputError(f"{what} must be an integer or None, got {value!r}.") from err
        if n_model is not None and iv < 0:
            iv = iv % n_model
        if iv not in slots:
            kept = ", ".join(str(s) for s in slots)
            raise CourseInputError(
                f"{what}={value} was not aggregated (kept: {kept}). Fix: pick one of those, use "
                f"{what}=None for the average, or aggregate again with {what}s including it."
            )
        return [slots.index(iv)]

    @renamed_parameters(layer="attn_layer")
    def mean_array(self, attn_layer=None, head=None, min_count: int = 1) -> np.ndarray:
        """Mean attention ``(G, G)`` (float64); NaN where fewer than ``min_count`` cells.

        ``attn_layer``/``head`` = None averages over the kept layers/heads (``layer=`` is the old,
        deprecated name of ``attn_layer``).
        """
        ls = self._slot(attn_layer, self.layers, "attn_layer", self.info.get("model_layers"))
        hs = self._slot(head, self.heads, "head", self.info.get("model_heads"))
        s = self.sums[ls][:, hs].astype(np.float64).mean(axis=(0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            m = s / self.counts
        m[self.counts < max(1, int(min_count))] = np.nan
        return m

    def _view(self, attn_layer, head, symmetric, min_count) -> tuple[np.ndarray, bool]:
        """The mean matrix, symmetrised if asked (or by default); and whether it is."""
        m = self.mean_array(attn_layer, head, min_count)
        sym = self.symmetric if symmetric is None else bool(symmetric)
        if sym:
            m = (m + m.T) / 2.0
        return m, sym

    @renamed_parameters(layer="attn_layer")
    def matrix(self, attn_layer=None, head=None, symmetric=None,
               min_count: int = 1) -> pd.DataFrame:
        """Mean attention as a labelled gene x gene DataFrame.

        Parameters
        ----------
        attn_layer, head
            Model layer / head index (negative counts from the end), or None for the average
            over those kept.  (``layer=`` is the old, deprecated name of ``attn_layer``.)
        symmetric
            False: directed, ``[i, j]`` = mean attention from gene i (query, row) to gene j (key,
            column).  True: ``(A + A.T) / 2``.  None: the result's default.
        min_count
            Entries backed by fewer cells than this become NaN (never co-expressed = NaN).

        Examples
        --------
        See :class:`AttentionResult` and :func:`aggregate_attention`.
        """
        m, sym = self._view(attn_layer, head, symmetric, min_count)
        df = pd.DataFrame(m, index=list(self.genes), columns=list(self.genes))
        df.index.name = "gene" if sym else "source (query)"
        df.columns.name = "gene" if sym else "target (key)"
        return df

    def count_matrix(self) -> pd.DataFrame:
        """Co-occurrence counts (cells expressing both genes) as a labelled DataFrame."""
        return pd.DataFrame(self.counts, index=list(self.genes), columns=list(self.genes))

    @renamed_parameters(layer="attn_layer")
    def to_edges(self, attn_layer=None, head=None, symmetric=None, top_k: int | None = None, *,
                 min_count: int = 1, self_loops: bool = False) -> pd.DataFrame:
        """Edge list ``source, target, score, n_cells`` sorted by score (highest first).

        Directed: one row per ordered pair (source = query, target = key).  Symmetric: one row
        per unordered pair (``source < target`` in matrix order).  ``top_k`` keeps the k best.
        """
        m, sym = self._view(attn_layer, head, symmetric, min_count)
        i, j, score = _ranked_pairs(m, ~np.isnan(m), symmetric=sym, self_loops=self_loops,
                                    top_k=top_k)
        genes = np.asarray(self.genes, dtype=object)
        return pd.DataFrame({
            "source": genes[i],
            "target": genes[j],
            "score": score,
            "n_cells": self.counts[i, j],
        }).reset_index(drop=True)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save to a compressed ``.npz`` file (reload with :meth:`load`)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        meta = {"genes": list(self.genes), "layers": list(self.layers),
                "heads": list(self.heads), "method": self.method, "n_cells": int(self.n_cells),
                "symmetric": bool(self.symmetric), "info": self.info}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, sums=self.sums, counts=self.counts, tokens=self.tokens,
                            meta=np.asarray(json.dumps(meta, default=str)))
        return path

    @classmethod
    def load(cls, path) -> AttentionResult:
        """Read a result written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(sums=z["sums"], counts=z["counts"], tokens=z["tokens"],
                       genes=meta["genes"], layers=meta["layers"], heads=meta["heads"],
                       method=meta["method"], n_cells=meta["n_cells"],
                       symmetric=meta["symmetric"], info=meta["info"])

    @property
    def nbytes(self) -> int:
        """Memory held by the accumulators (independent of the number of cells)."""
        return int(self.sums.nbytes + self.counts.nbytes)

    def __repr__(self) -> str:
        return (f"AttentionResult(method={self.method!r}, genes={len(self.genes)}, "
                f"layers={self.layers}, heads={self.heads}, n_cells={self.n_cells}, "
                f"symmetric={self.symmetric}, {self.nbytes / 2**20:.1f} MiB)")
