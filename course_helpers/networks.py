"""Gene networks: build graphs from scores, analyse them, export them, score them against truth.

Every network method in the course (attention, in-silico perturbation, correlation, WGCNA,
GRNBoost2-style) ends as a table of scored gene pairs.  This module turns such tables into
``networkx`` graphs, describes them (centrality, communities), writes them for Cytoscape /
Gephi, and - the point of the course - measures how well they recover a known network.

Conventions
-----------
* Score matrices are ``pandas.DataFrame`` with genes as index (source / row) and columns
  (target / column): ``scores.loc[a, b]`` is the score of the edge ``a -> b``.  For attention
  (:meth:`course_helpers.attention.AttentionResult.matrix`) the source is the query gene and the
  target the key gene: "a attends to b".  Which direction, if any, corresponds to regulation is
  exactly what scoring against ground truth tests.
* Edge tables have columns ``source, target, score`` (more columns are kept as attributes).

Scoring follows BEELINE (Pratapa et al. 2020, Nat. Methods): candidate edges are TF -> gene
pairs (no self-loops); AUPRC is compared with a random predictor (whose expected precision is
the edge density among the candidates) and the early precision ratio (EPR) is the precision of
the top-k predictions, k = number of true edges, divided by that density.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import CourseInputError

__all__ = [
    "centrality",
    "communities",
    "edges_from_matrix",
    "export_network",
    "graph_from_edges",
    "graph_from_matrix",
    "module_agreement",
    "pr_curve",
    "read_network",
    "score_by_context",
    "score_edges",
]


# --------------------------------------------------------------------------------------------
# matrices -> edges -> graphs
# --------------------------------------------------------------------------------------------
def _check_matrix(scores) -> pd.DataFrame:
    if not isinstance(scores, pd.DataFrame):
        if hasattr(scores, "matrix") and callable(scores.matrix):  # AttentionResult
            return scores.matrix()
        raise CourseInputError(
            f"scores must be a pandas DataFrame (genes x genes), got {type(scores).__name__}. "
            "Fix: e.g. attention_result.matrix() or pd.DataFrame(array, index=genes, "
            "columns=genes)."
        )
    if scores.empty:
        raise CourseInputError("The score matrix is empty. Fix: pass a genes x genes DataFrame.")
    return scores


def edges_from_matrix(
    scores: pd.DataFrame,
    top_k: int | None = None,
    top_fraction: float | None = None,
    threshold: float | None = None,
    directed: bool = True,
    sources: Iterable | None = None,
    *,
    self_loops: bool = False,
    absolute: bool = False,
) -> pd.DataFrame:
    """Turn a gene x gene score matrix into an edge table, strongest first.

    Parameters
    ----------
    scores
        DataFrame, index = source genes (rows), columns = target genes.  NaN = no edge.
    top_k
        Keep the k highest-scoring edges.
    top_fraction
        Keep this fraction (0-1] of the candidate (non-NaN) edges.
    threshold
        Keep edges with score >= threshold (``|score|`` if ``absolute``).
    directed
        False: one edge per unordered pair, scored by the mean of ``[a, b]`` and ``[b, a]``
        (the NaN-ignoring mean); needs a square matrix with the same genes on both axes.
    sources
        Only edges whose source is in this list (e.g. transcription factors).
    self_loops
        Keep ``a -> a`` edges (default False).
    absolute
        Rank and threshold by ``|score|`` (signed scores such as correlations).

    Returns
    -------
    pandas.DataFrame
        ``source, target, score`` sorted by score (ties by source, target).

    Examples
    --------
    >>> m = pd.DataFrame([[0, .9, .1], [.2, 0, .5], [.3, .4, 0]], index=list("abc"),
    ...                  columns=list("abc"))
    >>> edges_from_matrix(m, top_k=2)
      source target  score
    0      a      b    0.9
    1      b      c    0.5
    >>> edges_from_matrix(m, top_k=1, directed=False)
      source target  score
    0      a      b   0.55
    """
    scores = _check_matrix(scores)
    if sum(x is not None for x in (top_k, top_fraction)) > 1:
        raise CourseInputError("Pass at most one of top_k and top_fraction.")
    values = scores.to_numpy(dtype=np.float64, copy=True)
    rows = np.asarray(scores.index, dtype=object)
    cols = np.asarray(scores.columns, dtype=object)
    if not directed:
        if list(scores.index) != list(scores.columns):
            common = [g for g in scores.index if g in set(scores.columns)]
            if len(common) != len(scores.index) or len(common) != len(scores.columns):
                raise CourseInputError(
                    "directed=False needs a square matrix with the same genes as rows and "
                    "columns. Fix: scores.loc[genes, genes]."
                )
            values = scores.loc[common, common].to_numpy(dtype=np.float64, copy=True)
            rows = cols = np.asarray(common, dtype=object)
        with np.errstate(invalid="ignore"):
            both = np.stack([values, values.T])
            cnt = (~np.isnan(both)).sum(0)
            values = np.where(cnt > 0, np.nansum(both, 0) / np.maximum(cnt, 1), np.nan)
        values[np.tril_indices_from(values, k=-1)] = np.nan
    keep = ~np.isnan(values)
    if not self_loops:
        same = rows[:, None] == cols[None, :]
        keep &= ~same
    if sources is not None:
        src = set(sources)
        keep &= np.isin(rows, list(src))[:, None]
    i, j = np.nonzero(keep)
    score = values[i, j]
    key = np.abs(score) if absolute else score
    if threshold is not None:
        sel = key >= float(threshold)
        i, j, score, key = i[sel], j[sel], score[sel], key[sel]
    order = np.lexsort((j, i, -key))
    if top_fraction is not None:
        f = float(top_fraction)
        if not 0 < f <= 1:
            raise CourseInputError(f"top_fraction must be in (0, 1], got {top_fraction}.")
        top_k = int(np.ceil(f * len(order)))
    if top_k is not None:
        if int(top_k) < 0:
            raise CourseInputError(f"top_k must be >= 0, got {top_k}.")
        order = order[: int(top_k)]
    return pd.DataFrame({
        "source": rows[i[order]],
        "target": cols[j[order]],
        "score": score[order],
    })


def graph_from_edges(edge_df: pd.DataFrame, source: str = "source", target: str = "target",
                     weight: str | None = "weight", *, directed: bool = True):
    """Build a networkx graph from an edge table.

    Parameters
    ----------
    edge_df
        One row per edge.  Other columns become edge attributes.
    source, target
        Column names of the endpoints.
    weight
        Column holding the edge weight, stored as the ``weight`` attribute.  If that column is
        missing but a ``score`` column exists, ``score`` is used.  ``None``: unweighted.
    directed
        ``nx.DiGraph`` (default) or ``nx.Graph``.

    Examples
    --------
    >>> df = pd.DataFrame({"source": ["a", "b"], "target": ["b", "c"], "score": [0.9, 0.5]})
    >>> G = graph_from_edges(df)
    >>> G["a"]["b"]["weight"]
    0.9
    """
    import networkx as nx

    if not isinstance(edge_df, pd.DataFrame):
        raise CourseInputError(
            f"edge_df must be a DataFrame, got {type(edge_df).__name__}. Fix: "
            "pd.DataFrame({'source': [...], 'target': [...], 'weight': [...]})."
        )
    for col in (source, target):
        if col not in edge_df.columns:
            raise CourseInputError(
                f"Column {col!r} is missing from the edge table (columns: "
                f"{list(edge_df.columns)}). Fix: pass source=/target= with the right names."
            )
    wcol = weight
    if weight is not None and weight not in edge_df.columns:
        if "score" in edge_df.columns:
            wcol = "score"
        else:
            raise CourseInputError(
                f"Weight column {weight!r} is missing (columns: {list(edge_df.columns)}). Fix: "
                "pass weight='<column>' or weight=None for an unweighted graph."
            )
    G = nx.DiGraph() if directed else nx.Graph()
    attrs = [c for c in edge_df.columns if c not in (source, target, wcol)]
    for rec in edge_df.to_dict("records"):
        data = {c: _py(rec[c]) for c in attrs}
        if wcol is not None:
            data["weight"] = _py(rec[wcol])
        G.add_edge(_py(rec[source]), _py(rec[target]), **data)
    return G


def graph_from_matrix(
    scores: pd.DataFrame,
    top_k: int | None = None,
    top_fraction: float | None = None,
    threshold: float | None = None,
    directed: bool = True,
    sources: Iterable | None = None,
    *,
    self_loops: bool = False,
    absolute: bool = False,
    keep_isolated: bool = False,
):
    """Graph of the strongest entries of a gene x gene score matrix.

    Same selection rules as :func:`edges_from_matrix`; each edge gets ``weight`` = score.
    ``keep_isolated=True`` adds every gene of the matrix as a node, even without edges.

    Examples
    --------
    >>> m = pd.DataFrame([[0, .9], [.2, 0]], index=["a", "b"], columns=["a", "b"])
    >>> G = graph_from_matrix(m, threshold=0.5)
    >>> list(G.edges(data="weight"))
    [('a', 'b', 0.9)]
    """
    edges = edges_from_matrix(scores, top_k=top_k, top_fraction=top_fraction,
                              threshold=threshold, directed=directed, sources=sources,
                              self_loops=self_loops, absolute=absolute)
    G = graph_from_edges(edges, weight="score", directed=directed)
    if keep_isolated:
        scores = _check_matrix(scores)
        G.add_nodes_from(_py(g) for g in list(scores.index) + list(scores.columns))
    return G


def _py(value):
    """numpy scalars -> Python scalars (GraphML/JSON writers need them)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------------------------
