"""The perturbation rule: what ``"delete"`` and ``"overexpress"`` do to a cell's token ids.

One rule, two forms: :func:`perturb_ids` perturbs one cell (used by the widgets to place a
perturbed cell on a map), and :func:`_perturb_rows` builds many perturbed copies of one cell at
once with index arithmetic (used by the engine). :func:`perturb_ids` is :func:`_perturb_rows`
with one row, so the two cannot disagree.

The rule (reference ``in_silico_perturber.py``): ``"delete"`` removes the genes' tokens, so every
later gene moves up; ``"overexpress"`` moves the genes present in the cell to the front (after
``<cls>`` in V2 cells), in their original order, inserts absent genes after them, and cuts the
cell to the model's input size (keeping ``<eos>`` last).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._utils import CourseInputError

_PERTURB_TYPES = ("delete", "overexpress")


def _check_perturb_type(perturb_type) -> None:
    """Raise :class:`CourseInputError` unless ``perturb_type`` is ``"delete"`` or ``"overexpress"``."""
    if perturb_type not in _PERTURB_TYPES:
        raise CourseInputError(
            f"perturb_type={perturb_type!r} is not supported. Fix: use 'delete' or 'overexpress' "
            "(there is no 'mask' perturbation: Geneformer perturbs by changing the token order)."
        )


@dataclass
class _Rows:
    """Perturbed copies of one cell (the output of :func:`_perturb_rows`)."""

    tokens: np.ndarray  # (m, L) int64 token ids of the perturbed copies
    src: np.ndarray  # (m, L) int64: position in the (truncated) base of each token, -1 = inserted
    trunc: int  # genes cut from the end of the base (overexpressing absent genes in full cells)
    front: int  # 1 when the cell starts with <cls> (kept in place), else 0
    has_eos: bool  # the cell ends with <eos> (kept last)


def _skip_map(m: int, width: int, removed: np.ndarray) -> np.ndarray:
    """``out[r, j]`` = j-th kept position of 0..n-1 when positions ``removed[r]`` are dropped.

    ``removed`` is (m, k), sorted ascending per row. No Python loop over rows or positions.
    """
    out = np.broadcast_to(np.arange(width, dtype=np.int64), (m, width)).copy()
    for c in range(removed.shape[1]):  # k is small (1 or 2)
        out += out >= removed[:, c : c + 1]
    return out


def _perturb_rows(
    x: np.ndarray,
    P: np.ndarray,
    T: np.ndarray,
    perturb_type: str,
    *,
    cls_id: int | None = None,
    eos_id: int | None = None,
    max_len: int | None = None,
) -> _Rows:
    """Perturbed copies of cell ``x``, one per row of ``P`` / ``T``.

    Row r deletes the positions ``P[r]`` (delete), or moves them to the front in their original
    order and inserts the tokens ``T[r]`` after them (overexpress). ``P`` is (m, k) sorted per
    row; ``T`` is (m, ka) (ignored for delete).
    """
    x = np.asarray(x, dtype=np.int64)
    n = len(x)
    m, k = P.shape
    ka = T.shape[1] if perturb_type == "overexpress" else 0
    front = 1 if (cls_id is not None and n and x[0] == cls_id) else 0
    has_eos = bool(eos_id is not None and n and x[-1] == eos_id)
    rest = _skip_map(m, n - k, P)
    if perturb_type == "delete":
        src = rest
    else:
        ins = np.full((m, ka), -1, dtype=np.int64)
        src = np.concatenate([rest[:, :front], P, ins, rest[:, front:]], axis=1)
    trunc = 0
    if max_len is not None and src.shape[1] > max_len:  # genes inserted into a full cell
        trunc = src.shape[1] - int(max_len)
        if has_eos:
            src = np.concatenate([src[:, : max_len - 1], src[:, -1:]], axis=1)
            src[src == n - 1] = n - 1 - trunc  # <eos> of the truncated base
        else:
            src = src[:, :max_len]
    if src.shape[1] == 0 or n == 0:
        tokens = np.zeros(src.shape, dtype=np.int64)
    else:
        tokens = x[np.clip(src, 0, None)]
    if ka:
        tokens[:, front + k : front + k + ka] = T[:, : max(0, tokens.shape[1] - front - k)]
    if trunc and has_eos:
        tokens[:, -1] = eos_id  # its src points into the truncated base
    return _Rows(tokens=tokens, src=src, trunc=trunc, front=front, has_eos=has_eos)


def perturb_ids(
    ids,
    tokens,
    perturb_type: str = "delete",
    *,
    cls_id: int | None = None,
    eos_id: int | None = None,
    max_len: int | None = None,
) -> np.ndarray:
    """A cell's token ids after deleting or overexpressing ``tokens`` together.

    The same rule :func:`~course_helpers.perturb.in_silico_perturb` applies (it calls the same
    code): ``"delete"`` removes the genes, so every later gene moves up one place;
    ``"overexpress"`` moves the genes present in the cell to the front (after ``<cls>``) in their
    original order, inserts absent genes after them (in the given order) and cuts the cell to
    ``max_len`` tokens, keeping ``<eos>`` last.

    Parameters
    ----------
    ids
        The cell's token ids (its rank-value encoding, as in ``input_ids``).
    tokens
        Token ids of the genes to perturb together (one id or a list). A gene counts at its
        first position in the cell. Deleting a gene the cell does not express changes nothing.
    perturb_type
        ``"delete"`` or ``"overexpress"``.
    cls_id, eos_id
        The model's ``<cls>`` and ``<eos>`` ids (V2 models; ``None`` for V1 and the teaching
        model): a leading ``<cls>`` and a trailing ``<eos>`` stay in place.
    max_len
        The model's input size (``model.config.max_position_embeddings``); ``None``: no cut.

    Returns
    -------
    numpy.ndarray
        The perturbed token ids (int64).

    Examples
    --------
    >>> perturb_ids([5, 6, 7, 8], [7], "delete").tolist()
    [5, 6, 8]
    >>> perturb_ids([5, 6, 7, 8], [8, 6], "overexpress").tolist()
    [6, 8, 5, 7]
    >>> perturb_ids([5, 6, 7, 8], [9, 7], "overexpress", max_len=4).tolist()
    [7, 9, 5, 6]
    >>> perturb_ids([2, 5, 6, 7, 3], [9], "overexpress", cls_id=2, eos_id=3, max_len=5).tolist()
    [2, 9, 5, 6, 3]
    """
    _check_perturb_type(perturb_type)
    x = np.asarray(ids, dtype=np.int64).reshape(-1)
    toks = np.asarray(tokens, dtype=np.int64).reshape(-1).tolist()
    toks = list(dict.fromkeys(int(t) for t in toks))
    where: dict[int, int] = {}
    for i, t in enumerate(x.tolist()):
        where.setdefault(t, i)
    P = np.asarray(sorted(where[t] for t in toks if t in where), dtype=np.int64)[None, :]
    T = np.asarray([t for t in toks if t not in where], dtype=np.int64)[None, :]
    if max_len is not None and int(max_len) < 1:
        raise CourseInputError(f"max_len must be at least 1, got {max_len}.")
    rows = _perturb_rows(
        x, P, T, perturb_type, cls_id=cls_id, eos_id=eos_id,
        max_len=None if max_len is None else int(max_len),
    )
    return rows.tokens[0]
