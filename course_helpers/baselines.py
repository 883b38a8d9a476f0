"""Classical gene-network baselines behind one small interface.

Every method takes the **same AnnData** the rest of the course uses (raw integer counts in ``X``,
``var_names`` = Ensembl IDs, ``var["gene_symbol"]``) and returns an **edge table**
``DataFrame(source, target, score, ..., source_symbol, target_symbol)`` with Ensembl IDs in
``source``/``target`` and a higher ``score`` meaning a more confident edge, so the network scorer
can rank every method the same way.

=======================  ==========================================================================
Function                 What it does
=======================  ==========================================================================
correlation_network      TF -> gene Pearson/Spearman correlation on log1p-normalised counts
wgcna_modules            WGCNA co-expression modules (PyWGCNA 2.2.1) + TF -> gene TOM edges
grnboost2                GRNBoost2-style gradient-boosting GRN (rustscenic 0.5.1)
regulons                 SCENIC-style regulons from the GRN + TF-target correlation (no motifs)
regulon_edges            the GRN edges that survive regulon building, as an edge table
regulon_activity         per-cell regulon activity with AUCell or ULM (decoupler 2.2.0)
pair_interaction         do two regulators act together? 2 x 2 interaction on counts or log scale
run_all_baselines        run several methods on one AnnData, with wall time and peak memory
=======================  ==========================================================================

The third-party libraries are optional (``pip install 'course_helpers[baselines]'``) and are
imported only inside the functions that need them.

Normalisation: unless ``normalize=False``, counts are scaled to ``target_sum`` (10,000) per cell
and ``log1p``-transformed, the input every one of these methods expects.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._utils import CourseInputError
from ._utils import progress as _progress
from .measure import PeakMemory

__all__ = [
    "BaselineResults",
    "WGCNAResult",
    "correlation_network",
    "grnboost2",
    "pair_interaction",
    "regulon_activity",
    "regulon_edges",
    "regulons",
    "run_all_baselines",
    "wgcna_modules",
]

_INSTALL_HINT = "pip install 'course_helpers[baselines]'"
_PINS = {"PyWGCNA": "PyWGCNA==2.2.1", "rustscenic": "rustscenic==0.5.1", "decoupler": "decoupler==2.2.0"}
EDGE_COLUMNS = ["source", "target", "score"]


# --------------------------------------------------------------------------------------------------
# optional imports
# --------------------------------------------------------------------------------------------------
def _require(module: str, what: str):
    """Import an optional dependency or raise an ImportError that says how to install it."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the optional package {_PINS.get(top, top)}, which is not installed "
            f"({exc}). Fix: {_INSTALL_HINT}"
        ) from exc


def _import_pywgcna():
    """Import PyWGCNA without letting it change global state.

    PyWGCNA 2.2.1 at import time switches off *all* Python warnings
    (``warnings.filterwarnings("ignore")``), silences NumPy floating-point errors
    (``np.seterr``) and restyles matplotlib (``sns.set_style("white")``, rcParams). We undo all of
    that so that importing it inside a notebook has no hidden side effects.
    """
    if "PyWGCNA" in sys.modules:
        return sys.modules["PyWGCNA"]
    import matplotlib

    old_err = np.geterr()
    try:
        with warnings.catch_warnings(), matplotlib.rc_context(), contextlib.redirect_stdout(
            io.StringIO()
        ):
            return _require("PyWGCNA", "wgcna_modules()")
    finally:
        np.seterr(**old_err)


_ECONOMY_SVD = True  # see _pywgcna_economy_svd; tests switch it off to check identical results


class _EconomySVDLinalg:
    """``numpy.linalg`` whose ``svd`` defaults to ``full_matrices=False``."""

    def __getattr__(self, name):
        return getattr(np.linalg, name)

    @staticmethod
    def svd(a, full_matrices=False, *args, **kwargs):
        return np.linalg.svd(a, full_matrices, *args, **kwargs)


class _NumpyEconomySVD:
    """Stands in for ``numpy`` inside PyWGCNA's module: everything is numpy except ``linalg.svd``."""

    linalg = _EconomySVDLinalg()

    def __getattr__(self, name):
        return getattr(np, name)


@contextlib.contextmanager
def _pywgcna_economy_svd():
    """Make PyWGCNA's module-eigengene SVD economy-sized for the duration of one run.

    PyWGCNA 2.2.1 ``moduleEigengenes`` calls ``np.linalg.svd(datModule)`` on each module's
    genes x cells matrix with the default ``full_matrices=True``, building a cells x cells matrix
    per module and call (~1 s and 32 MB each at 2,000 cells, 800 MB at 10,000) although it only
    uses the first right-singular vector. The economy SVD gives the same leading vectors: on our
    2,000-cell x 500-gene benchmark WGCNA ran ~3x faster (9 s vs 27 s) with identical modules.
    """
    mod = sys.modules.get("PyWGCNA.wgcna")
    if not _ECONOMY_SVD or mod is None or getattr(mod, "np", None) is not np:
        yield
        return
    mod.np = _NumpyEconomySVD()
    try:
        yield
    finally:
        mod.np = np


def _blas_threads(n: int | None):
    """Limit BLAS threads inside a block (threadpoolctl ships with scikit-learn)."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


@contextlib.contextmanager
def _numba_threads(n: int | None):
    """Limit numba's parallel threads inside a block (restored afterwards)."""
    numba = sys.modules.get("numba")
    if n is None or numba is None:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


# --------------------------------------------------------------------------------------------------
# input handling shared by every method
# --------------------------------------------------------------------------------------------------
def _matrix(adata, layer: str | None):
    if not hasattr(adata, "var_names") or not hasattr(adata, "X"):
        raise CourseInputError(
            f"Expected an AnnData object, got {type(adata).__name__}. "
            "Fix: pass the AnnData from course_helpers.data.load_tissue() (or anndata.read_h5ad)."
        )
    if layer is None:
        X = adata.X
    else:
        if layer not in adata.layers:
            raise CourseInputError(
                f"Layer {layer!r} not found; available layers: {list(adata.layers)}. "
                "Fix: pass layer=None to use adata.X or one of the listed layers."
            )
        X = adata.layers[layer]
    if X is None:
        raise CourseInputError("adata.X is empty (None). Fix: load the counts into adata.X.")
    if getattr(adata, "isbacked", False) and not sp.issparse(X) and not isinstance(X, np.ndarray):
        X = X[:]
    if adata.n_obs < 3 or adata.n_vars < 3:
        raise CourseInputError(
            f"The AnnData has {adata.n_obs} cells x {adata.n_vars} genes; network methods need at "
            "least 3 cells and 3 genes (in practice hundreds of cells). Fix: pass the full dataset."
        )
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][:5].tolist()
        raise CourseInputError(
            f"Duplicate gene IDs in var_names (e.g. {dup}). Fix: sum or drop duplicates first, e.g. "
            "adata = adata[:, ~adata.var_names.duplicated()].copy()."
        )
    return X


