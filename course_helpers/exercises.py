"""Check functions for the course's exercises.

Each ``check_*`` prints friendly feedback and returns ``True`` or ``False``. They never raise on an
empty or wrong answer: a learner's cell holds a placeholder (``answer = None``) and the notebook must
still run top to bottom.

Examples
--------
>>> from course_helpers import exercises
>>> exercises.check_attention(None)
Not answered yet: ...
False
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _feedback(ok: bool, good: str, bad: str) -> bool:
    print(("Correct! " + good) if ok else ("Not quite. " + bad))
    return bool(ok)


def _missing(answer: Any, what: str) -> bool:
    if answer is None or answer is Ellipsis or (isinstance(answer, str) and not answer.strip()):
        print(f"Not answered yet: {what}")
        return True
    return False


def _safe_call(fn: Callable, *args):
    try:
        return fn(*args), None
    except Exception as exc:  # noqa: BLE001 - report any learner error as feedback
        return None, f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# Chapter 1 — Foundations
# --------------------------------------------------------------------------------------------
def reference_rank_value_encoding(counts, n_counts: float, medians, max_len: int = 2048):
    """Rank-value encode one cell: indices of genes ordered by normalised value (highest first).

    ``value = counts / n_counts * 10_000 / medians``; zeros are dropped; at most ``max_len`` genes.

    Examples
    --------
    >>> reference_rank_value_encoding([0, 5, 1], 6, [1.0, 10.0, 0.1]).tolist()
    [2, 1]
    """
    counts = np.asarray(counts, dtype=np.float64)
    medians = np.asarray(medians, dtype=np.float64)
    value = counts / float(n_counts) * 10_000 / medians
    nz = np.flatnonzero(counts > 0)
    order = nz[np.argsort(-value[nz], kind="stable")]
    return order[:max_len]


def check_rank_value_encoding(fn: Callable | None, seed: int = 0) -> bool:
    """Check a learner's ``fn(counts, n_counts, medians) -> gene indices`` against the reference."""
    if _missing(fn, "write a function rank_value_encode(counts, n_counts, medians).") or not callable(fn):
        if fn is not None and not callable(fn):
            print("Not quite. The answer should be a function, e.g. `def rank_value_encode(...)`.")
        return False
    rng = np.random.default_rng(seed)
    for trial in range(5):
        n = 60
        counts = rng.negative_binomial(1, 0.3, size=n) * (rng.random(n) < 0.4)
        counts[0] = max(counts[0], 1)
        medians = rng.lognormal(0, 1, size=n)
        n_counts = counts.sum() + 10
        expected = reference_rank_value_encoding(counts, n_counts, medians)
        got, err = _safe_call(fn, counts.copy(), n_counts, medians.copy())
        if err:
            print(f"Not quite. Your function raised {err}")
            return False
        got = np.asarray(got).ravel()
        if got.shape != expected.shape:
            return _feedback(False, "", f"expected {len(expected)} genes (only non-zero counts), "
                             f"got {len(got)}. Did you drop genes with zero counts?")
        if not np.array_equal(got, expected):
            if np.array_equal(got, expected[::-1]):
                return _feedback(False, "", "the order is reversed: highest normalised value first.")
            raw = np.flatnonzero(counts > 0)[np.argsort(-counts[counts > 0], kind="stable")]
            if np.array_equal(got, raw):
                return _feedback(False, "", "you ranked by raw counts; divide by each gene's median.")
            return _feedback(False, "", f"order differs from the reference in trial {trial}.")
    return _feedback(True, "Your encoder matches the rank-value encoding on 5 random cells.", "")


def reference_attention(Q, K, V):
    """Scaled dot-product attention: returns ``(output, weights)``; rows of weights sum to 1."""
    Q, K, V = (np.asarray(a, dtype=np.float64) for a in (Q, K, V))
    scores = Q @ K.T / np.sqrt(Q.shape[-1])
    scores -= scores.max(axis=-1, keepdims=True)
    w = np.exp(scores)
    w /= w.sum(axis=-1, keepdims=True)
    return w @ V, w


def check_attention(fn: Callable | None, seed: int = 0) -> bool:
    """Check ``fn(Q, K, V) -> (output, weights)`` implements scaled dot-product attention."""
    if _missing(fn, "write attention(Q, K, V) returning (output, weights).") or not callable(fn):
        return False
    rng = np.random.default_rng(seed)
    Q, K, V = rng.normal(size=(5, 8)), rng.normal(size=(5, 8)), rng.normal(size=(5, 3))
    res, err = _safe_call(fn, Q, K, V)
    if err:
        print(f"Not quite. Your function raised {err}")
        return False
    try:
        out, w = res
        out, w = np.asarray(out, float), np.asarray(w, float)
    except Exception:  # noqa: BLE001
        print("Not quite. Return two arrays: (output, weights).")
        return False
    ref_out, ref_w = reference_attention(Q, K, V)
    if w.shape != ref_w.shape or out.shape != ref_out.shape:
        return _feedback(False, "", f"shapes: weights {w.shape} (expected {ref_w.shape}), output "
                         f"{out.shape} (expected {ref_out.shape}).")
    if not np.allclose(w.sum(1), 1, atol=1e-6):
        return _feedback(False, "", "each row of the weights should sum to 1 (softmax over keys, axis=-1).")
    unscaled = np.exp(Q @ K.T - (Q @ K.T).max(1, keepdims=True))
    unscaled /= unscaled.sum(1, keepdims=True)
    if np.allclose(w, unscaled, atol=1e-6):
        return _feedback(False, "", "divide the scores by sqrt(d_k) before the softmax.")
    ok = np.allclose(w, ref_w, atol=1e-6) and np.allclose(out, ref_out, atol=1e-6)
    return _feedback(ok, "weights and output match scaled dot-product attention.",
                     "values differ from softmax(Q Kᵀ / √d) V.")


def check_masked_prediction(answer, *, model, dataset, cell: int, position: int) -> bool:
    """Check the symbol of the model's top-1 guess when ``position`` of ``cell`` is masked.

    The check recomputes the prediction itself, so it cannot be fooled by a stale variable.
    """
    if _missing(answer, "put the top-1 predicted gene symbol in `answer`."):
        return False
    import torch

    vocab = model.gene_vocab
    ids = list(dataset[cell]["input_ids"])
    ids[position] = vocab.mask_token_id
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, position]
    top10 = vocab.symbols(torch.topk(logits, 10).indices.tolist())
    ans = str(answer).strip().upper()
    if ans == top10[0].upper():
        return _feedback(True, f"{top10[0]} is the model's top guess.", "")
    if ans in [s.upper() for s in top10]:
        return _feedback(False, "", f"{answer} is in the top 10 but not the top guess; take the "
                         "highest logit at the masked position (argmax over the vocabulary).")
    return _feedback(False, "", "mask the token, run the model, take the argmax of the logits at "
                     "the masked position and map it to a symbol with vocab.symbols().")


# --------------------------------------------------------------------------------------------
# Chapter 2 — Data preparation
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
    from .tokenize import tokenize

    full = np.asarray(tokenize(adata, vocab, progress=False)["length"], dtype=float)
    expected = 1 - np.minimum(full, model_input_size).sum() / full.sum()
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return _feedback(False, "", "the answer should be a single number.")
    if abs(value - expected) < 1e-3:
        return _feedback(True, f"{expected:.1%} of detected genes fall past position {model_input_size}.", "")
    if abs(value - (1 - expected)) < 1e-3:
        return _feedback(False, "", "that is the fraction kept; the question asks for the fraction dropped.")
    return _feedback(False, "", "compare the lengths with and without `model_input_size`.")
