"""SCENIC-style regulons from GRN edges and TF-target correlation (no motifs), and the edges they
keep.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import pandas as pd
import scipy.sparse as sp

from .._utils import CourseInputError, CourseWarning, find_stack_level
from .dependencies import _require
from .inputs import _expression


class NoRegulonsWarning(CourseWarning):
    """:func:`regulons` found no regulon with ``min_targets`` correlated targets (returns ``{}``).

    Examples
    --------
    >>> issubclass(NoRegulonsWarning, UserWarning)
    True
    """


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
    >>> import course_helpers as ch
    >>> adata = ch.data.load_tissue()[:200, :300].copy()   # the 23 TFs are its first genes
    >>> grn = ch.baselines.grnboost2(adata, seed=0)
    >>> regs = regulons(adata, grn, min_targets=10)
    >>> all(len(targets) >= 10 for targets in regs.values())
    True
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
            "rho_threshold.", NoRegulonsWarning, stacklevel=find_stack_level())
    return out


def regulon_edges(regulons: Mapping[str, Sequence[str]], grn_edges: pd.DataFrame) -> pd.DataFrame:
    """The GRN edges kept in the regulons (activator regulons only), as an edge table.

    This is the "GRNBoost2 + regulon pruning" network: same scores as :func:`grnboost2`, fewer
    edges.

    Examples
    --------
    >>> import course_helpers as ch
    >>> adata = ch.data.load_tissue()[:200, :300].copy()   # the 23 TFs are its first genes
    >>> grn = ch.baselines.grnboost2(adata, seed=0)
    >>> regs = ch.baselines.regulons(adata, grn)
    >>> pruned = regulon_edges(regs, grn)
    >>> len(pruned) == sum(len(t) for t in regs.values()) and len(pruned) < len(grn)
    True
    """
    keep = {(tf, t) for tf, targets in regulons.items() if not tf.endswith("_repressor")
            for t in targets}
    src_col = "source" if "source" in grn_edges.columns else "TF"
    mask = [(s, t) in keep for s, t in zip(grn_edges[src_col].astype(str), grn_edges["target"].astype(str))]
    out = grn_edges.loc[mask].reset_index(drop=True)
    out.attrs = dict(grn_edges.attrs)
    out.attrs["method"] = "regulons"
    return out