def centrality(G, weight: str | None = "weight", *, seed: int = 0,
               betweenness_samples: int | None = None) -> pd.DataFrame:
    """Degree, PageRank and betweenness of every node, most central (PageRank) first.

    Parameters
    ----------
    G
        networkx graph (directed or not).
    weight
        Edge attribute used as strength for ``strength`` and PageRank.  Betweenness is computed
        on the unweighted graph (weights here are similarities, not distances).
    seed, betweenness_samples
        For large graphs, estimate betweenness from this many sampled source nodes (seeded);
        default: exact up to 2,000 nodes, else 500 samples.

    Returns
    -------
    pandas.DataFrame
        Index = node; ``degree``, ``in_degree`` / ``out_degree`` (directed), ``strength``
        (weighted degree), ``pagerank``, ``betweenness`` (normalised).

    Examples
    --------
    >>> import networkx as nx
    >>> int(centrality(nx.star_graph(3)).loc[0, "degree"])
    3
    """
    import networkx as nx

    if G.number_of_nodes() == 0:
        raise CourseInputError("The graph has no nodes. Fix: build it from a non-empty table.")
    nodes = list(G.nodes)
    has_w = weight is not None and all(weight in d for _, _, d in G.edges(data=True))
    w = weight if has_w else None
    df = pd.DataFrame(index=pd.Index(nodes, name="node"))
    df["degree"] = pd.Series(dict(G.degree()))
    if G.is_directed():
        df["in_degree"] = pd.Series(dict(G.in_degree()))
        df["out_degree"] = pd.Series(dict(G.out_degree()))
    df["strength"] = pd.Series(dict(G.degree(weight=w))).astype(float)
    try:
        pr = nx.pagerank(G, weight=w)
    except nx.PowerIterationFailedConvergence:  # pragma: no cover
        pr = nx.pagerank(G, weight=w, max_iter=1000, tol=1e-8)
    df["pagerank"] = pd.Series(pr)
    n = G.number_of_nodes()
    k = betweenness_samples
    if k is None and n > 2000:
        k = 500
    df["betweenness"] = pd.Series(
        nx.betweenness_centrality(G, k=None if k is None or k >= n else int(k), seed=seed,
                                  normalized=True))
    return df.sort_values(["pagerank", "degree"], ascending=False, kind="stable")


