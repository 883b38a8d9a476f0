"""Tokenizing chunks of cells: read a block of rows, check it, normalise and rank it, wrap V2
sequences in ``<cls>``/``<eos>``, and yield Arrow record batches (optionally in threads).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from .._utils import CourseInputError
from .._utils import progress as _progress
from .inputs import _zero_cells_msg
from .plan import TARGET_SUM, _Plan
from .rank import _rank_entries


def _read_chunk(plan: _Plan, start: int, stop: int):
    """Rows [start, stop) that pass the filter, as CSR, plus their global row indices."""
    x = plan.X[start:stop]
    if not sp.issparse(x):
        x = sp.csr_matrix(np.asarray(x))
    elif not sp.isspmatrix_csr(x):
        x = sp.csr_matrix(x)
    rows = np.arange(start, stop)
    if plan.keep is not None:
        sel = plan.keep[start:stop]
        if not sel.all():
            x = x[np.flatnonzero(sel)]
            rows = rows[sel]
    if not x.has_sorted_indices:
        x = x.copy()
        x.sort_indices()
    return x, rows


def _row_sums(data, indptr):
    n = indptr.size - 1
    out = np.zeros(n, dtype=np.float64)
    lens = np.diff(indptr)
    nz = lens > 0
    if data.size and nz.any():
        out[nz] = np.add.reduceat(data.astype(np.float64, copy=False), indptr[:-1][nz])
    return out


def _validate_chunk(plan: _Plan, x, rows, counts_col):
    data = x.data
    if data.size:
        if data.dtype.kind == "f":
            mn, mx = data.min(), data.max()
            if np.isnan(mn) or np.isnan(mx) or np.isinf(mn) or np.isinf(mx):
                n_nan = int(np.isnan(data).sum())
                n_inf = int(np.isinf(data).sum())
                raise CourseInputError(
                    f"The expression matrix holds {n_nan} NaN and {n_inf} infinite value(s). "
                    "Tokenisation needs raw counts (whole numbers >= 0). Fix: use the raw count "
                    "matrix" + (f" ({plan.hints})" if plan.hints else "") + "."
                )
        else:
            mn = data.min()
        if mn < 0:
            raise CourseInputError(
                f"The expression matrix holds {int((data < 0).sum())} negative value(s) (min "
                f"{float(mn):g}), so it is not raw counts (scaled or batch-corrected data?). Fix: "
                "use the raw count matrix" + (f" ({plan.hints})" if plan.hints else "") + "."
            )
        if data.dtype.kind == "f":
            frac = data != np.rint(data)
            if frac.any():
                fr = np.abs(data - np.rint(data)) > 1e-6
                if fr.any():
                    ex = ", ".join(f"{float(v):.4g}" for v in data[fr][:3])
                    raise CourseInputError(
                        f"The expression matrix does not look like raw counts: "
                        f"{int(fr.sum())} of {data.size} non-zero values in rows "
                        f"{rows[0]}-{rows[-1]} are not whole numbers (e.g. {ex}). It looks "
                        "log-transformed or normalised, and Geneformer normalises raw counts "
                        "itself. Fix: tokenise the raw counts"
                        + (f" ({plan.hints})" if plan.hints else "")
                        + "."
                    )
    sums = _row_sums(data, x.indptr)
    zero = sums <= 0
    if zero.any():
        raise CourseInputError(
            _zero_cells_msg(
                int(zero.sum()), plan.labels[rows[np.argmax(zero)]], "all-zero rows of X"
            )
        )
    nc = plan.n_counts[rows]
    bad = nc < sums * (1 - 1e-9) - 1e-6
    if bad.any():
        i = int(np.argmax(bad))
        raise CourseInputError(
            f"obs['{counts_col}'] is smaller than the sum of the cell's counts in X for "
            f"{int(bad.sum())} cell(s) (e.g. {plan.labels[rows[i]]!r}: {counts_col}={nc[i]:g}, "
            f"row sum={sums[i]:g}). It must be the cell's total raw count (over all genes, before "
            f'any gene filtering). Fix: `adata.obs["{counts_col}"] = adata.X.sum(axis=1).A1` '
            "on the raw counts."
        )


def _tokenize_chunk(plan: _Plan, x, n_counts) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (flat) and lengths of the cells in CSR block ``x`` (already filtered)."""
    n = x.shape[0]
    inv_n = 1.0 / n_counts
    if plan.has_duplicates:
        # sum the counts of columns that share a gene ID (reference: collapse_gene_ids)
        g_all = plan.col_gene[x.indices]
        m = (g_all >= 0) & (x.data != 0)
        cm = np.zeros(m.size + 1, dtype=np.int64)
        np.cumsum(m, out=cm[1:])
        y = sp.csr_matrix(
            (x.data[m].astype(np.float64), g_all[m], cm[x.indptr]), shape=(n, plan.gene_token.size)
        )
        y.sum_duplicates()
        indptr = y.indptr.astype(np.int64)
        genes = y.indices
        values = y.data * np.repeat(inv_n, np.diff(indptr))
        values *= float(TARGET_SUM)
        values *= plan.gene_inv_median[genes]
        labels = plan.gene_token
    else:
        # exactly the reference's float64 arithmetic: ((count * (1/n_counts)) * 10000) * (1/median)
        indptr = x.indptr.astype(np.int64)
        values = np.repeat(inv_n, np.diff(indptr))  # float64
        values *= x.data  # float32 counts are widened exactly to float64 first
        values *= float(TARGET_SUM)
        values *= plan.col_inv_median[x.indices]  # 0 for genes outside the vocabulary
        genes = x.indices
        keep = values > 0  # drops genes outside the vocabulary and stored zeros
        if not keep.all():
            cm = np.zeros(keep.size + 1, dtype=np.int64)
            np.cumsum(keep, out=cm[1:])
            indptr = cm[indptr]
            values = values[keep]
            genes = genes[keep]
        labels = plan.col_token
    ent, lens = _rank_entries(indptr, values, plan.max_genes)
    flat = labels[genes[ent]]
    if plan.cls_id is not None:
        flat, lens = _wrap(flat, lens, plan.cls_id, plan.eos_id)
    return flat, lens


