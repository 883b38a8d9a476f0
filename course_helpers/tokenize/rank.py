"""The core of the tokenizer: :func:`rank_genes` orders each cell's genes by value (highest first)
within the rows of a CSR block, with ties broken by column order.
"""

from __future__ import annotations

import numpy as np

from .._utils import CourseInputError

_INT64_MAX = np.iinfo(np.int64).max
_SORT_GROUP = 256  # rows sorted together in one padded 2-D block


def rank_genes(indptr, genes, values, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Order each row's genes by value (highest first) and keep at most ``max_len`` of them.

    A vectorised segmented sort: rows are grouped by length and each group is sorted as one padded
    2-D block of packed int64 keys; there is no Python loop over cells or genes. Exact ties keep
    their input order, so the result is the same as a stable sort of every row.

    Parameters
    ----------
    indptr
        CSR row pointer (``n_rows + 1`` entries).
    genes
        Integer label of each entry (e.g. token ids), aligned with ``values``.
    values
        Positive finite float64 values.
    max_len
        Maximum number of genes kept per row.

    Returns
    -------
    (flat, lengths)
        ``flat``: the kept labels, row after row; ``lengths``: how many each row kept.

    Examples
    --------
    >>> flat, lens = rank_genes(np.array([0, 3, 4]), np.array([10, 11, 12, 13]),
    ...                         np.array([1.0, 3.0, 2.0, 5.0]), max_len=2)
    >>> flat.tolist(), lens.tolist()
    ([11, 12, 13], [2, 1])
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.size and not (np.isfinite(values).all() and values.min() > 0):
        raise CourseInputError("rank_genes needs positive finite values.")
    ent, lens = _rank_entries(indptr - indptr[0], values[indptr[0] : indptr[-1]], max_len)
    return np.asarray(genes)[indptr[0] :][ent], lens


def _rank_entries(indptr: np.ndarray, values: np.ndarray, max_len: int):
    """Entry indices of each row ordered by value (desc, ties by entry order), truncated.

    ``indptr`` must start at 0 and ``values`` be positive and finite. Returns ``(ent, out_lens)``
    where ``ent`` lists, row after row, the indices (into ``values``) of the kept entries.

    How: positive float64 values order exactly like their bit patterns read as int64. Each entry
    gets one int64 sort key: the high bits of its (descending) value bits, and in the low bits its
    position in the row. Rows of similar length are padded into 2-D blocks and sorted in place
    with ``np.sort`` (much faster than ``argsort``); the position bits say where each entry came
    from. Rows where two kept (or kept/first dropped) entries share the same high bits, i.e. exact
    ties or values within ~1e-12 relative of each other, are re-ranked exactly with a stable
    ``lexsort`` on the full float64 values.
    """
    n = indptr.size - 1
    lens = np.diff(indptr)
    out_lens = np.minimum(lens, max_len)
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(out_lens, out=out_ptr[1:])
    nnz = int(indptr[-1])
    ent_out = np.empty(int(out_ptr[-1]), dtype=np.int64 if nnz >= 2**31 else np.int32)
    if n == 0 or nnz == 0:
        return ent_out, out_lens
    if (
        values.min() < 1e-300
    ):  # keep clear of subnormals, whose bit patterns would reach the padding
        raise CourseInputError(
            "Normalised values below 1e-300: check n_counts and the gene medians."
        )
    pos_bits = max(1, int(lens.max() - 1).bit_length())
    pos_mask = np.int64((1 << pos_bits) - 1)
    pos = np.arange(nnz, dtype=np.int64)
    pos -= np.repeat(indptr[:-1], lens)
    key = np.subtract(_INT64_MAX, values.view(np.int64))  # ascending key = descending value
    key &= ~pos_mask
    key |= pos
    order = np.argsort(lens, kind="stable")  # rows of similar length share a padded block
    groups = []
    row_base = np.empty(n, dtype=np.int64)
    off = 0
    for s in range(0, n, _SORT_GROUP):
        e = min(s + _SORT_GROUP, n)
        rows = order[s:e]
        width = int(lens[rows[-1]])
        row_base[rows] = off + np.arange(e - s, dtype=np.int64) * width
        groups.append((rows, width, off))
        off += (e - s) * width
    buf = np.full(off, _INT64_MAX, dtype=np.int64)  # padding sorts last
    pos += np.repeat(row_base, lens)
    buf[pos] = key
    del pos, key
    flagged = []
    near = np.int64(1 << pos_bits)
    for rows, width, off in groups:
        if width == 0:
            continue
        m = buf[off : off + rows.size * width].reshape(rows.size, width)
        m.sort(axis=1)
        kw = min(width, max_len)
        ol = out_lens[rows]
        # (Near-)ties among the kept entries, or between the last kept and the first dropped:
        # adjacent sorted keys whose value bits agree down to the position bits. Keys in a row
        # are distinct (position bits), so a difference < 2**pos_bits means equal value bits
        # (or, rarely, value bits one step apart: a harmless extra exact re-rank).
        cw = min(width, max_len + 1)
        if cw > 1:
            lim = np.minimum(lens[rows], max_len + 1)  # compare columns j-1, j for j < lim
            full_w = max(int(lim[0]), 1)  # rows are sorted by length: all real up to here
            t = (
                (np.diff(m[:, :full_w], axis=1) < near).any(axis=1)
                if full_w > 1
                else np.zeros(rows.size, bool)
            )
            if cw > full_w:
                tail = m[:, full_w - 1 : cw]
                d = np.diff(tail, axis=1) < near
                d &= np.arange(full_w, cw)[None, :] < lim[:, None]
                t |= d.any(axis=1)
            if t.any():
                flagged.append(rows[t])
        p = m[:, :kw] & pos_mask
        p += indptr[rows][:, None]
        if ol[0] == kw:  # every row of the block fills the kept width
            if rows.size == 1 or np.all(np.diff(rows) == 1):
                ent_out[out_ptr[rows[0]] : out_ptr[rows[-1] + 1]] = p.ravel()
                continue
            dst = (out_ptr[rows][:, None] + np.arange(kw)).ravel()
            ent_out[dst] = p.ravel()
        else:
            mask = np.arange(kw)[None, :] < ol[:, None]
            dst = (out_ptr[rows][:, None] + np.arange(kw))[mask]
            ent_out[dst] = p[mask]
    if flagged:
        _stable_rows(np.concatenate(flagged), indptr, values, out_ptr, out_lens, ent_out)
    return ent_out, out_lens


def _stable_rows(rows, indptr, values, out_ptr, out_lens, ent_out):
    """Re-rank ``rows`` exactly: value descending, ties in entry order; write them back."""
    lens = indptr[rows + 1] - indptr[rows]
    starts = np.zeros(rows.size, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    r = np.repeat(np.arange(rows.size), lens)
    ent = np.repeat(indptr[rows] - starts, lens) + np.arange(int(lens.sum()))
    o = np.lexsort((ent, -values[ent], r))
    ent, r = ent[o], r[o]
    rank = np.arange(ent.size) - starts[r]
    keep = rank < out_lens[rows][r]
    ent_out[out_ptr[rows][r[keep]] + rank[keep]] = ent[keep]
