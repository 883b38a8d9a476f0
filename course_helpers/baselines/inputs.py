"""Input handling shared by every method: counts matrix checks, normalisation, gene IDs and
symbols, regulators, edge tables.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._utils import CourseInputError, CourseWarning, find_stack_level

EDGE_COLUMNS = ["source", "target", "score"]


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
            MissingTFsWarning,
            stacklevel=find_stack_level(),
        )
    return found


class MissingTFsWarning(CourseWarning):
    """Some of the regulators passed as ``tfs`` are not genes of the AnnData; they were skipped.

    Examples
    --------
    >>> import warnings, course_helpers as ch
    >>> from course_helpers.baselines import correlation_network
    >>> adata = ch.data.load_tissue()[:100]
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = correlation_network(adata, ["GATA4", "NOT_A_GENE"])
    >>> [w.category.__name__ for w in caught if issubclass(w.category, MissingTFsWarning)]
    ['MissingTFsWarning']
    """


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