def _wrap(flat, lens, cls_id, eos_id):
    n = lens.size
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens + 2, out=off[1:])
    out = np.empty(int(off[-1]), dtype=flat.dtype)
    out[off[:-1]] = cls_id
    out[off[1:] - 1] = eos_id
    row = np.repeat(np.arange(n), lens)
    out[np.arange(flat.size) + 2 * row + 1] = flat
    return out, lens + 2


def _chunk_arrays(plan: _Plan, start: int, stop: int, validate: bool, counts_col: str):
    """Read, check and tokenise rows [start, stop): (flat ids, lengths, kept global rows)."""
    x, rows = _read_chunk(plan, start, stop)
    if not rows.size:
        return None, None, rows
    if validate:
        _validate_chunk(plan, x, rows, counts_col)
    flat, lens = _tokenize_chunk(plan, x, plan.n_counts[rows])
    return flat, lens, rows


def _n_threads() -> int:
    """Worker threads for chunk tokenisation: at most 2 (NumPy's sort, ufuncs and fancy
    indexing release the GIL, so two chunks overlap well; more threads gain little here)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        n = os.cpu_count() or 1
    return max(1, min(2, n))


def _batches(plan: _Plan, chunk_size: int, validate: bool, show_progress: bool, counts_col: str):
    """Yield one pyarrow RecordBatch per chunk of cells, in input order.

    Chunks are tokenised by up to two threads with a bounded look-ahead, so memory stays
    constant in the number of cells; an input error is raised for the first bad chunk in order.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    kept_before = 0
    starts = range(0, plan.n_cells, chunk_size)
    n_threads = _n_threads() if len(starts) > 1 else 1
    with (
        _progress(total=plan.n_cells, enabled=show_progress, desc="Tokenizing", unit="cell") as bar,
        ThreadPoolExecutor(max_workers=n_threads) as pool,
    ):
        pending = deque()
        it = iter(starts)

        def submit_next():
            s = next(it, None)
            if s is not None:
                e = min(s + chunk_size, plan.n_cells)
                pending.append(
                    (e - s, pool.submit(_chunk_arrays, plan, s, e, validate, counts_col))
                )

        try:
            for _ in range(n_threads + 1):
                submit_next()
            while pending:
                n_in, fut = pending.popleft()
                flat, lens, rows = fut.result()
                submit_next()
                if rows.size:
                    offsets = np.zeros(lens.size + 1, dtype=np.int32)
                    np.cumsum(lens, out=offsets[1:])
                    cols = [
                        pa.ListArray.from_arrays(
                            pa.array(offsets), pa.array(flat.astype(np.int32, copy=False))
                        ),
                        pa.array(lens.astype(np.int64)),
                    ]
                    names = ["input_ids", "length"]
                    for name, arr in plan.attrs.items():
                        cols.append(arr.slice(kept_before, rows.size))
                        names.append(name)
                    kept_before += rows.size
                    yield pa.RecordBatch.from_arrays(cols, names=names)
                bar.update(n_in)
        finally:
            for _, fut in pending:
                fut.cancel()
