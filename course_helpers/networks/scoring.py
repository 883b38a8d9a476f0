"""Scoring predicted networks against ground truth (BEELINE-style AUPRC / EPR, PR curves, per-
context scores, module agreement).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from .._utils import CourseInputError


def _edge_table(df, what: str, need_score: bool) -> pd.DataFrame:
    if isinstance(df, _nx_graph_types()):
        df = pd.DataFrame([{"source": a, "target": b, "score": d.get("weight", 1.0)}
                           for a, b, d in df.edges(data=True)])
    if not isinstance(df, pd.DataFrame):
        raise CourseInputError(
            f"{what} must be a DataFrame with columns source, target"
            f"{', score' if need_score else ''}; got {type(df).__name__}."
        )
    cols = ["source", "target"] + (["score"] if need_score else [])
    if need_score and "score" not in df.columns and "weight" in df.columns:
        df = df.rename(columns={"weight": "score"})
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise CourseInputError(
            f"{what} lacks column(s) {missing} (has {list(df.columns)}). Fix: rename them, e.g. "
            "df.rename(columns={'TF': 'source', 'target_gene': 'target', 'importance': 'score'})."
        )
    out = df[cols].copy()
    out["source"] = out["source"].astype(str)
    out["target"] = out["target"].astype(str)
    if need_score:
        out["score"] = pd.to_numeric(out["score"], errors="coerce").astype(float)
    return out


def _nx_graph_types():
    try:
        import networkx as nx

        return (nx.Graph,)
    except ImportError:  # pragma: no cover
        return ()


def _labels_scores(pred, truth, candidates="tf_to_gene", tfs=None, genes=None, *,
                   directed: bool = True, absolute: bool = False):
    """Candidate edges with truth labels and predicted scores (missing -> below every score)."""
    P = _edge_table(pred, "pred", need_score=True)
    T = _edge_table(truth, "truth", need_score=False).drop_duplicates()
    P = P.dropna(subset=["score"])
    if absolute:
        P["score"] = P["score"].abs()
    if isinstance(candidates, str):
        if candidates != "tf_to_gene":
            raise CourseInputError(
                f"candidates={candidates!r} is not known. Fix: 'tf_to_gene' or a DataFrame of "
                "candidate (source, target) pairs."
            )
        tf_list = sorted(set(map(str, tfs))) if tfs is not None else sorted(set(T["source"]))
        if genes is not None:
            gene_list = sorted(set(map(str, genes)))
        else:
            gene_list = sorted(set(T["source"]) | set(T["target"]) | set(P["source"])
                               | set(P["target"]))
        if not tf_list or not gene_list:
            raise CourseInputError("No candidate TFs or genes. Fix: pass tfs= and genes=.")
        src = np.repeat(np.asarray(tf_list, dtype=object), len(gene_list))
        tgt = np.tile(np.asarray(gene_list, dtype=object), len(tf_list))
        C = pd.DataFrame({"source": src, "target": tgt})
    else:
        C = _edge_table(candidates, "candidates", need_score=False).drop_duplicates()
        if tfs is not None:
            C = C[C["source"].isin(set(map(str, tfs)))]
        if genes is not None:
            C = C[C["target"].isin(set(map(str, genes)))]
    C = C[C["source"] != C["target"]].reset_index(drop=True)
    if C.empty:
        raise CourseInputError(
            "There are no candidate edges (TF -> gene pairs without self-loops). Fix: check tfs= "
            "and genes= (names must match the prediction and the truth, e.g. all Ensembl IDs)."
        )
    Pmax = P.groupby(["source", "target"], sort=False)["score"].max()
    if not directed:  # an undirected prediction scores both orientations
        rev = Pmax.copy()
        rev.index = rev.index.swaplevel(0, 1)
        Pmax = pd.concat([Pmax, rev]).groupby(level=[0, 1]).max()
    key = pd.MultiIndex.from_frame(C[["source", "target"]])
    s = Pmax.reindex(key).to_numpy(dtype=float)
    has = ~np.isnan(s)
    truth_key = set(zip(T["source"], T["target"]))
    y = np.fromiter(((a, b) in truth_key for a, b in zip(C["source"], C["target"])),
                    dtype=bool, count=len(C))
    n_truth_outside = len(truth_key) - int(y.sum())
    fill = (np.min(s[has]) - 1.0) if has.any() else 0.0
    s = np.where(has, s, fill)
    return C, y, s, has, n_truth_outside


def _early_precision(y: np.ndarray, s: np.ndarray, has: np.ndarray) -> float:
    """BEELINE early precision: precision among predictions scoring >= the k-th best score."""
    k = int(y.sum())
    if k == 0 or not has.any():
        return 0.0
    sp = s[has]
    k_eff = min(k, len(sp))
    kth = np.sort(sp)[::-1][k_eff - 1]
    top = has & (s >= kth)
    return float(y[top].mean()) if top.any() else 0.0


def score_edges(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    candidates="tf_to_gene",
    tfs: Iterable | None = None,
    *,
    genes: Iterable | None = None,
    directed: bool = True,
    absolute: bool = False,
) -> pd.Series:
    """How well a scored edge list recovers a ground-truth network (BEELINE-style metrics).

    Parameters
    ----------
    pred
        ``source, target, score`` (higher = more confident; a ``weight`` column is accepted).
        Duplicated pairs keep their highest score.
    truth
        ``source, target`` of the true edges (e.g. ``load_ground_truth().edges``).
    candidates
        ``"tf_to_gene"``: every ``tf -> gene`` pair with ``tf`` in ``tfs`` (default: the truth's
        sources) and ``gene`` in ``genes`` (default: every gene in ``pred`` or ``truth``),
        self-loops excluded.  Or a DataFrame of candidate ``source, target`` pairs.
    tfs, genes
        See ``candidates``.  Names must match between ``pred`` and ``truth`` (e.g. all symbols).
    directed
        False: an undirected prediction (e.g. correlation) scores ``a -> b`` and ``b -> a`` with
        the same value.
    absolute
        Rank by ``|score|`` (signed predictions).

    Returns
    -------
    pandas.Series
        ``auprc`` (average precision, sklearn), ``auprc_random`` (= edge density among the
        candidates = precision of a random ranking), ``auprc_ratio`` (auprc / random),
        ``early_precision`` (precision among the top-k predictions, k = number of true edges;
        ties at the cut-off included, as in BEELINE), ``epr`` (early precision / density),
        ``n_true`` (true edges among the candidates), ``n_candidates``, ``n_scored``
        (candidates with a prediction), ``n_true_outside`` (true edges that are not candidates,
        e.g. whose source is not a TF: they cannot be scored).  Candidates without a prediction
        rank below every prediction, tied.

    Examples
    --------
    >>> truth = pd.DataFrame({"source": ["T1", "T1"], "target": ["a", "b"]})
    >>> pred = pd.DataFrame({"source": ["T1", "T1", "T1"], "target": ["a", "c", "b"],
    ...                      "score": [0.9, 0.8, 0.7]})
    >>> s = score_edges(pred, truth, genes=["a", "b", "c", "d"])
    >>> round(s["auprc"], 3), s["n_candidates"], s["epr"]
    (0.833, 4, 1.0)
    """
    from sklearn.metrics import average_precision_score

    _, y, s, has, outside = _labels_scores(pred, truth, candidates, tfs, genes,
                                           directed=directed, absolute=absolute)
    n_true, n = int(y.sum()), len(y)
    density = n_true / n
    if n_true == 0:
        auprc = float("nan")
    else:
        auprc = float(average_precision_score(y, s))
    ep = _early_precision(y, s, has) if n_true else float("nan")
    return pd.Series({
        "auprc": auprc,
        "auprc_random": density,
        "auprc_ratio": auprc / density if n_true else float("nan"),
        "early_precision": ep,
        "epr": ep / density if n_true else float("nan"),
        "n_true": n_true,
        "n_candidates": n,
        "n_scored": int(has.sum()),
        "n_true_outside": int(outside),
    }, dtype=object)


def pr_curve(pred, truth, candidates="tf_to_gene", tfs=None, *, genes=None,
             directed: bool = True, absolute: bool = False) -> pd.DataFrame:
    """Precision-recall curve (sklearn) over the same candidates as :func:`score_edges`.

    Returns
    -------
    pandas.DataFrame
        ``recall, precision, threshold`` (threshold NaN for the final point), plus a constant
        ``random_precision`` column (the edge density) to draw the baseline.

    Examples
    --------
    >>> pred = pd.DataFrame({"source": "T1", "target": list("acb"), "score": [0.9, 0.8, 0.7]})
    >>> truth = pred.iloc[[0, 2], :2]                 # T1 -> a and T1 -> b are the true edges
    >>> curve = pr_curve(pred, truth, genes=list("abcd"))
    >>> curve[["recall", "precision"]].round(3).values.tolist()
    [[1.0, 0.5], [1.0, 0.667], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]
    >>> ax = curve.plot("recall", "precision")
    >>> ax.get_xlabel()
    'recall'
    """
    from sklearn.metrics import precision_recall_curve

    _, y, s, _, _ = _labels_scores(pred, truth, candidates, tfs, genes, directed=directed,
                                   absolute=absolute)
    if not y.any():
        raise CourseInputError(
            "No true edge is among the candidates, so there is no precision-recall curve. Fix: "
            "check that names match between prediction and truth, and tfs=/genes=."
        )
    precision, recall, thr = precision_recall_curve(y, s)
    return pd.DataFrame({
        "recall": recall,
        "precision": precision,
        "threshold": np.append(thr, np.nan),
        "random_precision": y.mean(),
    })


def _context_list(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    for sep in (";", "|", ","):
        if sep in text:
            return [t.strip() for t in text.split(sep) if t.strip()]
    return [text.strip()] if text.strip() else []


_EVERYWHERE = {"all", "any", "*", "ubiquitous", "everywhere", "global"}


def score_by_context(
    pred,
    truth_edges: pd.DataFrame,
    contexts: Iterable[str] | None = None,
    candidates="tf_to_gene",
    *,
    tfs: Iterable | None = None,
    genes: Iterable | None = None,
    context_column: str = "contexts",
    directed: bool = True,
    absolute: bool = False,
) -> pd.DataFrame:
    """:func:`score_edges` per context (e.g. cell type), with context-specific ground truth.

    The truth for context ``c`` is every true edge active in ``c``: edges whose
    ``context_column`` lists ``c``, plus edges active everywhere (empty / NaN or ``"all"``).
    Contexts may be lists or strings separated by ``;``, ``|`` or ``,``.  Edges active only in
    other contexts count as negatives.  Candidates default to TF -> gene pairs over all true
    TFs (not just those active in ``c``), so densities are comparable across contexts.

    Parameters
    ----------
    pred
        One edge table used for every context, or a dict ``context -> edge table`` (networks
        built per cell type).
    truth_edges
        ``source, target`` and ``context_column``.
    contexts
        Which contexts to score (default: every context named in the truth, and the keys of a
        ``pred`` dict).

    Returns
    -------
    pandas.DataFrame
        One row per context (index), columns as :func:`score_edges`.

    Examples
    --------
    >>> from course_helpers.data import load_ground_truth
    >>> gt = load_ground_truth()
    >>> pred = gt.edges[["source", "target"]].assign(score=1.0)   # every true edge, no context
    >>> scores = score_by_context(pred, gt.edges, tfs=gt.tfs)
    >>> scores.index.tolist()
    ['cardiomyocyte', 'endothelial', 'fibroblast', 'macrophage', 'smooth_muscle', 't_cell']
    >>> bool((scores["auprc"] < 1).all() and (scores["auprc"] > scores["auprc_random"]).all())
    True
    """
    T = truth_edges
    if not isinstance(T, pd.DataFrame) or context_column not in T.columns:
        raise CourseInputError(
            f"truth_edges must be a DataFrame with a {context_column!r} column (the contexts "
            "where each edge is active). Fix: pass load_ground_truth().edges or set "
            "context_column=."
        )
    ctx_lists = [_context_list(v) for v in T[context_column]]
    everywhere = np.array([not c or any(x.lower() in _EVERYWHERE for x in c) for c in ctx_lists])
    named = sorted({x for c in ctx_lists for x in c if x.lower() not in _EVERYWHERE})
    if contexts is None:
        contexts = list(named)
        if isinstance(pred, Mapping):
            contexts += [c for c in pred if c not in contexts]
    contexts = [str(c) for c in contexts]
    if not contexts:
        raise CourseInputError("No contexts to score. Fix: pass contexts=[...].")
    if tfs is None:
        tfs = sorted(set(T["source"].astype(str)))
    rows = {}
    for c in contexts:
        active = everywhere | np.array([c in cl for cl in ctx_lists])
        truth_c = T.loc[active, ["source", "target"]]
        if isinstance(pred, Mapping):
            if c not in pred:
                raise CourseInputError(
                    f"pred has no network for context {c!r} (has {list(pred)}). Fix: pass "
                    "contexts= or a network for every context."
                )
            p = pred[c]
        else:
            p = pred
        if truth_c.empty:  # nothing to recover in this context
            rows[c] = pd.Series({"n_true": 0})
            continue
        rows[c] = score_edges(p, truth_c, candidates=candidates, tfs=tfs, genes=genes,
                              directed=directed, absolute=absolute)
    out = pd.DataFrame(rows).T
    out.index.name = "context"
    cols = ["auprc", "auprc_random", "auprc_ratio", "early_precision", "epr", "n_true",
            "n_candidates", "n_scored", "n_true_outside"]
    out = out.reindex(columns=cols)
    for col in cols:
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def _as_membership(modules, what: str) -> dict:
    """gene -> label from {gene: label}, {label: [genes]} or a list of gene sets."""
    if isinstance(modules, pd.Series):
        return {str(k): v for k, v in modules.items()}
    if isinstance(modules, Mapping):
        vals = list(modules.values())
        if vals and all(isinstance(v, (list, tuple, set, frozenset, np.ndarray, pd.Index))
                        for v in vals):
            out: dict = {}
            dup = set()
            for label, genes in modules.items():
                for g in genes:
                    g = str(g)
                    if g in out and out[g] != label:
                        dup.add(g)
                    out[g] = label
            for g in dup:  # genes in several programs are ambiguous: leave them out
                del out[g]
            return out
        return {str(k): v for k, v in modules.items()}
    if isinstance(modules, (list, tuple)):
        return _as_membership({i: list(s) for i, s in enumerate(modules)}, what)
    raise CourseInputError(
        f"{what} must be a dict gene -> module, a dict module -> genes, or a list of gene sets; "
        f"got {type(modules).__name__}."
    )


def module_agreement(pred_modules, true_programs, genes: Iterable | None = None) -> float:
    """Adjusted Rand index between predicted modules and true programs.

    Compared over the genes present in both (or ``genes``).  Genes listed in several true
    programs are ambiguous and left out.  1 = identical partitions, ~0 = chance, < 0 = worse than
    chance.

    Parameters
    ----------
    pred_modules
        ``gene -> module`` (e.g. :func:`communities`), ``module -> genes`` or a list of gene sets.
    true_programs
        ``program -> genes`` (e.g. ``load_ground_truth().programs``) or ``gene -> program``.

    Examples
    --------
    >>> module_agreement({"a": 0, "b": 0, "c": 1, "d": 1}, {"x": ["a", "b"], "y": ["c", "d"]})
    1.0
    """
    from sklearn.metrics import adjusted_rand_score

    P = _as_membership(pred_modules, "pred_modules")
    T = _as_membership(true_programs, "true_programs")
    common = [g for g in P if g in T] if genes is None else [str(g) for g in genes
                                                               if str(g) in P and str(g) in T]
    if len(common) < 2:
        raise CourseInputError(
            f"Only {len(common)} gene(s) are in both the predicted modules and the true programs. "
            "Fix: use the same gene names in both (e.g. symbols or Ensembl IDs)."
        )
    return float(adjusted_rand_score([str(T[g]) for g in common], [str(P[g]) for g in common]))
