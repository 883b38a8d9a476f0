"""Run several baselines on one AnnData, with wall time, CPU time and peak memory per method."""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from .._utils import CourseInputError
from .._utils import progress as _progress
from ..measure import PeakMemory
from .activity import regulon_activity
from .correlation import correlation_network
from .grnboost import grnboost2
from .inputs import _expression, _resolve_tfs
from .regulons import regulon_edges, regulons
from .wgcna import WGCNAResult, wgcna_modules


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

    Examples
    --------
    >>> import course_helpers as ch
    >>> res = run_all_baselines(ch.data.load_tissue()[:100, :100].copy(), methods=["correlation"],
    ...                         progress=False)
    >>> list(res.edges), res.wgcna is None, res.activity
    (['correlation'], True, {})
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
    >>> import course_helpers as ch
    >>> adata = ch.data.load_tissue()[:200, :300].copy()   # the 23 TFs are its first genes
    >>> res = run_all_baselines(adata, seed=0, methods=("correlation", "grnboost2"),
    ...                         progress=False)
    >>> res.timings.columns.tolist()
    ['method', 'wall_s', 'cpu_s', 'peak_mem_mb', 'n_edges', 'note']
    >>> sorted(res.edges)
    ['correlation', 'grnboost2']
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
