"""Checks for chapter 1 (Foundations)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import _feedback, _missing, _safe_call


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


