"""Checks for chapter 3 (First network analysis)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import _as_number, _feedback, _missing


def check_best_head(answer, per_head: pd.DataFrame, method: str = "norm") -> bool:
    """Check ``(layer, head)`` with the highest AUPRC ratio for ``method`` in ``per_head``."""
    if _missing(answer, "a tuple (layer, head)."):
        return False
    try:
        layer, head = (int(v) for v in answer)
    except (TypeError, ValueError):
        return _feedback(False, "", "the answer should be a tuple of two integers: (layer, head).")
    sub = per_head[per_head["method"] == method]
    best = sub.loc[sub["auprc_ratio"].idxmax()]
    if (layer, head) == (int(best["layer"]), int(best["head"])):
        return _feedback(True, f"layer {layer}, head {head} has AUPRC ratio {best['auprc_ratio']:.2f}.", "")
    hit = sub[(sub["layer"] == layer) & (sub["head"] == head)]
    if hit.empty:
        return _feedback(False, "", f"there is no layer {layer}, head {head} in the table.")
    other = per_head[(per_head["method"] != method) & (per_head["layer"] == layer) & (per_head["head"] == head)]
    if not other.empty and other["auprc_ratio"].iloc[0] == per_head[per_head["method"] != method]["auprc_ratio"].max():
        return _feedback(False, "", f"that is the best head for the other method; filter method == '{method}'.")
    return _feedback(False, "", f"that head's ratio is {hit['auprc_ratio'].iloc[0]:.2f}; sort by auprc_ratio.")


def check_top_target(answer, edges: pd.DataFrame, source: str) -> bool:
    """Check the target with the largest score for ``source`` in an edge table."""
    if _missing(answer, "a gene symbol."):
        return False
    sub = edges[edges["source"] == source].sort_values("score", ascending=False)
    if sub.empty:
        return _feedback(False, "", f"{source} has no edges in the table.")
    top = str(sub.iloc[0]["target"])
    if str(answer).strip().upper() == top.upper():
        return _feedback(True, f"deleting {source} moves {top} most.", "")
    if str(answer).strip().upper() in set(sub["target"].head(5).str.upper()):
        return _feedback(False, "", "close: that gene is in the top 5, but not the top one.")
    return _feedback(False, "", "filter rows with source == the TF and sort by score, highest first.")


def check_epr_matrix(answer, matrix: pd.DataFrame, truth_edges: pd.DataFrame, tfs) -> bool:
    """Check the early precision ratio of a gene x gene score matrix against a truth."""
    if _missing(answer, "a float."):
        return False
    from ..networks import edges_from_matrix, score_edges

    expected = float(score_edges(edges_from_matrix(matrix), truth_edges, tfs=tfs, genes=matrix.index)["epr"])
    value = _as_number(answer, float, "the answer should be a number.")
    if value is None:
        return False
    ok = np.isclose(value, expected, rtol=1e-6, atol=1e-9)
    return _feedback(ok, f"EPR = {expected:.3f} (1 would be random).",
                     "score the symmetrised matrix (symmetric=True) and take the 'epr' entry.")
