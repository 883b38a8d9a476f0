"""Gene -> gene pairs of an attention view, marked against the planted ground truth.

The ground truth (:func:`course_helpers.data.load_ground_truth`, or a DataFrame of edges) is
turned into token pairs once; a view's heatmap marks and its table of strongest pairs are
looked up in them.

Examples
--------
>>> import numpy as np
>>> edges = {(5, 6)}
>>> _marks(np.array([5, 6, 7]), [0, 1], edges).tolist()
[[False, True], [True, False]]
>>> M = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
>>> t = _pairs_table(M, np.array([5, 6, 7]), ["A", "B", "C"], ["e5", "e6", "e7"], edges,
...                  shown={0, 1}, focus=None, n_pairs=2)
>>> t[["query", "key", "attention", "planted_edge", "edge_direction"]]
  query key  attention  planted_edge edge_direction
0     A   B        0.3          True      query→key
1     B   C        0.3         False
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .cells import _known_genes, _lookup


def _truth_pairs(ground_truth, vocab) -> tuple[set[tuple[int, int]], set[int]]:
    """Planted edges as (source token, target token) pairs, and TF tokens, from a ground truth.

    ``ground_truth``: an object with ``.edges`` (DataFrame with ``source``/``target`` as Ensembl
    IDs or symbols) and optionally ``.tfs``; or such a DataFrame itself.
    """
    if ground_truth is None:
        return set(), set()
    edges = getattr(ground_truth, "edges", ground_truth)
    if not isinstance(edges, pd.DataFrame) or not {"source", "target"} <= set(edges.columns):
        raise CourseInputError(
            "ground_truth must be load_ground_truth() (or a DataFrame of edges with 'source' and "
            "'target' columns)."
        )
    names = pd.unique(pd.concat([edges["source"], edges["target"]]).astype(str))
    lut: dict[str, int] = {}
    for g in names:
        tok = _lookup(vocab, g)
        if tok is not None:
            lut[g] = tok
    pairs = set()
    for s, t in zip(edges["source"].astype(str), edges["target"].astype(str)):
        if s in lut and t in lut:
            pairs.add((lut[s], lut[t]))
    tfs_raw = getattr(ground_truth, "tfs", None)
    if tfs_raw is None:
        tfs_raw = list(pd.unique(edges["source"].astype(str)))
    tf_tokens, _ = _known_genes(vocab, list(tfs_raw))
    return pairs, set(tf_tokens)


def _marks(tokens, sel, edges) -> np.ndarray | None:
    """Which cells of the heatmap (rows/columns ``sel``) are planted edges, either direction."""
    if not edges:
        return None
    return np.array([[(int(tokens[i]), int(tokens[j])) in edges
                      or (int(tokens[j]), int(tokens[i])) in edges
                      for j in sel] for i in sel], dtype=bool)


def _pairs_table(M, tokens, symbols, ensembl, edges, *, shown, focus, n_pairs) -> pd.DataFrame:
    """The ``n_pairs`` strongest off-diagonal entries of ``M`` (only the ``focus`` gene's row
    and column when one is searched), with their planted-edge marks and gene names."""
    G = M.shape[0]
    off = ~np.eye(G, dtype=bool)
    if focus is not None:
        keep = np.zeros((G, G), dtype=bool)
        keep[focus, :] = True
        keep[:, focus] = True
        off &= keep
    ii, jj = np.nonzero(off)
    vals = M[ii, jj]
    order = np.lexsort((jj, ii, -vals))[: int(n_pairs)]
    ii, jj, vals = ii[order], jj[order], vals[order]
    fwd = [(int(tokens[i]), int(tokens[j])) in edges for i, j in zip(ii, jj)]
    rev = [(int(tokens[j]), int(tokens[i])) in edges for i, j in zip(ii, jj)]
    edge = ["both" if f and r else "query→key" if f else "key→query" if r else ""
            for f, r in zip(fwd, rev)]
    return pd.DataFrame({
        "query": [symbols[i] for i in ii], "key": [symbols[j] for j in jj],
        "attention": vals.astype(float),
        "query_rank": ii.astype(int), "key_rank": jj.astype(int),
        "planted_edge": [f or r for f, r in zip(fwd, rev)], "edge_direction": edge,
        "in_heatmap": [int(i) in shown and int(j) in shown for i, j in zip(ii, jj)],
        "query_id": [ensembl[i] for i in ii], "key_id": [ensembl[j] for j in jj],
    })
