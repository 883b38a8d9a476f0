"""Checks for chapter 2 (Data preparation)."""
from __future__ import annotations

import numpy as np

from ._common import _as_number, _feedback, _missing, _safe_call  # noqa: F401


# --------------------------------------------------------------------------------------------
def check_qc_mask(keep, adata, min_good_kept: float = 0.95, min_bad_removed: float = 0.90) -> bool:
    """Check a QC ``keep`` mask against the tissue's planted low-quality cells."""
    if _missing(keep, "build a boolean `keep` mask, one entry per cell."):
        return False
    keep = np.asarray(keep)
    if keep.shape != (adata.n_obs,) or keep.dtype != bool:
        return _feedback(False, "", f"`keep` should be a boolean array of length {adata.n_obs}, "
                         f"got dtype {keep.dtype} and shape {keep.shape}.")
    bad = adata.obs["low_quality"].to_numpy(dtype=bool)
    good_kept = keep[~bad].mean()
    bad_removed = (~keep[bad]).mean() if bad.any() else 1.0
    msg = f"you keep {good_kept:.1%} of good cells and remove {bad_removed:.1%} of low-quality ones."
    if good_kept < min_good_kept:
        return _feedback(False, "", msg + " Your threshold is too strict.")
    if bad_removed < min_bad_removed:
        return _feedback(False, "", msg + " Your threshold is too lenient.")
    return _feedback(True, msg, "")


def check_symbol_mapping(answer, symbols, vocab) -> bool:
    """Check a list of Ensembl IDs mapped from ``symbols`` (``None`` for unknown symbols)."""
    if _missing(answer, "a list with one Ensembl ID (or None) per symbol."):
        return False
    expected = [vocab.symbol_to_id.get(s) for s in symbols]
    answer = list(answer)
    if len(answer) != len(expected):
        return _feedback(False, "", f"expected {len(expected)} entries, got {len(answer)}.")
    wrong = [s for s, a, e in zip(symbols, answer, expected) if a != e]
    return _feedback(not wrong, "every symbol is mapped (and the unknown one is None).",
                     f"check {', '.join(wrong)}. Unknown symbols should be None.")


def check_truncation_fraction(answer, adata, vocab, model_input_size: int) -> bool:
    """Check the fraction of detected in-vocabulary genes removed by truncation."""
    if _missing(answer, "a float between 0 and 1."):
        return False
    from ..tokenize import tokenize

    full = np.asarray(tokenize(adata, vocab, progress=False)["length"], dtype=float)
    expected = 1 - np.minimum(full, model_input_size).sum() / full.sum()
    value = _as_number(answer, float, "the answer should be a single number.")
    if value is None:
        return False
    if abs(value - expected) < 1e-3:
        return _feedback(True, f"{expected:.1%} of detected genes fall past position {model_input_size}.", "")
    if abs(value - (1 - expected)) < 1e-3:
        return _feedback(False, "", "that is the fraction kept; the question asks for the fraction dropped.")
    return _feedback(False, "", "compare the lengths with and without `model_input_size`.")
