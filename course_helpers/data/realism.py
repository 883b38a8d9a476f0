"""Droplet-likeness statistics: :func:`nonzero_medians` (Geneformer-style gene medians) and
:func:`realism_table` (library size, genes per cell, zeros, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._utils import CourseInputError


def nonzero_medians(adata, *, target_sum: float = 1e4) -> pd.Series:
    """Geneformer-style gene medians: the non-zero median of ``count / n_counts * 10,000``.

    Parameters
    ----------
    adata
        AnnData with raw counts in ``X`` and (optionally) ``obs["n_counts"]``; without it the
        row sums are used.
    target_sum
        Normalisation target (Geneformer uses 10,000).

    Returns
    -------
    pandas.Series
        One value per gene (``NaN`` for genes never detected), indexed like ``var_names``.

    Examples
    --------
    >>> from course_helpers.data import simulate_tissue
    >>> a = simulate_tissue(300, seed=0, progress=False)
    >>> med = nonzero_medians(a)
    >>> bool(med[a.var["gene_class"] == "housekeeping"].median() > med.median())
    True
    """
    X = sp.csr_matrix(adata.X, dtype=np.float64)
    n = (adata.obs["n_counts"].to_numpy(float) if "n_counts" in adata.obs
         else np.asarray(X.sum(1)).ravel())
    if (n <= 0).any():
        raise CourseInputError("some cells have n_counts <= 0. Fix: remove empty cells first.")
    Xn = sp.diags(target_sum / n) @ X
    Xn = Xn.tocsc()
    out = np.full(Xn.shape[1], np.nan)
    for j in range(Xn.shape[1]):
        d = Xn.data[Xn.indptr[j]:Xn.indptr[j + 1]]
        d = d[d > 0]
        if d.size:
            out[j] = np.median(d)
    return pd.Series(out, index=adata.var_names)


def _one_realism_row(adata) -> dict:
    X = sp.csr_matrix(adata.X)
    n_cells, n_genes = X.shape
    tot = np.asarray(X.sum(1)).ravel()
    lib = adata.obs["n_counts"].to_numpy(float) if "n_counts" in adata.obs else tot
    det = np.diff(X.indptr)
    if "gene_symbol" in adata.var:
        sym = adata.var["gene_symbol"].astype(str)
    else:
        sym = pd.Series(adata.var_names.astype(str), index=adata.var_names)
    mito = sym.str.upper().str.startswith("MT-").to_numpy()
    if "percent_mito" in adata.obs:  # e.g. pbmc68k_reduced: its X lacks most MT- genes
        mt_frac = adata.obs["percent_mito"].to_numpy(float)
    elif mito.any():
        mt_frac = np.asarray(X[:, mito].sum(1)).ravel() / np.maximum(tot, 1)
    else:
        mt_frac = np.full(n_cells, np.nan)
    mean = np.asarray(X.mean(0)).ravel()
    sq = np.asarray(X.multiply(X).mean(0)).ravel()
    var = sq - mean ** 2
    keep = mean > 0.05
    phi = (var[keep] - mean[keep]) / mean[keep] ** 2
    lm, lv = np.log10(mean[mean > 0]), np.log10(np.maximum(var[mean > 0], 1e-12))
    slope = float(np.polyfit(lm, lv, 1)[0]) if lm.size > 2 else np.nan
    return {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "library_size_median": float(np.median(lib)),
        "library_size_q05": float(np.quantile(lib, 0.05)),
        "library_size_q95": float(np.quantile(lib, 0.95)),
        "counts_in_X_median": float(np.median(tot)),
        "genes_per_cell_median": float(np.median(det)),
        "genes_per_cell_q05": float(np.quantile(det, 0.05)),
        "genes_per_cell_q95": float(np.quantile(det, 0.95)),
        "genes_per_cell_obs_median": float(np.median(adata.obs["n_genes"]))
        if "n_genes" in adata.obs else float(np.median(det)),
        "zero_fraction": float(1.0 - X.nnz / (n_cells * n_genes)),
        "mito_fraction_median": float(np.nanmedian(mt_frac)),
        "frac_genes_overdispersed": float(np.mean(var[keep] > mean[keep])) if keep.any()
        else np.nan,
        "nb_dispersion_median": float(np.median(phi)) if keep.any() else np.nan,
        "log_var_vs_log_mean_slope": slope,
    }


def realism_table(adata, *, name: str | None = None) -> pd.DataFrame:
    """Droplet-likeness summary of one or several count matrices.

    Parameters
    ----------
    adata
        An AnnData with raw counts, or a ``{name: AnnData}`` mapping to compare several
        (e.g. the tissue and real PBMCs).
    name
        Row label when a single AnnData is given.

    Returns
    -------
    pandas.DataFrame
        One row per data set: library size (``obs["n_counts"]``) median and 5-95 % range,
        detected genes per cell (in ``X``; ``genes_per_cell_obs_median`` uses ``obs["n_genes"]``
        when present, e.g. the whole-transcriptome PBMC value), zero fraction, median
        mitochondrial fraction (``obs["percent_mito"]`` when present, else MT- genes of ``X``),
        fraction of genes with variance > mean (overdispersion), median method-of-moments NB dispersion
        (genes with mean > 0.05) and the slope of log variance on log mean.
        Note: PBMC ``n_counts`` counts the whole transcriptome while ``X`` holds 765 genes.

    Examples
    --------
    >>> from course_helpers.data import load_tissue
    >>> t = realism_table({"tissue": load_tissue("chapter")})
    >>> bool(0.80 <= t.loc["tissue", "zero_fraction"] <= 0.95)
    True
    """
    if isinstance(adata, Mapping):
        rows = {k: _one_realism_row(v) for k, v in adata.items()}
    else:
        rows = {name or "data": _one_realism_row(adata)}
    return pd.DataFrame.from_dict(rows, orient="index")