def communities(G, method: str = "louvain", seed: int = 0, *, resolution: float = 1.0,
                weight: str | None = "weight") -> dict:
    """Partition the genes of a graph into modules.

    ``method="louvain"`` uses :func:`networkx.community.louvain_communities`: pure Python (no
    compiled dependency to install on Binder/Colab/Windows) and deterministic for a given
    ``seed`` (Louvain visits nodes in random order, so different seeds can give different
    partitions - try a few).  ``method="leiden"`` uses ``leidenalg`` + ``python-igraph`` if they
    are installed (Leiden guarantees connected communities); they are optional.  Directed graphs
    use directed modularity (Louvain) or are made undirected (Leiden).

    Returns
    -------
    dict
        ``gene -> module`` with modules numbered 0, 1, ... from the largest.  Pass it to
        :func:`module_agreement`.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.disjoint_union(nx.complete_graph(4), nx.complete_graph(3))
    >>> sorted(set(communities(G, seed=0).values()))
    [0, 1]
    """
    import networkx as nx

    if G.number_of_nodes() == 0:
        raise CourseInputError("The graph has no nodes. Fix: build it from a non-empty table.")
    has_w = weight is not None and all(weight in d for _, _, d in G.edges(data=True))
    w = weight if has_w else None
    if method == "louvain":
        parts = nx.community.louvain_communities(G, weight=w, resolution=resolution, seed=seed)
    elif method == "leiden":
        try:
            import igraph as ig
            import leidenalg
        except ImportError as err:
            raise CourseInputError(
                "method='leiden' needs the optional packages leidenalg and python-igraph. Fix: "
                "`pip install leidenalg igraph`, or use method='louvain' (no extra install)."
            ) from err
        U = G.to_undirected() if G.is_directed() else G
        nodes = list(U.nodes)
        index = {n: i for i, n in enumerate(nodes)}
        g = ig.Graph(n=len(nodes), edges=[(index[a], index[b]) for a, b in U.edges])
        weights = [d.get(w, 1.0) for _, _, d in U.edges(data=True)] if w else None
        part = leidenalg.find_partition(
            g, leidenalg.RBConfigurationVertexPartition, weights=weights,
            resolution_parameter=resolution, seed=seed)
        parts = [{nodes[i] for i in comm} for comm in part]
    else:
        raise CourseInputError(
            f"method={method!r} is not known. Fix: use 'louvain' or 'leiden'."
        )
    parts = sorted((set(p) for p in parts), key=lambda p: (-len(p), min(map(str, p))))
    return {node: k for k, p in enumerate(parts) for node in sorted(p, key=str)}


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
_EXPORT_SUFFIXES = (".graphml", ".cyjs", ".json", ".csv", ".tsv")