def _check_counts(X, layer: str | None) -> None:
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    data = X.data if sp.issparse(X) else np.asarray(X).ravel()
    if data.size > 2_000_000:  # a deterministic sample is enough to spot non-count data
        data = data[:: data.size // 2_000_000 + 1]
    data = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise CourseInputError(
            f"{where} contains NaN or infinite values. Fix: remove or zero them before running "
            "a baseline."
        )
    if data.size and data.min() < 0:
        raise CourseInputError(
            f"{where} contains negative values (min {data.min():.3g}), so it is not raw counts "
            "(it looks scaled/centred). Fix: pass raw integer counts (e.g. layer='counts' or "
            "adata.raw.to_adata()), or normalize=False if you really want to use this matrix as is."
        )
    frac = data - np.round(data)
    if data.size and np.any(np.abs(frac) > 1e-6):
        example = data[np.abs(frac) > 1e-6][:3].round(3).tolist()
        raise CourseInputError(
            f"{where} does not look like raw counts: found non-integer values such as {example} "
            f"(max {data.max():.3g}), i.e. the data look log-transformed or normalised already. "
            "The baselines normalise counts themselves (counts per 10k + log1p). Fix: pass raw "
            "integer counts (e.g. layer='counts' or adata.raw.to_adata()), or normalize=False if "
            "the matrix is already log-normalised."
        )


def _normalize_total(X, target_sum: float = 1e4) -> sp.csr_matrix:
    """Counts -> counts / total * target_sum, sparse CSR float64 (zero-count cells stay 0)."""
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csr_matrix(sp.diags(scale) @ X)


def _log_normalize(X, target_sum: float = 1e4) -> sp.csr_matrix:
    """Counts -> log1p(counts / total * target_sum), sparse CSR float32 (zero-count cells stay 0)."""
    X = _normalize_total(X, target_sum)
    np.log1p(X.data, out=X.data)
    return X.astype(np.float32)


def _expression(adata, layer: str | None, normalize: bool, target_sum: float = 1e4) -> sp.csr_matrix:
    """Validated (log-normalised) expression as CSR float32, cells x genes."""
    X = _matrix(adata, layer)
    if normalize:
        _check_counts(X, layer)
        return _log_normalize(X, target_sum)
    X = sp.csr_matrix(X, dtype=np.float32)
    if not np.all(np.isfinite(X.data)):
        raise CourseInputError("The expression matrix contains NaN or infinite values. Fix: remove them.")
    return X


def _symbols(adata) -> pd.Series:
    for col in ("gene_symbol", "gene_symbols", "feature_name", "symbol"):
        if col in adata.var.columns:
            sym = adata.var[col].astype(object)
            sym = sym.where(sym.notna() & (sym.astype(str) != ""), pd.Series(adata.var_names, index=adata.var_names))
            return pd.Series(sym.astype(str).values, index=adata.var_names, name="gene_symbol")
    return pd.Series(np.asarray(adata.var_names), index=adata.var_names, name="gene_symbol")


def _id_lookup(adata):
    """A function mapping an Ensembl ID (optionally versioned) or a symbol to a var_name or None."""
    var = set(map(str, adata.var_names))
    sym = _symbols(adata)
    sym_to_id: dict[str, str] = {}
    for gid, s in zip(sym.index.astype(str), sym.values):
        sym_to_id.setdefault(s, gid)
    upper = {}
    for s, gid in sym_to_id.items():
        upper.setdefault(s.upper(), gid)

    def lookup(g) -> str | None:
        g = str(g)
        if g in var:
            return g
        if g in sym_to_id:
            return sym_to_id[g]
        if g.upper() in upper:
            return upper[g.upper()]
        if "." in g and g.split(".")[0] in var:  # versioned Ensembl ID
            return g.split(".")[0]
        return None

    return lookup


def _to_ids(adata, genes: Iterable[str]) -> tuple[list[str], list[str]]:
    """Map Ensembl IDs or symbols to var_names; returns (found ids in order, unknown names)."""
    lookup = _id_lookup(adata)
    found, missing, seen = [], [], set()
    for g in genes:
        gid = lookup(g)
        if gid is None:
            missing.append(str(g))
        elif gid not in seen:
            seen.add(gid)
            found.append(gid)
    return found, missing


def _resolve_tfs(adata, tfs, *, required: bool = True) -> list[str]:
    if tfs is None:
        if "gene_class" in adata.var.columns:
            ids = adata.var_names[adata.var["gene_class"].astype(str).str.lower() == "tf"].tolist()
            if ids:
                return ids
        if required:
            raise CourseInputError(
                "No transcription-factor list given and adata.var has no 'gene_class' == 'tf' "
                "genes. Fix: pass tfs=[...] (Ensembl IDs or symbols), e.g. "
                "tfs=course_helpers.data.load_ground_truth().tfs."
            )
        return adata.var_names.tolist()
    if isinstance(tfs, str):
        tfs = [tfs]
    tfs = list(tfs)
    found, missing = _to_ids(adata, tfs)
    if not found:
        raise CourseInputError(
            f"None of the {len(tfs)} TFs given (e.g. {tfs[:3]}) is a gene of this AnnData "
            f"(var_names look like {adata.var_names[:3].tolist()}). Fix: pass TFs as Ensembl IDs "
            "from adata.var_names or as symbols from adata.var['gene_symbol'], and check that the "
            "species matches."
        )
    if missing:
        warnings.warn(
            f"{len(missing)} of {len(tfs)} TFs are not in the data and were skipped "
            f"(e.g. {missing[:5]}).",
            UserWarning,
            stacklevel=3,
        )
    return found


def _edge_frame(source, target, score, symbols: pd.Series, extra: dict | None = None,
                method: str = "") -> pd.DataFrame:
    df = pd.DataFrame({"source": np.asarray(source, dtype=object),
                       "target": np.asarray(target, dtype=object),
                       "score": np.asarray(score, dtype=np.float64)})
    for k, v in (extra or {}).items():
        df[k] = np.asarray(v)
    df["source_symbol"] = symbols.reindex(df["source"]).values
    df["target_symbol"] = symbols.reindex(df["target"]).values
    df = df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    df.attrs["method"] = method
    return df


def _pairs(src_idx: np.ndarray, n_genes: int, genes: pd.Index, values: np.ndarray):
    """Flatten a (n_src, n_genes) matrix into source/target/value arrays without self edges."""
    s = np.repeat(src_idx, n_genes)
    t = np.tile(np.arange(n_genes), len(src_idx))
    keep = s != t
    return genes[s[keep]], genes[t[keep]], values.ravel()[keep]


def _top_k(df: pd.DataFrame, k: int | None) -> pd.DataFrame:
    if k is None:
        return df
    if int(k) < 1:
        raise CourseInputError(f"top_k must be a positive integer or None, got {k}.")
    out = df.groupby("source", sort=False, group_keys=False).head(int(k))
    out = out.reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


# --------------------------------------------------------------------------------------------------
# correlation
# --------------------------------------------------------------------------------------------------
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


def correlation_network(adata, tfs=None, method: str = "pearson", layer: str | None = None,
                        normalize: bool = True, *, absolute: bool = True, top_k: int | None = None,
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
    >>> from course_helpers.baselines import correlation_network
    >>> edges = correlation_network(adata, tfs=["GATA4", "TBX5"])  # doctest: +SKIP
    >>> edges.head()  # doctest: +SKIP
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
# --------------------------------------------------------------------------------------------------
@dataclass
class WGCNAResult:
    """Result of :func:`wgcna_modules`.

    Attributes
    ----------
    modules
        ``pandas.Series`` gene ID -> module colour for **every** gene of the input; ``"grey"`` is
        WGCNA's "no module" (also used for constant genes that could not be clustered).
    edges
        TF -> gene edge table (``score`` = topological overlap, or adjacency), with
        ``source_module``, ``target_module`` and ``same_module`` columns.
    tom
        Topological overlap matrix (genes x genes ``DataFrame``) of the clustered genes.
    adjacency
        Soft-thresholded adjacency matrix (diagonal 0).
    eigengenes
        Cells x modules: first principal component of each module's standardised expression,
        sign-aligned with the module's mean expression (columns ``ME<colour>``).
    power, network_type, tom_type, min_module_size
        The settings used.
    scale_free_fit
        PyWGCNA's scale-free-topology table for the chosen power (``SFT.R.sq``, ``mean(k)``, ...).
    log
        PyWGCNA's captured console output.
    """

    modules: pd.Series
    edges: pd.DataFrame
    tom: pd.DataFrame
    adjacency: pd.DataFrame
    eigengenes: pd.DataFrame
    power: int
    network_type: str
    tom_type: str
    min_module_size: int
    scale_free_fit: pd.DataFrame | None = None
    log: str = field(default="", repr=False)

    def module_genes(self, include_grey: bool = False) -> dict[str, list[str]]:
        """Module colour -> list of gene IDs (largest module first)."""
        counts = self.modules.value_counts()
        return {m: self.modules.index[self.modules == m].tolist() for m in counts.index
                if include_grey or m != "grey"}

    @property
    def n_modules(self) -> int:
        """Number of modules (grey excluded)."""
        return int((self.modules.unique() != "grey").sum())

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        sizes = self.modules[self.modules != "grey"].value_counts().to_dict()
        return (f"WGCNAResult({self.n_modules} modules {sizes}, "
                f"{int((self.modules == 'grey').sum())} grey genes, power={self.power}, "
                f"{self.network_type!r}/{self.tom_type!r}, {len(self.edges)} edges)")


def _eigengenes(Z: np.ndarray, genes: pd.Index, modules: pd.Series, obs_names) -> pd.DataFrame:
    cols = {}
    for m in modules[modules != "grey"].value_counts().index:
        idx = genes.get_indexer(modules.index[modules == m])
        M = Z[:, idx]
        _, s, vt = np.linalg.svd(M.T, full_matrices=False)  # wide (genes x cells): fast
        pc = vt[0] * s[0]
        if np.corrcoef(pc, M.mean(axis=1))[0, 1] < 0:
            pc = -pc
        cols[f"ME{m}"] = pc / (np.std(pc) or 1.0)
    return pd.DataFrame(cols, index=pd.Index(obs_names))


def wgcna_modules(adata, power: int = 6, network_type: str = "signed hybrid",
                  tom_type: str = "signed", min_module_size: int = 10, seed: int = 0, *,
                  tfs=None, edge_score: str = "tom", deep_split: int = 2,
                  merge_cut_height: float = 0.2, layer: str | None = None,
                  normalize: bool = True, target_sum: float = 1e4,
                  max_memory_gb: float = 2.0, blas_threads: int | None = 1) -> WGCNAResult:
    """WGCNA co-expression modules with PyWGCNA 2.2.1, plus TF -> gene edges from the TOM.

    Steps (PyWGCNA's own pipeline): log-normalise counts, ``WGCNA.preprocess()`` (drops genes that
    are never expressed and outlier genes/samples), then ``WGCNA.findModules()``: soft-thresholded
    adjacency (``|cor|``-based, type ``network_type``), topological overlap (TOM), average-linkage
    clustering of ``1 - TOM``, dynamic tree cut (``deep_split``, ``min_module_size``) and merging
    of modules whose eigengenes correlate above ``1 - merge_cut_height``.

    The soft-threshold ``power`` is set explicitly: PyWGCNA's automatic choice looks for a
    scale-free fit ``R^2 > 0.9``, which single-cell data rarely reach, and then silently falls back
    to the best power in the list (often 1), which scored worse on our synthetic benchmark.
    The fit at your power is reported in ``result.scale_free_fit``.

    Parameters
    ----------
    adata
        AnnData with raw counts (cells x genes). WGCNA builds a genes x genes matrix, so use a few
        hundred to a few thousand genes (e.g. highly variable genes plus your TFs).
    power
        Soft-thresholding power (adjacency = correlation-based similarity ** power).
    network_type
        ``"unsigned"``, ``"signed"`` or ``"signed hybrid"`` (negative correlations -> 0).
    tom_type
        ``"unsigned"`` or ``"signed"``.
    min_module_size
        Smallest module the tree cut may report.
    seed
        Seeds NumPy's global generator for the run (restored afterwards); WGCNA itself is
        deterministic.
    tfs
        Sources of the returned edge table (Ensembl IDs or symbols); ``None``: the
        ``gene_class == "tf"`` genes, or all genes if there is no such column.
    edge_score
        ``"tom"`` (default) or ``"adjacency"``: what goes into ``edges["score"]``.
    deep_split, merge_cut_height
        Dynamic tree cut sensitivity (0-4) and eigengene merge height (PyWGCNA ``MEDissThres``).
    layer, normalize, target_sum
        See :func:`correlation_network`.
    max_memory_gb
        Refuse (with an estimate) inputs whose genes x genes and cells x cells matrices would need
        more than this.
    blas_threads
        BLAS threads during the run (``None``: leave as is). PyWGCNA makes many small
        linear-algebra calls for which BLAS threading only adds overhead; on a busy 2-core machine
        the default thread pool made WGCNA ~8x slower than one thread.

    Returns
    -------
    WGCNAResult
        ``.modules`` (gene -> module colour, ``"grey"`` = none), ``.edges``, ``.tom``,
        ``.eigengenes``, ...

    Raises
    ------
    CourseInputError
        Bad settings, non-count input, too large an input, or no module reached
        ``min_module_size`` (WGCNA then lumps every gene into one cluster).

    Examples
    --------
    >>> from course_helpers.baselines import wgcna_modules
    >>> res = wgcna_modules(adata, power=6, min_module_size=10)  # doctest: +SKIP
    >>> res.modules.value_counts()  # doctest: +SKIP
    >>> res.edges.head()  # doctest: +SKIP
    """
    if network_type not in ("unsigned", "signed", "signed hybrid"):
        raise CourseInputError(
            f"network_type must be 'unsigned', 'signed' or 'signed hybrid', got {network_type!r}.")
    if tom_type not in ("unsigned", "signed"):
        raise CourseInputError(f"tom_type must be 'unsigned' or 'signed', got {tom_type!r}.")
    if edge_score not in ("tom", "adjacency"):
        raise CourseInputError(f"edge_score must be 'tom' or 'adjacency', got {edge_score!r}.")
    if not (isinstance(power, (int, np.integer)) and 1 <= power <= 30):
        raise CourseInputError(
            f"power must be an integer between 1 and 30 (typical: 6 for signed hybrid, 12 for "
            f"signed networks), got {power!r}.")
    if not (isinstance(min_module_size, (int, np.integer)) and min_module_size >= 2):
        raise CourseInputError(f"min_module_size must be an integer >= 2, got {min_module_size!r}.")
    if deep_split not in (0, 1, 2, 3, 4):
        raise CourseInputError(f"deep_split must be 0, 1, 2, 3 or 4, got {deep_split!r}.")

    if int(pd.__version__.split(".")[0]) >= 3:
        raise RuntimeError(
            f"PyWGCNA 2.2.1 does not work with pandas {pd.__version__}: it relies on chained "
            "assignment (df.col[i] = ...), which pandas >= 3 (copy-on-write) forbids. "
            "Fix: pip install 'pandas<3'.")
    X = _expression(adata, layer, normalize, target_sum)
    src = _resolve_tfs(adata, tfs, required=False)
    all_genes = pd.Index(adata.var_names)
    n_cells = X.shape[0]

    # WGCNA cannot cluster constant genes (their correlations are undefined): keep them out and
    # report them as grey.
    Xd = X.toarray().astype(np.float64)
    var_ok = Xd.std(axis=0) > 0
    genes = all_genes[var_ok]
    n_genes = len(genes)
    est_gb = (6 * n_genes**2 * 8 + 1.5 * n_cells * (n_cells - 1) / 2 * 8 + 3 * Xd.nbytes) / 1e9
    if est_gb > max_memory_gb:
        raise CourseInputError(
            f"WGCNA on {n_cells} cells x {n_genes} genes needs about {est_gb:.1f} GB (genes x genes "
            f"TOM/adjacency and a cells x cells distance matrix for outlier detection), more than "
            f"max_memory_gb={max_memory_gb}. Fix: restrict to highly variable genes (e.g. "
            f"adata[:, hvg_mask]) and/or subsample cells, or raise max_memory_gb.")
    if n_genes < 3:
        raise CourseInputError(
            f"Only {n_genes} genes vary across cells; WGCNA needs at least 3. Fix: pass more genes.")
    if min_module_size > n_genes // 2:
        raise CourseInputError(
            f"min_module_size={min_module_size} is too large for {n_genes} expressed genes: no "
            f"module can reach that size, so no module would be found. Fix: lower min_module_size "
            f"(e.g. min_module_size={max(2, min(10, n_genes // 10))}) or pass more genes.")

    Xd = Xd[:, var_ok]
    import anndata as ad

    wg_in = ad.AnnData(X=Xd, obs=pd.DataFrame(index=pd.Index(adata.obs_names.astype(str))),
                       var=pd.DataFrame(index=pd.Index(genes.astype(str))))
    PyWGCNA = _import_pywgcna()
    import matplotlib.pyplot as plt

    figs_before = set(plt.get_fignums())
    log = io.StringIO()
    rng_state = np.random.get_state()
    failure = None
    try:
        np.random.seed(seed)
        with tempfile.TemporaryDirectory(prefix="course_wgcna_") as tmp, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
                warnings.catch_warnings(), np.errstate(all="ignore"), \
                pd.option_context("mode.copy_on_write", False), \
                _pywgcna_economy_svd(), _blas_threads(blas_threads):
            # (PyWGCNA needs chained assignment, hence no copy-on-write)
            warnings.simplefilter("ignore")
            w = PyWGCNA.WGCNA(name="course", anndata=wg_in, TPMcutoff=0, powers=[int(power)],
                              networkType=network_type, TOMType=tom_type,
                              minModuleSize=int(min_module_size), MEDissThres=merge_cut_height,
                              save=False, outputPath=tmp + os.sep)
            try:
                w.preprocess(show=False)
                w.findModules(kwargs_function={
                    "cutreeHybrid": {"deepSplit": deep_split, "pamRespectsDendro": False}})
            except SystemExit as exc:  # PyWGCNA calls sys.exit() on many conditions
                failure = str(exc)
            except (UnboundLocalError, NameError) as exc:
                # PyWGCNA 2.2.1 bug: exactly one module + grey -> `merge` is used before assignment
                # in findModules. The dynamic-tree-cut colours are already there; use them.
                failure = f"internal: {exc}"
    finally:
        np.random.set_state(rng_state)
        for num in set(plt.get_fignums()) - figs_before:
            plt.close(num)

    var = w.datExpr.var
    if failure is None:
        colors = var["moduleColors"]
    else:
        if "dynamicColors" not in var.columns:
            raise RuntimeError(f"PyWGCNA failed: {failure}\n{log.getvalue()[-2000:]}")
        colors = var["dynamicColors"]
        non_grey = set(colors) - {"grey"}
        if failure.startswith("internal") and len(non_grey) == 1 and (colors == "grey").any():
            pass  # one real module + unassigned genes: a valid result
        else:
            raise CourseInputError(
                f"WGCNA found no module of at least min_module_size={min_module_size} genes: the "
                f"dynamic tree cut left all {len(colors)} genes in a single cluster"
                f"{' (all unassigned)' if non_grey == set() else ''}. Fix: lower "
                f"min_module_size (e.g. {max(2, min_module_size // 2)} or less), or pass more genes / more "
                f"co-expressed genes (a different power can help too).")
    colors = pd.Series(np.asarray(colors, dtype=object), index=pd.Index(var.index))
    modules = pd.Series("grey", index=all_genes, name="module", dtype=object)
    modules.loc[colors.index] = colors.values

    kept = pd.Index(w.TOM.index)
    tom = pd.DataFrame(np.asarray(w.TOM, dtype=np.float64), index=kept, columns=kept)
    adj_arr = np.array(w.adjacency, dtype=np.float64)  # a copy: works under copy-on-write too
    np.fill_diagonal(adj_arr, 0.0)
    adj = pd.DataFrame(adj_arr, index=kept, columns=kept)

    src_kept = [g for g in src if g in kept]
    if not src_kept:
        raise CourseInputError(
            "None of the TFs varies across cells, so WGCNA could not place them in the network. "
            "Fix: pass TFs that are expressed in these cells.")
    s_idx = kept.get_indexer(src_kept)
    tom_rows, adj_rows = tom.to_numpy()[s_idx, :], adj.to_numpy()[s_idx, :]
    s, t, tom_v = _pairs(s_idx, len(kept), kept, tom_rows)
    _, _, adj_v = _pairs(s_idx, len(kept), kept, adj_rows)
    edges = _edge_frame(s, t, tom_v if edge_score == "tom" else adj_v, _symbols(adata), {
        "tom": tom_v, "adjacency": adj_v,
        "source_module": modules.reindex(s).values,
        "target_module": modules.reindex(t).values,
    }, method="wgcna")
    edges["same_module"] = (edges["source_module"] == edges["target_module"]) & (edges["source_module"] != "grey")

    Z = Xd[:, genes.get_indexer(kept)]
    Z = (Z - Z.mean(axis=0)) / Z.std(axis=0)
    eig = _eigengenes(Z, kept, modules.reindex(kept), adata.obs_names)
    sft = getattr(w, "sft", None)
    return WGCNAResult(modules=modules, edges=edges, tom=tom, adjacency=adj, eigengenes=eig,
                       power=int(power), network_type=network_type, tom_type=tom_type,
                       min_module_size=int(min_module_size),
                       scale_free_fit=sft.copy() if isinstance(sft, pd.DataFrame) else None,
                       log=log.getvalue())


# --------------------------------------------------------------------------------------------------
# GRNBoost2 (rustscenic)
# --------------------------------------------------------------------------------------------------
def grnboost2(adata, tfs=None, seed: int = 0, n_estimators: int | None = None,
              early_stop_window: int | None = None, *, layer: str | None = None,
              normalize: bool = True, target_sum: float = 1e4, verbose: bool = False,
              **kw) -> pd.DataFrame:
    """GRNBoost2-style GRN: for every gene, gradient-boosted trees predict it from the TFs.

    Edge ``TF -> target`` is scored by the TF's feature importance in the target's model.
    Runs ``rustscenic.grn.infer`` (rustscenic 0.5.1, Apache-2.0), a Rust reimplementation of
    arboreto's GRNBoost2 that is 10-40x faster. We use it because the usual tools no longer run on
    a current stack: arboreto 0.1.6's dask path is broken with current dask, and pySCENIC fails on
    NumPy 2.

    Parameters
    ----------
    adata
        AnnData with raw counts; log-normalised internally (rustscenic expects log-normalised input).
    tfs
        Candidate regulators (Ensembl IDs or symbols); ``None``: ``var["gene_class"] == "tf"``.
    seed
        Seed of the Rust random-number generator; the same seed gives identical edges.
    n_estimators, early_stop_window
        ``None`` keeps rustscenic's defaults (up to 5,000 trees per target, arboreto-style
        out-of-bag early stopping with window 25: fast, usually a few dozen trees). For a fixed,
        fuller fit use ``n_estimators=500, early_stop_window=0`` (no early stopping; slower,
        slightly better on our synthetic benchmark).
    **kw
        Passed to ``rustscenic.grn.infer`` (``learning_rate``, ``max_features``, ``subsample``,
        ``max_depth``, ``top_targets_per_tf``, ``min_importance``).

    Returns
    -------
    pandas.DataFrame
        ``source, target, score, importance, source_symbol, target_symbol`` (``score`` =
        ``importance``), only edges with importance > 0, sorted by score. Gene IDs are Ensembl IDs.

    Examples
    --------
    >>> from course_helpers.baselines import grnboost2
    >>> grn = grnboost2(adata, tfs, seed=0)  # doctest: +SKIP
    >>> full = grnboost2(adata, tfs, seed=0, n_estimators=500, early_stop_window=0)  # doctest: +SKIP
    """
    grn = _require("rustscenic.grn", "grnboost2()")
    X = _expression(adata, layer, normalize, target_sum)
    src = _resolve_tfs(adata, tfs)
    genes = [str(g) for g in adata.var_names]
    opts = dict(kw)
    if n_estimators is not None:
        opts["n_estimators"] = int(n_estimators)
    if early_stop_window is not None:
        opts["early_stop_window"] = int(early_stop_window)
    # A (matrix, names) tuple, not the AnnData: given an AnnData whose var_names are Ensembl IDs,
    # rustscenic silently switches to var["gene_symbol"] names.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*samples for.*genes.*")
        try:
            df = grn.infer((sp.csc_matrix(X), genes), src, seed=int(seed), verbose=verbose, **opts)
        except (ValueError, TypeError) as exc:
            raise CourseInputError(f"rustscenic.grn.infer rejected the settings: {exc}") from exc
    df = df[df["TF"] != df["target"]]
    out = _edge_frame(df["TF"].values, df["target"].values, df["importance"].values,
                      _symbols(adata), {"importance": df["importance"].values}, method="grnboost2")
    out.attrs["grn_fit"] = dict(df.attrs.get("grn_fit", {}))
    return out


# --------------------------------------------------------------------------------------------------
# regulons (rustscenic) and their activity (decoupler)
# --------------------------------------------------------------------------------------------------
def _as_rustscenic_adjacencies(grn_edges: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(grn_edges, pd.DataFrame):
        raise CourseInputError("grn_edges must be the DataFrame returned by grnboost2().")
    cols = set(grn_edges.columns)
    if {"TF", "target", "importance"} <= cols:
        adj = grn_edges[["TF", "target", "importance"]].copy()
    elif {"source", "target"} <= cols and ({"importance"} & cols or {"score"} & cols):
        w = "importance" if "importance" in cols else "score"
        adj = grn_edges[["source", "target", w]].rename(columns={"source": "TF", w: "importance"})
    else:
        raise CourseInputError(
            f"grn_edges needs columns source/target/importance (or score), got {list(grn_edges.columns)}. "
            "Fix: pass the output of grnboost2().")
    if adj.empty:
        raise CourseInputError("grn_edges is empty. Fix: run grnboost2() on these cells first.")
    adj["TF"] = adj["TF"].astype(str)
    adj["target"] = adj["target"].astype(str)
    return adj.reset_index(drop=True)


def regulons(adata, grn_edges: pd.DataFrame, *, rho_threshold: float = 0.03,
             top_targets_per_tf: int = 50, min_targets: int = 10,
             include_repressors: bool = False, layer: str | None = None, normalize: bool = True,
             target_sum: float = 1e4) -> dict[str, list[str]]:
    """SCENIC-style regulons from a GRN: correlation evidence only, **not motif evidence**.

    pySCENIC prunes GRNBoost2 modules with cisTarget motif enrichment (a TF keeps a target only if
    the TF's motif is enriched near it). The cisTarget ranking databases are multi-GB downloads
    that are not available offline, so here a regulon is the TF's top GRN targets whose expression
    **correlates** with the TF (``rustscenic.grn.add_correlation`` + ``build_regulons``): activator
    regulons keep targets with Pearson ``rho > rho_threshold``, repressor regulons those with
    ``rho < -rho_threshold``. Treat them as co-expression hypotheses, not direct binding.

    Parameters
    ----------
    adata
        The AnnData the GRN was inferred on (raw counts; log-normalised internally).
    grn_edges
        Output of :func:`grnboost2` (or any table with TF/source, target, importance/score).
    rho_threshold
        Minimum |Pearson correlation| for a TF-target pair to get a sign (pySCENIC's 0.03).
    top_targets_per_tf
        Keep at most this many targets per TF (by GRN importance).
    min_targets
        Drop regulons with fewer targets.
    include_repressors
        Also return repressor regulons, keyed ``"<TF>_repressor"``.

    Returns
    -------
    dict
        TF Ensembl ID (activator regulons; ``"<TF>_repressor"`` for repressors) -> list of target
        Ensembl IDs, ordered by importance.

    Examples
    --------
    >>> grn = grnboost2(adata, tfs)  # doctest: +SKIP
    >>> regs = regulons(adata, grn, min_targets=10)  # doctest: +SKIP
    >>> {tf: len(t) for tf, t in regs.items()}  # doctest: +SKIP
    """
    grn = _require("rustscenic.grn", "regulons()")
    X = _expression(adata, layer, normalize, target_sum)
    adj = _as_rustscenic_adjacencies(grn_edges)
    genes = pd.Index(adata.var_names.astype(str))
    unknown = ~(adj["TF"].isin(genes) & adj["target"].isin(genes))
    if unknown.all():
        raise CourseInputError(
            "None of the grn_edges genes is in this AnnData. Fix: pass the AnnData the GRN was "
            "inferred on.")
    adj = adj[~unknown].reset_index(drop=True)
    if int(min_targets) < 1 or int(top_targets_per_tf) < 1:
        raise CourseInputError("min_targets and top_targets_per_tf must be at least 1.")
    try:
        corr = grn.add_correlation(adj, (sp.csc_matrix(X), list(genes)), rho_threshold=rho_threshold)
        regs = grn.build_regulons(corr, top_targets_per_tf=int(top_targets_per_tf),
                                  min_targets=int(min_targets), include_repressors=include_repressors)
    except ValueError as exc:
        raise CourseInputError(f"rustscenic rejected the regulon settings: {exc}") from exc
    out: dict[str, list[str]] = {}
    for name, targets in regs.items():
        out[name.removesuffix("_activator")] = list(targets)
    if not out:
        warnings.warn(
            f"No regulon has {min_targets} or more correlated targets; lower min_targets or "
            "rho_threshold.", UserWarning, stacklevel=2)
    return out


def regulon_edges(regulons: Mapping[str, Sequence[str]], grn_edges: pd.DataFrame) -> pd.DataFrame:
    """The GRN edges kept in the regulons (activator regulons only), as an edge table.

    This is the "GRNBoost2 + regulon pruning" network: same scores as :func:`grnboost2`, fewer
    edges.

    Examples
    --------
    >>> pruned = regulon_edges(regulons(adata, grn), grn)  # doctest: +SKIP
    """
    keep = {(tf, t) for tf, targets in regulons.items() if not tf.endswith("_repressor")
            for t in targets}
    src_col = "source" if "source" in grn_edges.columns else "TF"
    mask = [(s, t) in keep for s, t in zip(grn_edges[src_col].astype(str), grn_edges["target"].astype(str))]
    out = grn_edges.loc[mask].reset_index(drop=True)
    out.attrs = dict(grn_edges.attrs)
    out.attrs["method"] = "regulons"
    return out


def regulon_activity(adata, regulons, method: str = "aucell", *, tmin: int = 5,
                     n_up: int | None = None, layer: str | None = None, normalize: bool = True,
                     target_sum: float = 1e4, return_pvalues: bool = False,
                     threads: int | None = 1):
    """Per-cell regulon activity with decoupler 2.2.0 (``decoupler.mt.aucell`` / ``.ulm``).

    ``aucell``: AUC of the regulon's targets among each cell's top-``n_up`` expressed genes
    (SCENIC's AUCell). ``ulm``: t-value of a univariate linear model of the cell's expression on
    regulon membership/weights. We use decoupler 2.2.0 with our own network: decoupler 2.3 needs
    Python >= 3.12, and its prior-knowledge resources (CollecTRI, DoRothEA) are downloads.

    Parameters
    ----------
    adata
        AnnData with raw counts (log-normalised internally).
    regulons
        ``dict`` regulon name -> list of target genes (Ensembl IDs or symbols), e.g. from
        :func:`regulons`, or a network ``DataFrame`` with ``source``, ``target`` and optional
        ``weight`` columns.
    method
        ``"aucell"`` or ``"ulm"``.
    tmin
        Regulons with fewer targets in the data are dropped (decoupler's ``tmin``).
    n_up
        AUCell only: number of top-ranked genes per cell (decoupler default: 5 % of genes, at
        least 2). Raise it on small gene panels.
    return_pvalues
        ULM only: also return the FDR-adjusted p-values.
    threads
        numba and BLAS threads during the call (``None``: library defaults). decoupler's AUCell
        opens a numba parallel region per cell; on a busy 2-core machine two threads made it
        ~150x slower than one (19 s vs 0.13 s for 400 cells).

    Returns
    -------
    pandas.DataFrame
        Cells (``adata.obs_names``) x regulons activity scores (cells without any counts are NaN);
        ``(scores, padj)`` if ``return_pvalues``.

    Examples
    --------
    >>> act = regulon_activity(adata, regs, method="aucell")  # doctest: +SKIP
    >>> adata.obsm["regulon_aucell"] = act  # doctest: +SKIP
    """
    if method not in ("aucell", "ulm"):
        raise CourseInputError(f"method must be 'aucell' or 'ulm', got {method!r}.")
    if return_pvalues and method != "ulm":
        raise CourseInputError("return_pvalues=True needs method='ulm' (AUCell has no p-values).")
    dc = _require("decoupler", "regulon_activity()")
    X = _expression(adata, layer, normalize, target_sum)
    net = _regulon_net(adata, regulons)
    sizes = net.groupby("source").size()
    if (sizes >= tmin).sum() == 0:
        raise CourseInputError(
            f"No regulon has at least tmin={tmin} targets in this AnnData (largest: "
            f"{int(sizes.max())}). Fix: lower tmin or build larger regulons.")
    import anndata as ad

    obs = pd.Index(adata.obs_names.astype(str))
    data = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float64), obs=pd.DataFrame(index=obs),
                      var=pd.DataFrame(index=pd.Index(adata.var_names.astype(str))))
    kwargs = {"n_up": n_up} if (method == "aucell" and n_up is not None) else {}
    if method == "aucell" and n_up is not None and not (1 < int(n_up) <= adata.n_vars):
        raise CourseInputError(f"n_up must be between 2 and the number of genes ({adata.n_vars}).")
    fn = dc.mt.aucell if method == "aucell" else dc.mt.ulm
    try:
        with _numba_threads(threads), _blas_threads(threads):
            ret = fn(data, net, tmin=tmin, verbose=False, **kwargs)
    except AssertionError as exc:  # decoupler validates with assert
        raise CourseInputError(f"decoupler refused the input: {exc}") from exc
    res = ret if ret is not None else data
    scores = pd.DataFrame(res.obsm[f"score_{method}"]).reindex(obs)
    scores.index.name = None
    scores.columns.name = None
    if return_pvalues:
        return scores, pd.DataFrame(res.obsm[f"padj_{method}"]).reindex(obs)
    return scores


def _regulon_net(adata, regulons) -> pd.DataFrame:
    if isinstance(regulons, pd.DataFrame):
        if not {"source", "target"} <= set(regulons.columns):
            raise CourseInputError(
                f"A network DataFrame needs 'source' and 'target' columns, got {list(regulons.columns)}.")
        net = regulons[["source", "target"] + (["weight"] if "weight" in regulons else [])].copy()
        if "weight" not in net:
            net["weight"] = 1.0
    elif isinstance(regulons, Mapping):
        rows = [(str(k), str(t)) for k, targets in regulons.items() for t in targets]
        net = pd.DataFrame(rows, columns=["source", "target"])
        net["weight"] = 1.0
    else:
        raise CourseInputError(
            "regulons must be a dict name -> list of targets (from regulons()) or a DataFrame "
            "with source/target[/weight].")
    if net.empty:
        raise CourseInputError("The regulons are empty. Fix: build regulons with regulons() first.")
    lookup = _id_lookup(adata)
    mapped = {t: lookup(t) for t in pd.unique(net["target"].astype(str))}
    net["target"] = net["target"].astype(str).map(mapped)
    net["source"] = net["source"].astype(str)
    net = net.dropna(subset=["target"])
    net = net.drop_duplicates(subset=["source", "target"]).reset_index(drop=True)
    if net.empty:
        raise CourseInputError(
            "None of the regulon targets is a gene of this AnnData. Fix: use Ensembl IDs from "
            "adata.var_names or symbols from adata.var['gene_symbol'].")
    return net


# --------------------------------------------------------------------------------------------------
# two regulators, one target: 2 x 2 interaction
# --------------------------------------------------------------------------------------------------
_PAIR_GROUPS = ("both", "a_only", "b_only", "neither")


def pair_interaction(adata, gene_a, gene_b, genes=None, *, scale: str = "counts",
                     layer: str | None = None, target_sum: float = 1e4,
                     min_cells: int = 10) -> pd.DataFrame:
    """Do two regulators act together on their targets? A 2 x 2 interaction from the counts.

    Cells are split by whether ``gene_a`` and ``gene_b`` are detected (count > 0) into four
    groups -- both, ``a`` only, ``b`` only, neither -- and for every gene the mean expression of
    each group is compared: ``interaction = both - a_only - b_only + neither``. Positive means
    the two together raise the gene more than their separate effects added up (an AND gate);
    ``relative`` divides it by the sum of the two separate effects.

    Whether two effects "add up" depends on the scale: a target whose rate is *proportional to
    the product* of two activities is strongly synergistic on counts and exactly additive on a
    log scale (log(ab) = log a + log b). ``scale`` picks the scale, so both views can be shown.

    A plain group-mean contrast is used instead of a regression library because it is the
    definition itself, vectorised over all genes at once (one pass over the matrix).

    Parameters
    ----------
    adata
        AnnData with raw integer counts (``X`` or ``layer``); pass the cells you want to compare
        (e.g. one cell type).
    gene_a, gene_b
        The two regulators (Ensembl IDs or symbols).
    genes
        Genes to report (IDs or symbols); ``None``: all genes except the two regulators.
    scale
        ``"counts"``: counts per ``target_sum`` (linear). ``"log"``: ``log1p`` of those.
    layer
        Layer with the counts (``None``: ``adata.X``).
    target_sum
        Counts per cell after normalisation.
    min_cells
        Each of the four groups needs at least this many cells.

    Returns
    -------
    pandas.DataFrame
        One row per gene, sorted by ``z`` (largest first): ``gene``, ``gene_symbol``,
        ``both``, ``a_only``, ``b_only``, ``neither`` (group means), ``interaction``,
        ``relative`` and ``z`` (interaction over its standard error). ``attrs["n_cells"]`` holds
        the group sizes, ``attrs["scale"]`` the scale.

    Raises
    ------
    CourseInputError
        Unknown genes, non-count data, an unknown ``scale``, or a group with fewer than
        ``min_cells`` cells (the message gives the four sizes).

    Examples
    --------
    >>> import course_helpers as ch
    >>> adata = ch.data.load_tissue()
    >>> cm = adata[adata.obs["cell_type"] == "cardiomyocyte"]
    >>> t = pair_interaction(cm, "GATA4", "TBX5", ["NPPA", "MYH7"])
    >>> list(t.columns[:6])
    ['gene', 'gene_symbol', 'both', 'a_only', 'b_only', 'neither']
    """
    if scale not in ("counts", "log"):
        raise CourseInputError(f"scale must be 'counts' or 'log', got {scale!r}.")
    if isinstance(min_cells, bool) or not isinstance(min_cells, (int, np.integer)) or min_cells < 2:
        raise CourseInputError(f"min_cells must be an integer >= 2, got {min_cells!r}.")
    X = _matrix(adata, layer)
    _check_counts(X, layer)
    pair, missing = _to_ids(adata, [gene_a, gene_b])
    if missing:
        raise CourseInputError(
            f"Regulator(s) {missing} not found in this AnnData. Fix: pass Ensembl IDs from "
            "adata.var_names or symbols from adata.var['gene_symbol']."
        )
    if len(pair) != 2:
        raise CourseInputError(f"gene_a and gene_b name the same gene ({gene_a!r}).")
    names = pd.Index(adata.var_names.astype(str))
    ia, ib = names.get_loc(pair[0]), names.get_loc(pair[1])
    if genes is None:
        cols = np.setdiff1d(np.arange(len(names)), [ia, ib])
    else:
        if isinstance(genes, str):
            genes = [genes]
        found, missing = _to_ids(adata, genes)
        if missing:
            raise CourseInputError(
                f"{len(missing)} gene(s) not found, e.g. {missing[:5]}. Fix: use Ensembl IDs from "
                "adata.var_names or symbols from adata.var['gene_symbol']."
            )
        cols = names.get_indexer(found)
    Y = _normalize_total(X, target_sum)  # detection is unchanged by scaling
    a = np.asarray(Y[:, ia].todense()).ravel() > 0
    b = np.asarray(Y[:, ib].todense()).ravel() > 0
    masks = {"both": a & b, "a_only": a & ~b, "b_only": ~a & b, "neither": ~a & ~b}
    sizes = {k: int(m.sum()) for k, m in masks.items()}
    if min(sizes.values()) < min_cells:
        raise CourseInputError(
            f"Too few cells in a group for ({gene_a}, {gene_b}): {sizes} (need >= {min_cells} "
            "each). Fix: pass more cells, a pair whose genes are each missing from some cells, "
            "or a smaller min_cells."
        )
    Y = Y[:, cols]
    if scale == "log":
        np.log1p(Y.data, out=Y.data)
    means, var_n = {}, {}
    for k, m in masks.items():
        sub = Y[m]
        mu = np.asarray(sub.mean(axis=0)).ravel()
        sq = np.asarray(sub.multiply(sub).mean(axis=0)).ravel()
        n = sizes[k]
        means[k] = mu
        var_n[k] = np.maximum(sq - mu**2, 0) * n / (n - 1) / n  # variance of the group mean
    inter = means["both"] - means["a_only"] - means["b_only"] + means["neither"]
    main = (means["a_only"] - means["neither"]) + (means["b_only"] - means["neither"])
    se = np.sqrt(sum(var_n.values()))
    sym = _symbols(adata)
    out = pd.DataFrame({"gene": names[cols].to_numpy(dtype=object),
                        "gene_symbol": sym.iloc[cols].to_numpy(dtype=object),
                        **{k: means[k] for k in _PAIR_GROUPS},
                        "interaction": inter,
                        "relative": np.divide(inter, main, out=np.full_like(inter, np.nan),
                                              where=np.abs(main) > 1e-12),
                        "z": np.divide(inter, se, out=np.zeros_like(inter), where=se > 0)})
    out = out.sort_values("z", ascending=False, kind="stable").reset_index(drop=True)
    out.attrs["n_cells"] = sizes
    out.attrs["scale"] = scale
    return out


# --------------------------------------------------------------------------------------------------
# run everything
# --------------------------------------------------------------------------------------------------
@dataclass
class BaselineResults:
    """Output of :func:`run_all_baselines`.

    Attributes
    ----------
    edges
        Method name -> edge table (``source, target, score, ..., source_symbol, target_symbol``).
    timings
        One row per method: ``method``, ``wall_s``, ``cpu_s`` (process CPU time, all threads),
        ``peak_mem_mb`` (peak resident-memory increase over the call), ``n_edges``, ``note``.
    wgcna
        The :class:`WGCNAResult` (modules, TOM, eigengenes) if WGCNA ran.
    regulons
        The regulons dict if they were built.
    activity
        ``"aucell"``/``"ulm"`` -> cells x regulons activity, if requested.
    """

    edges: dict[str, pd.DataFrame]
    timings: pd.DataFrame
    wgcna: WGCNAResult | None = None
    regulons: dict[str, list[str]] | None = None
    activity: dict[str, pd.DataFrame] = field(default_factory=dict)


ALL_METHODS = ("correlation", "spearman", "wgcna", "grnboost2", "regulons", "aucell", "ulm")


def run_all_baselines(adata, tfs=None, seed: int = 0,
                      methods: Sequence[str] = ("correlation", "wgcna", "grnboost2", "regulons"),
                      *, method_kwargs: Mapping[str, Mapping] | None = None,
                      progress: bool = True) -> BaselineResults:
    """Run several baselines on one AnnData; return their edge tables and a runtime/memory table.

    Methods: ``"correlation"`` (Pearson), ``"spearman"``, ``"wgcna"``, ``"grnboost2"``,
    ``"regulons"`` (GRN edges kept in correlation-based regulons; runs ``grnboost2`` first if it
    is not in the list, and its time then includes the GRN), ``"aucell"`` and ``"ulm"`` (regulon
    activity per cell, stored in ``.activity``, no edge table).

    Parameters
    ----------
    adata
        AnnData with raw counts, Ensembl IDs in ``var_names``.
    tfs
        Regulators (Ensembl IDs or symbols); ``None``: ``var["gene_class"] == "tf"``.
    seed
        Passed to every method that takes one.
    methods
        Which methods to run, in order.
    method_kwargs
        Extra arguments per method, e.g. ``{"wgcna": {"power": 8, "min_module_size": 20},
        "grnboost2": {"n_estimators": 500, "early_stop_window": 0}, "regulons": {"min_targets": 5},
        "aucell": {"n_up": 50}}``.
    progress
        Show a progress bar over methods.

    Returns
    -------
    BaselineResults
        ``.edges`` (name -> edge table), ``.timings`` (``method, wall_s, cpu_s, peak_mem_mb,
        n_edges, note``), ``.wgcna``, ``.regulons``, ``.activity``.

    Examples
    --------
    >>> res = run_all_baselines(adata, tfs, seed=0)  # doctest: +SKIP
    >>> res.timings  # doctest: +SKIP
    >>> res.edges["grnboost2"].head()  # doctest: +SKIP
    """
    methods = list(methods)
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown or not methods:
        raise CourseInputError(f"Unknown methods {unknown}; choose from {list(ALL_METHODS)}.")
    kw = {k: dict(v) for k, v in (method_kwargs or {}).items()}
    bad = [k for k in kw if k not in ALL_METHODS]
    if bad:
        raise CourseInputError(f"method_kwargs has unknown methods {bad}; choose from {list(ALL_METHODS)}.")
    # validate once, up front, so that a bad input fails before any long computation
    _expression(adata, kw.get("correlation", {}).get("layer"), True)
    tf_ids = _resolve_tfs(adata, tfs)

    out = BaselineResults(edges={}, timings=pd.DataFrame())
    rows = []
    grn = None
    for name in _progress(methods, enabled=progress, desc="baselines"):
        note = ""
        with PeakMemory() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            if name in ("correlation", "spearman"):
                edges = correlation_network(adata, tf_ids, method="pearson" if name == "correlation" else "spearman",
                                            **kw.get(name, {}))
            elif name == "wgcna":
                out.wgcna = wgcna_modules(adata, tfs=tf_ids, seed=seed, **kw.get(name, {}))
                edges = out.wgcna.edges
            elif name == "grnboost2":
                grn = edges = grnboost2(adata, tf_ids, seed=seed, **kw.get(name, {}))
            elif name == "regulons":
                if grn is None:
                    grn = grnboost2(adata, tf_ids, seed=seed, **kw.get("grnboost2", {}))
                    note = "includes grnboost2"
                out.regulons = regulons(adata, grn, **kw.get(name, {}))
                edges = regulon_edges(out.regulons, grn)
            else:  # aucell / ulm
                if out.regulons is None:
                    if grn is None:
                        grn = grnboost2(adata, tf_ids, seed=seed, **kw.get("grnboost2", {}))
                    out.regulons = regulons(adata, grn, **kw.get("regulons", {}))
                    note = "includes grnboost2 + regulons"
                out.activity[name] = regulon_activity(adata, out.regulons, method=name, **kw.get(name, {}))
                edges = None
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if edges is not None:
            out.edges[name] = edges
        rows.append({"method": name, "wall_s": wall, "cpu_s": cpu, "peak_mem_mb": mem.peak_mb,
                     "n_edges": None if edges is None else len(edges), "note": note})
    out.timings = pd.DataFrame(rows, columns=["method", "wall_s", "cpu_s", "peak_mem_mb", "n_edges",
                                              "note"])
    return out
