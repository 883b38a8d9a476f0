"""Checks for chapter 5 (Troubleshooting)."""
from __future__ import annotations

import numpy as np

from .._utils import renamed_parameters
from ._common import _as_number, _feedback, _missing


# --------------------------------------------------------------------------------------------
def check_fixed_tokenization(answer, reference_adata, vocab) -> bool:
    """Check a dataset tokenised from a "broken" copy of ``reference_adata``.

    The expected tokens are recomputed here by tokenising ``reference_adata`` (raw counts,
    Ensembl IDs) with ``vocab``; the answer must have identical ``input_ids`` for every cell.
    """
    if _missing(answer, "tokenise the broken AnnData and put the dataset in `answer`."):
        return False
    from ..tokenize import tokenize

    try:
        got = [list(x) for x in answer["input_ids"]]
    except Exception:  # noqa: BLE001 - anything that is not a tokenized dataset
        return _feedback(False, "", "`answer` should be the dataset returned by "
                         "ch.tokenize.tokenize(...), with an 'input_ids' column.")
    expected = [list(x) for x in tokenize(reference_adata, vocab, progress=False)["input_ids"]]
    if len(got) != len(expected):
        return _feedback(False, "", f"expected {len(expected)} cells, got {len(got)}.")
    n_same = sum(a == b for a, b in zip(got, expected))
    if n_same == len(expected):
        return _feedback(True, "every cell has exactly the tokens of the clean data.", "")
    if all(sorted(a) == sorted(b) for a, b in zip(got, expected)):
        return _feedback(False, "", "the right genes, but in the wrong order: did you tokenise "
                         "the log-normalised X instead of the raw counts (layer=...)?")
    return _feedback(False, "", f"{len(expected) - n_same} of {len(expected)} cells differ from "
                     "the clean data. Fix both problems: the gene IDs and the values.")


def _largest_fitting_batch(budget, n_cells, max_len, n_layers, heads, n_genes, hidden_size,
                           method, upper=4096) -> int:
    from ..attention import estimate_attention_memory

    best = 0
    for b in range(1, upper + 1):
        est = estimate_attention_memory(n_cells, max_len, n_layers, heads, batch_size=b,
                                        n_genes=n_genes, method=method, hidden_size=hidden_size)
        if est <= budget:
            best = b
        else:
            break
    return best


@renamed_parameters(layers="n_layers")
def check_attention_batch_size(answer, budget_bytes, *, n_cells, max_len, n_layers, heads,
                               n_genes, hidden_size=None, method="weight") -> bool:
    """Check the largest ``batch_size`` whose attention-memory estimate fits ``budget_bytes``.

    The estimate is :func:`course_helpers.attention.estimate_attention_memory` with the given
    request; the expected answer is recomputed by trying batch sizes 1, 2, 3, ...
    """
    if _missing(answer, "an integer batch size."):
        return False
    b = _as_number(answer, int, "the answer should be one integer.")
    if b is None:
        return False
    if b != answer and not (isinstance(answer, float) and float(answer).is_integer()):
        return _feedback(False, "", "a batch size is a whole number of cells.")
    best = _largest_fitting_batch(int(budget_bytes), n_cells, max_len, n_layers, heads, n_genes,
                                  hidden_size, method)
    if best == 0:  # pragma: no cover - only for impossible budgets
        return _feedback(b == 0, "not even one cell fits this budget.",
                         "not even batch_size=1 fits: the answer is 0.")
    if b == best:
        return _feedback(True, f"batch_size={best} fits; {best + 1} would not.", "")
    if b > best:
        return _feedback(False, "", f"batch_size={b} does not fit the budget. Try smaller ones.")
    return _feedback(False, "", f"batch_size={b} fits, but a larger one fits too.")


def _padding_fraction(batches, lengths) -> float:
    lengths = np.asarray(lengths)
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / padded


def check_padding_fraction(answer, lengths, batch_size: int) -> bool:
    """Check ``(in_order, length_sorted)`` padding fractions for batches of ``batch_size``.

    Padding fraction = padded positions / all positions of the padded batches. ``in_order``:
    consecutive cells in dataset order; ``length_sorted``: batches from
    :func:`course_helpers.model.length_sorted_batches`.
    """
    if _missing(answer, "a pair (fraction in dataset order, fraction length-sorted)."):
        return False
    from ..model import length_sorted_batches

    lengths = np.asarray(lengths, dtype=np.int64)
    n, bs = len(lengths), int(batch_size)
    in_order = _padding_fraction([np.arange(i, min(i + bs, n)) for i in range(0, n, bs)],
                                 lengths)
    sorted_ = _padding_fraction(length_sorted_batches(lengths, bs), lengths)
    try:
        a, s = (float(v) for v in answer)
    except (TypeError, ValueError):
        return _feedback(False, "", "the answer should be two numbers: (in_order, length_sorted).")
    ok_a, ok_s = abs(a - in_order) < 1e-3, abs(s - sorted_) < 1e-3
    if ok_a and ok_s:
        return _feedback(True, f"{in_order:.1%} of the positions are padding in dataset order, "
                         f"{sorted_:.1%} after sorting by length.", "")
    if abs(a - sorted_) < 1e-3 and abs(s - in_order) < 1e-3:
        return _feedback(False, "", "the two numbers are swapped.")
    if not ok_a:
        return _feedback(False, "", "the dataset-order fraction is off: padded positions / "
                         "(longest cell of the batch x cells in the batch), summed over batches.")
    return _feedback(False, "", "the length-sorted fraction is off: use "
                     "ch.model.length_sorted_batches(lengths, batch_size).")


def reference_partial_correlation(x, y, control) -> float:
    """Pearson correlation of ``x`` and ``y`` after regressing both linearly on ``control``."""
    x, y, z = (np.asarray(v, dtype=np.float64).ravel() for v in (x, y, control))
    Z = np.column_stack([np.ones_like(z), z])
    rx = x - Z @ np.linalg.lstsq(Z, x, rcond=None)[0]
    ry = y - Z @ np.linalg.lstsq(Z, y, rcond=None)[0]
    return float(np.corrcoef(rx, ry)[0, 1])


def check_partial_correlation(answer, x, y, control) -> bool:
    """Check the partial (Pearson) correlation of ``x`` and ``y`` controlling for ``control``."""
    if _missing(answer, "a number between -1 and 1."):
        return False
    value = _as_number(answer, float, "the answer should be a single number.")
    if value is None:
        return False
    expected = reference_partial_correlation(x, y, control)
    raw = float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])
    if abs(value - expected) < 1e-3:
        return _feedback(True, f"partial r = {expected:.3f} (raw r = {raw:.3f}).", "")
    if abs(value - raw) < 1e-3:
        return _feedback(False, "", "that is the raw correlation; remove the part of both "
                         "variables that the control explains first (regress, keep residuals).")
    return _feedback(False, "", "regress x on the control and y on the control (with an "
                     "intercept), then correlate the two residuals.")
