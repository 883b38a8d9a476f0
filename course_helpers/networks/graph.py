"""Score matrices -> edge tables -> networkx graphs, and what to read from a graph (centrality,
communities).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .._utils import CourseInputError


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
    *,
    directed: bool = True,
    sources: Iterable | None = None,
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


def graph_from_matrix(scores: pd.DataFrame, *, keep_isolated: bool = False, **edge_options):
    """Graph of the strongest entries of a gene x gene score matrix.

    Same selection rules as :func:`edges_from_matrix`; each edge gets ``weight`` = score.
    ``keep_isolated=True`` adds every gene of the matrix as a node, even without edges.
    ``edge_options`` are the keywords of :func:`edges_from_matrix` (``top_k``, ``top_fraction``,
    ``threshold``, ``directed=True``, ``sources``, ``self_loops``, ``absolute``); ``directed``
    also decides the graph type.

    Examples
    --------
    >>> m = pd.DataFrame([[0, .9], [.2, 0]], index=["a", "b"], columns=["a", "b"])
    >>> G = graph_from_matrix(m, threshold=0.5)
    >>> list(G.edges(data="weight"))
    [('a', 'b', 0.9)]
    """
    edges = edges_from_matrix(scores, **edge_options)
    G = graph_from_edges(edges, weight="score", directed=edge_options.get("directed", True))
    if keep_isolated:
        scores = _check_matrix(scores)
        G.add_nodes_from(_py(g) for g in list(scores.index) + list(scores.columns))
    return G


def _py(value):
    """numpy scalars -> Python scalars (GraphML/JSON writers need them)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


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
