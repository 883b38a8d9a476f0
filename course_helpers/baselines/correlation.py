"""TF -> gene Pearson / Spearman correlation networks on log-normalised counts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._utils import CourseInputError
from .inputs import _edge_frame, _expression, _pairs, _resolve_tfs, _symbols, _top_k


def _rank_columns(M: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(M, axis=0, method="average").astype(np.float64)


def _pearson_sparse(X: sp.csr_matrix, src_idx: np.ndarray) -> np.ndarray:
    X = sp.csc_matrix(X, dtype=np.float64)
    n = X.shape[0]
    mean = np.asarray(X.mean(axis=0)).ravel()
    sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
    sd = np.sqrt(np.maximum(sq - mean**2, 0.0))
    cross = (X[:, src_idx].T @ X).toarray() / n
    cov = cross - np.outer(mean[src_idx], mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.outer(sd[src_idx], sd)
    r[~np.isfinite(r)] = 0.0
    return np.clip(r, -1.0, 1.0)


def _spearman_chunked(X: sp.csr_matrix, src_idx: np.ndarray, chunk: int = 512) -> np.ndarray:
    X = sp.csc_matrix(X)
    n, g = X.shape

    def z(M):
        M = M - M.mean(axis=0)
        sd = M.std(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            M = M / sd
        M[:, sd == 0] = 0.0
        return M

    S = z(_rank_columns(X[:, src_idx].toarray()))
    r = np.empty((len(src_idx), g))
    for start in range(0, g, chunk):
        T = z(_rank_columns(X[:, start:start + chunk].toarray()))
        r[:, start:start + chunk] = S.T @ T / n
    return np.clip(r, -1.0, 1.0)


def correlation_network(adata, tfs=None, method: str = "pearson", layer: str | None = None, *,
                        normalize: bool = True, absolute: bool = True, top_k: int | None = None,
                        target_sum: float = 1e4, max_pairs: int = 20_000_000) -> pd.DataFrame:
    """TF -> gene co-expression network from correlation of log-normalised expression.

    Parameters
    ----------
    adata
        AnnData with raw integer counts (cells x genes), ``var_names`` Ensembl IDs.
    tfs
        Regulators (Ensembl IDs or symbols). ``None``: genes with ``var["gene_class"] == "tf"``
        if that column exists, otherwise every gene (a gene x gene network).
    method
        ``"pearson"`` or ``"spearman"``.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    normalize
        Counts per ``target_sum`` + ``log1p`` first (requires counts). ``False``: use the matrix as
        is (e.g. it is already log-normalised).
    absolute
        ``True`` (default): ``score = |r|`` (an edge of either sign); ``False``: ``score = r``
        (activating edges rank first). The signed value is always in ``r``, its sign in ``sign``.
    top_k
        Keep only the ``top_k`` highest-scoring targets per TF (default: all pairs).
    max_pairs
        Refuse more than this many TF x gene pairs (memory guard).

    Returns
    -------
    pandas.DataFrame
        ``source, target, score, r, sign, source_symbol, target_symbol``, one row per TF x gene
        pair (no self pairs), sorted by ``score``. Genes with zero variance get ``r = 0``.

    Examples
    --------
    >>> import course_helpers as ch
    >>> adata = ch.data.load_tissue()[:200, :300].copy()   # the 23 TFs are its first genes
    >>> edges = correlation_network(adata)
    >>> edges.columns.tolist()
    ['source', 'target', 'score', 'r', 'sign', 'source_symbol', 'target_symbol']
    >>> len(edges) == 23 * (adata.n_vars - 1), edges["score"].is_monotonic_decreasing
    (True, True)
    >>> top = correlation_network(adata, ["GATA4", "TBX5"], method="spearman", top_k=3)  # 3 per regulator
    >>> top.groupby("source").size().tolist()
    [3, 3]
    """
    if method not in ("pearson", "spearman"):
        raise CourseInputError(f"method must be 'pearson' or 'spearman', got {method!r}.")
    X = _expression(adata, layer, normalize, target_sum)
    src = _resolve_tfs(adata, tfs, required=False)
    genes = pd.Index(adata.var_names)
    if len(src) * len(genes) > max_pairs:
        raise CourseInputError(
            f"{len(src)} sources x {len(genes)} genes = {len(src) * len(genes):,} pairs is more than "
            f"max_pairs={max_pairs:,} (about {len(src) * len(genes) * 60 / 1e9:.1f} GB as a table). "
            "Fix: pass tfs=[...] (regulators only) or restrict to highly variable genes, or raise "
            "max_pairs.")
    src_idx = genes.get_indexer(src)
    r = _pearson_sparse(X, src_idx) if method == "pearson" else _spearman_chunked(X, src_idx)
    s, t, rv = _pairs(src_idx, len(genes), genes, r)
    df = _edge_frame(s, t, np.abs(rv) if absolute else rv, _symbols(adata),
                     {"r": rv, "sign": np.sign(rv).astype(np.int8)}, method=f"correlation_{method}")
    return _top_k(df, top_k)


# --------------------------------------------------------------------------------------------------
# WGCNA