def _clean_for_graphml(G):
    """Copy of G whose attributes GraphML can store (str/int/float/bool; no None)."""
    H = G.copy()

    def fix(d: dict):
        for k in list(d):
            v = _py(d[k])
            if v is None or (isinstance(v, float) and np.isnan(v)):
                del d[k]
            elif isinstance(v, (list, tuple, set, dict)):
                d[k] = json.dumps(sorted(v) if isinstance(v, set) else v, default=str)
            elif not isinstance(v, (str, int, float, bool)):
                d[k] = str(v)
            else:
                d[k] = v

    for _, d in H.nodes(data=True):
        fix(d)
    for _, _, d in H.edges(data=True):
        fix(d)
    fix(H.graph)
    return H


def export_network(G, path) -> Path:
    """Write a graph for Cytoscape, Gephi or a spreadsheet; the format follows the suffix.

    * ``.graphml`` - GraphML (Cytoscape, Gephi, yEd); read back with ``nx.read_graphml``.
    * ``.cyjs`` / ``.json`` - Cytoscape.js JSON (``nx.cytoscape_data``): File > Import > Network
      from File in Cytoscape.
    * ``.csv`` / ``.tsv`` - edge table ``source, target, <attributes>``.

    Parent folders are created.  Returns the path written.

    Examples
    --------
    >>> import networkx as nx, tempfile, os
    >>> G = nx.DiGraph([("GATA4", "NPPA", {"weight": 0.8})])
    >>> p = export_network(G, os.path.join(tempfile.mkdtemp(), "net.graphml"))
    >>> list(nx.read_graphml(p).edges(data=True))
    [('GATA4', 'NPPA', {'weight': 0.8})]
    """
    import networkx as nx

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _EXPORT_SUFFIXES:
        raise CourseInputError(
            f"Cannot tell the format from {path.name!r}. Fix: use one of the suffixes "
            f"{', '.join(_EXPORT_SUFFIXES)}."
        )
    if not isinstance(G, (nx.Graph, nx.DiGraph)):
        raise CourseInputError(
            f"export_network needs a networkx graph, got {type(G).__name__}. Fix: build one with "
            "graph_from_matrix or graph_from_edges."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".graphml":
        nx.write_graphml(_clean_for_graphml(G), path)
    elif suffix in (".cyjs", ".json"):
        data = nx.cytoscape_data(_clean_for_graphml(G))
        path.write_text(json.dumps(data, indent=1, default=str))
    else:
        rows = [{"source": a, "target": b, **{k: _py(v) for k, v in d.items()}}
                for a, b, d in G.edges(data=True)]
        df = pd.DataFrame(rows, columns=None if rows else ["source", "target"])
        df.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    return path


def read_network(path, *, directed: bool = True):
    """Read a graph written by :func:`export_network` (format from the suffix).

    Examples
    --------
    >>> G = read_network("net.cyjs")    # doctest: +SKIP
    """
    import networkx as nx

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".graphml":
        return nx.read_graphml(path)
    if suffix in (".cyjs", ".json"):
        return nx.cytoscape_graph(json.loads(path.read_text()))
    if suffix in (".csv", ".tsv"):
        df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        return graph_from_edges(df, weight="weight" if "weight" in df.columns else None,
                                directed=directed)
    raise CourseInputError(
        f"Cannot tell the format from {path.name!r}. Fix: use one of {', '.join(_EXPORT_SUFFIXES)}."
    )


# --------------------------------------------------------------------------------------------
# scoring against ground truth
# --------------------------------------------------------------------------------------------
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
    genes: Iterable | None = None,
    *,
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


def pr_curve(pred, truth, candidates="tf_to_gene", tfs=None, genes=None, *,
             directed: bool = True, absolute: bool = False) -> pd.DataFrame:
    """Precision-recall curve (sklearn) over the same candidates as :func:`score_edges`.

    Returns
    -------
    pandas.DataFrame
        ``recall, precision, threshold`` (threshold NaN for the final point), plus a constant
        ``random_precision`` column (the edge density) to draw the baseline.

    Examples
    --------
    >>> curve = pr_curve(pred, truth, tfs=gt.tfs)                          # doctest: +SKIP
    >>> ax = curve.plot("recall", "precision")                            # doctest: +SKIP
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
    tfs: Iterable | None = None,
    genes: Iterable | None = None,
    *,
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
    >>> score_by_context(pred, gt.edges, tfs=gt.tfs)                       # doctest: +SKIP
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
