"""WGCNA co-expression modules with PyWGCNA 2.2.1, TF -> gene edges from the TOM, module
eigengenes.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .dependencies import _blas_threads, _import_pywgcna
from .inputs import _edge_frame, _expression, _pairs, _resolve_tfs, _symbols


class _EconomySVDLinalg:
    """``numpy.linalg`` whose ``svd`` defaults to ``full_matrices=False``."""

    def __getattr__(self, name):
        return getattr(np.linalg, name)

    @staticmethod
    def svd(a, full_matrices=False, *args, **kwargs):
        return np.linalg.svd(a, full_matrices, *args, **kwargs)


class _NumpyEconomySVD:
    """Stands in for ``numpy`` in our copy of PyWGCNA's functions: all numpy but ``linalg.svd``."""

    linalg = _EconomySVDLinalg()

    def __getattr__(self, name):
        return getattr(np, name)


@functools.lru_cache(maxsize=1)
def _economy_wgcna_class():
    """PyWGCNA's ``WGCNA`` class with economy-sized module-eigengene SVDs, without patching PyWGCNA.

    Why: PyWGCNA 2.2.1 ``moduleEigengenes`` (called by ``findModules`` and, per merge round, by
    ``mergeCloseModules``) runs ``np.linalg.svd(datModule)`` on each module's genes x cells
    matrix with the default ``full_matrices=True``: it builds a cells x cells matrix per module
    and call (~1 s and 32 MB each at 2,000 cells, 800 MB at 10,000) although it only uses the
    first right-singular vector. The economy SVD gives the same leading vectors: on our
    2,000-cell x 500-gene benchmark WGCNA ran ~3x faster (9 s vs 27 s) with identical modules.

    How, without touching PyWGCNA's module (no monkeypatching, safe with threads): this returns a
    *subclass* of ``PyWGCNA.WGCNA`` whose methods are copies of PyWGCNA's own functions (same
    code objects) that look up their global names in a private copy of the ``PyWGCNA.wgcna``
    namespace, in which ``np`` is numpy with an economy ``linalg.svd`` and ``WGCNA`` is this
    subclass (PyWGCNA's methods call each other as ``WGCNA.method``). ``PyWGCNA.wgcna`` and every
    other user of PyWGCNA are unaffected. Computing the eigengenes ourselves was not an option:
    ``mergeCloseModules`` recomputes them whenever the number of genes differs from the number
    of eigengenes (always), so it cannot be fed precomputed ones.
    """
    import types

    PyWGCNA = _import_pywgcna()
    mod = sys.modules[PyWGCNA.WGCNA.__module__]
    namespace = dict(vars(mod))
    namespace["np"] = _NumpyEconomySVD()

    def rebind(func):
        out = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__,
                                 func.__closure__)
        out.__kwdefaults__ = func.__kwdefaults__
        out.__qualname__, out.__doc__ = func.__qualname__, func.__doc__
        return out

    attrs = {}
    for name, value in vars(PyWGCNA.WGCNA).items():
        if isinstance(value, staticmethod):
            attrs[name] = staticmethod(rebind(value.__func__))
        elif isinstance(value, types.FunctionType):
            attrs[name] = rebind(value)
    cls = type("WGCNA", (PyWGCNA.WGCNA,), attrs)
    namespace["WGCNA"] = cls
    return cls


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

    Examples
    --------
    >>> import course_helpers as ch
    >>> res = wgcna_modules(ch.data.load_tissue()[:200, :300].copy(), min_module_size=10)
    >>> res.n_modules == len(res.module_genes()) == res.eigengenes.shape[1]
    True
    >>> sum(map(len, res.module_genes(include_grey=True).values())) == len(res.modules)
    True
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
                  tom_type: str = "signed", *, min_module_size: int = 10, seed: int = 0,
                  tfs=None, edge_score: str = "tom", deep_split: int = 2,
                  merge_cut_height: float = 0.2, layer: str | None = None,
                  normalize: bool = True, target_sum: float = 1e4,
                  max_memory_gb: float = 2.0, blas_threads: int | None = 1,
                  economy_svd: bool = True) -> WGCNAResult:
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
    economy_svd
        Compute module eigengenes with the economy-sized SVD (same results, ~3x faster at 2,000
        cells; see ``_economy_wgcna_class``). ``False`` runs PyWGCNA's own code unchanged.

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
    >>> import course_helpers as ch
    >>> adata = ch.data.load_tissue()[:200, :300].copy()   # the 23 TFs are its first genes
    >>> res = wgcna_modules(adata, power=6, min_module_size=10)
    >>> res.n_modules > 1, res.modules.index.equals(adata.var_names)
    (True, True)
    >>> res.edges[["source", "target", "score", "tom", "same_module"]].shape[1]
    5
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
                _blas_threads(blas_threads):
            # (PyWGCNA needs chained assignment, hence no copy-on-write)
            warnings.simplefilter("ignore")
            wgcna_class = _economy_wgcna_class() if economy_svd else PyWGCNA.WGCNA
            w = wgcna_class(name="course", anndata=wg_in, TPMcutoff=0, powers=[int(power)],
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
