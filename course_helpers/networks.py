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

Three more read-outs live here too: **gene-embedding networks** (:func:`embedding_similarity` ->
:func:`embedding_network`: cosine similarity of context-specific gene embeddings, kNN graph,
communities), a **gene-set library** built from the tissue's own annotation
(:func:`tissue_gene_sets`; GMT files via :func:`read_gmt` / :func:`write_gmt`) and **enrichment**
of modules or rankings against it (:func:`enrich`, :func:`enrich_modules`, with gseapy).

Scoring follows BEELINE (Pratapa et al. 2020, Nat. Methods): candidate edges are TF -> gene
pairs (no self-loops); AUPRC is compared with a random predictor (whose expected precision is
the edge density among the candidates) and the early precision ratio (EPR) is the precision of
the top-k predictions, k = number of true edges, divided by that density.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import CourseInputError

__all__ = [
    "EmbeddingNetwork",
    "centrality",
    "communities",
    "cosine_similarity",
    "edges_from_matrix",
    "embedding_network",
    "embedding_similarity",
    "enrich",
    "enrich_modules",
    "export_network",
    "graph_from_edges",
    "graph_from_matrix",
    "module_agreement",
    "pool_similarities",
    "pr_curve",
    "read_gmt",
    "read_network",
    "score_by_context",
    "score_edges",
    "tissue_gene_sets",
    "write_gmt",
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


# --------------------------------------------------------------------------------------------
# gene-embedding networks
# --------------------------------------------------------------------------------------------
def _dataset_column(dataset, name: str) -> list:
    """One column of tokenized cells (HF dataset, DataFrame or dict of columns)."""
    cols = getattr(dataset, "column_names", None)
    if cols is None and isinstance(dataset, (pd.DataFrame, Mapping)):
        cols = list(dataset.keys())
    if cols is None or name not in cols:
        raise CourseInputError(
            f"The dataset has no column {name!r} (columns: {cols}). Fix: keep it when tokenizing, "
            f"e.g. tokenize(adata, vocab, cell_attrs=('cell_id', {name!r}))."
        )
    return [str(v) for v in dataset[name]]


def _dataset_len(dataset) -> int:
    if isinstance(dataset, Mapping):
        return len(dataset["input_ids"]) if "input_ids" in dataset else 0
    return len(dataset)


def _subset_dataset(dataset, idx: np.ndarray):
    """The cells ``idx`` of a HF dataset, DataFrame, dict of columns or list of token lists."""
    idx = [int(i) for i in idx]
    if hasattr(dataset, "select") and hasattr(dataset, "column_names"):
        return dataset.select(idx)
    if isinstance(dataset, pd.DataFrame):
        return dataset.iloc[idx].reset_index(drop=True)
    if isinstance(dataset, Mapping):
        return {k: [list(v)[i] for i in idx] if not isinstance(v, np.ndarray) else v[idx]
                for k, v in dataset.items()}
    return [dataset[i] for i in idx]


def _cell_indices(dataset, cells) -> np.ndarray:
    """Row indices from None (all), a boolean mask or a list of integer positions."""
    n = _dataset_len(dataset)
    if cells is None:
        return np.arange(n)
    arr = np.asarray(list(cells) if not isinstance(cells, np.ndarray) else cells)
    if arr.dtype == bool:
        if len(arr) != n:
            raise CourseInputError(
                f"cells= is a boolean mask of length {len(arr)} but the dataset has {n} cells. "
                "Fix: build the mask from the dataset's own columns, e.g. "
                "np.asarray(ds['cell_type']) == 'cardiomyocyte'."
            )
        return np.flatnonzero(arr)
    if arr.size == 0:
        raise CourseInputError("cells= selects no cell. Fix: pass at least one row index.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise CourseInputError(
            f"cells= must be row positions (integers) or a boolean mask, got {arr.dtype} values "
            "such as {!r}. Fix: e.g. np.flatnonzero(np.asarray(ds['state']) == 'diseased')."
            .format(arr.ravel()[0])
        )
    if arr.min() < 0 or arr.max() >= n:
        raise CourseInputError(
            f"cells= holds positions outside 0..{n - 1}. Fix: use row positions of this dataset."
        )
    return np.unique(arr.astype(np.int64))


def cosine_similarity(embeddings: pd.DataFrame, *, center: bool = False) -> pd.DataFrame:
    """Gene x gene cosine similarity of gene embeddings (one row per gene).

    Parameters
    ----------
    embeddings
        DataFrame, index = genes, columns = embedding dimensions.  Rows with NaN (genes that
        occurred in no cell) are dropped.
    center
        Subtract the mean embedding over genes first.  Contextual embeddings share a large
        common direction (every gene of a cell sees the same context), which pushes all
        cosines towards 1; centring removes it and spreads the similarities.

    Returns
    -------
    pandas.DataFrame
        Symmetric, 1 on the diagonal, same index and columns as the kept rows.

    Examples
    --------
    >>> emb = pd.DataFrame([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]], index=["a", "b", "c"])
    >>> cosine_similarity(emb).round(2)
         a    b    c
    a  1.0  1.0  0.0
    b  1.0  1.0  0.1
    c  0.0  0.1  1.0
    """
    if not isinstance(embeddings, pd.DataFrame) or embeddings.empty:
        raise CourseInputError(
            "embeddings must be a non-empty DataFrame (genes x dimensions), e.g. the output of "
            "course_helpers.embed.embed_genes."
        )
    E = embeddings.dropna(how="any")
    X = E.to_numpy(dtype=np.float64)
    if center:
        X = X - X.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(norm == 0):
        zero = list(E.index[norm[:, 0] == 0][:5])
        raise CourseInputError(
            f"Gene(s) {zero} have an all-zero embedding, so their cosine is undefined. Fix: drop "
            "them (or use center=False if only one gene is left)."
        )
    X = X / norm
    S = np.clip(X @ X.T, -1.0, 1.0)
    np.fill_diagonal(S, 1.0)
    return pd.DataFrame(S, index=E.index.copy(), columns=E.index.copy())


def embedding_similarity(
    model,
    dataset,
    *,
    cells=None,
    emb_layer: int = -1,
    groupby: str | None = None,
    genes: Iterable[str] | None = None,
    min_cells: int = 1,
    center: bool = False,
    batch_size: int = 32,
    progress: bool = True,
):
    """Gene x gene cosine similarity of context-specific gene embeddings.

    Each gene's embedding is its contextual embedding (layer ``emb_layer``) averaged over the
    chosen cells in which it occurs - :func:`course_helpers.embed.embed_genes`, the quantity
    Geneformer's ``EmbExtractor`` calls a gene embedding - so the same gene gets a different
    vector in different cells: a *context-specific* gene network (Theodoris et al. 2023; the
    BioNeMo and scGPT gene-programme tutorials use the same recipe).  Two genes are close when
    the model represents them alike in these cells.  Similarity is not regulation: the network
    is a hypothesis to score against the truth (:func:`score_edges`, :func:`module_agreement`).

    Parameters
    ----------
    model
        From :func:`course_helpers.model.load_model`.
    dataset
        Tokenized cells (``datasets.Dataset`` with ``input_ids``; a DataFrame or dict of columns
        works too).
    cells
        Which cells to average over: row positions or a boolean mask (default: all).
    emb_layer
        Reference ``emb_layer``: ``-1`` = second-to-last layer (default), ``0`` = last layer.
    groupby
        A dataset column (e.g. ``"cell_type"``): one similarity matrix per group of the chosen
        cells, returned as a dict ``group -> DataFrame``.
    genes
        Ensembl IDs or symbols to keep (default: every gene present in at least ``min_cells``
        of the chosen cells).
    min_cells
        Genes averaged over fewer cells are dropped (their mean embedding is noisy).
    center
        Subtract the mean gene embedding before the cosine (see :func:`cosine_similarity`).
    batch_size, progress
        Passed to :func:`~course_helpers.embed.embed_genes`.

    Returns
    -------
    pandas.DataFrame or dict
        Genes x genes, indexed by **Ensembl ID** (index and columns), symmetric, 1 on the
        diagonal.  ``attrs``: ``n_cells`` (Series, cells each gene was averaged over),
        ``symbol`` (Series Ensembl ID -> symbol), ``embeddings`` (the mean gene embeddings, genes x
        hidden, same order) and ``params``.  With ``groupby``: ``{group: DataFrame}``.

    Examples
    --------
    >>> sim = embedding_similarity(model, ds, cells=np.asarray(ds["cell_type"]) == "fibroblast",
    ...                            progress=False)                           # doctest: +SKIP
    >>> sim.loc["ENSG00000118526"].nlargest(5)    # genes embedded like TCF21   # doctest: +SKIP
    >>> per_type = embedding_similarity(model, ds, groupby="cell_type")        # doctest: +SKIP
    """
    from .embed import embed_genes

    if int(min_cells) < 1:
        raise CourseInputError(f"min_cells must be at least 1, got {min_cells}.")
    idx = _cell_indices(dataset, cells)
    if groupby is not None:
        labels = np.asarray(_dataset_column(dataset, groupby), dtype=object)[idx]
        out = {}
        for g in dict.fromkeys(labels.tolist()):
            out[g] = embedding_similarity(
                model, dataset, cells=idx[labels == g], emb_layer=emb_layer, groupby=None,
                genes=genes, min_cells=min_cells, center=center, batch_size=batch_size,
                progress=progress)
            out[g].attrs["params"]["group"] = {groupby: g}
        return out
    subset = dataset if len(idx) == _dataset_len(dataset) else _subset_dataset(dataset, idx)
    genes_list = None if genes is None else ([genes] if isinstance(genes, str) else list(genes))
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*occur in no cell.*")
        emb = embed_genes(model, subset, layer=emb_layer, batch_size=batch_size,
                          genes=genes_list, progress=progress)
    ens = emb.attrs["ensembl_id"]
    n_cells = emb.attrs["n_cells"]
    symbols = pd.Series(list(emb.index), index=ens.to_numpy(), name="symbol")
    emb = emb.copy()
    emb.index = pd.Index(ens.to_numpy(), name="gene")
    n = pd.Series(n_cells.to_numpy(), index=emb.index, name="n_cells")
    keep = (n >= int(min_cells)).to_numpy() & ~emb.isna().any(axis=1).to_numpy()
    if keep.sum() < 2:
        raise CourseInputError(
            f"Only {int(keep.sum())} gene(s) occur in at least {min_cells} of the {len(idx)} "
            "chosen cells. Fix: choose more cells, lower min_cells, or check genes=."
        )
    emb, n = emb[keep], n[keep]
    sim = cosine_similarity(emb, center=center)
    sim.index.name = sim.columns.name = "gene"
    sim.attrs["n_cells"] = n
    sim.attrs["symbol"] = symbols[keep]
    sim.attrs["embeddings"] = emb
    sim.attrs["params"] = {"emb_layer": int(emb_layer), "center": bool(center),
                           "min_cells": int(min_cells), "cells_used": len(idx)}
    return sim


def pool_similarities(per_group: Mapping, *, min_cells: int = 1) -> pd.DataFrame:
    """Tissue-wide similarity from per-group results of ``embedding_similarity(groupby=...)``.

    Each gene's pooled embedding is the cell-weighted mean of its group embeddings,
    ``sum_g n_g e_g / sum_g n_g`` - exactly its mean over all cells of all groups - so the
    tissue-wide network costs no second pass through the model.  Exact when the groups were
    computed with ``min_cells=1`` (a gene dropped from a group is missing from the sum).

    Parameters
    ----------
    per_group
        ``{group: DataFrame}`` from :func:`embedding_similarity` with ``groupby`` (each carries
        ``attrs["embeddings"]`` and ``attrs["n_cells"]``).
    min_cells
        Genes present in fewer cells over all groups are dropped.

    Returns
    -------
    pandas.DataFrame
        As :func:`embedding_similarity` (``attrs``: ``n_cells``, ``symbol``, ``embeddings``,
        ``params`` with ``pooled_groups``).

    Examples
    --------
    >>> per_type = embedding_similarity(model, ds, groupby="cell_type")   # doctest: +SKIP
    >>> tissue = pool_similarities(per_type)                             # doctest: +SKIP
    """
    if not isinstance(per_group, Mapping) or not per_group:
        raise CourseInputError(
            "per_group must be the dict returned by embedding_similarity(..., groupby=...).")
    sums, counts, symbols, params = None, None, {}, {}
    for g, sim in per_group.items():
        emb, n = sim.attrs.get("embeddings"), sim.attrs.get("n_cells")
        if not isinstance(emb, pd.DataFrame) or not isinstance(n, pd.Series):
            raise CourseInputError(
                f"Group {g!r} carries no embeddings (attrs['embeddings'] / attrs['n_cells']). "
                "Fix: pass the unmodified output of embedding_similarity(..., groupby=...)."
            )
        w = emb.astype(np.float64).mul(n.astype(np.float64), axis=0)
        sums = w if sums is None else sums.add(w, fill_value=0.0)
        counts = n.astype(np.int64) if counts is None else counts.add(n, fill_value=0)
        symbols.update(sim.attrs.get("symbol", pd.Series(dtype=object)).to_dict())
        params = dict(sim.attrs.get("params", {}))
    counts = counts.astype(np.int64)
    keep = counts[counts >= int(min_cells)].index
    order = [gene for gene in sums.index if gene in set(keep)]
    emb = sums.loc[order].div(counts.loc[order].astype(np.float64), axis=0)
    sim = cosine_similarity(emb, center=bool(params.get("center", False)))
    sim.index.name = sim.columns.name = "gene"
    sim.attrs["n_cells"] = counts.loc[order].rename("n_cells")
    sim.attrs["symbol"] = pd.Series({gene: symbols.get(gene) for gene in order}, name="symbol")
    sim.attrs["embeddings"] = emb.astype(np.float32)
    params.pop("group", None)
    params.update(pooled_groups=[str(g) for g in per_group], min_cells=int(min_cells),
                  cells_used=int(sum(s.attrs["params"].get("cells_used", 0)
                                     for s in per_group.values())))
    sim.attrs["params"] = params
    return sim


@dataclass
class EmbeddingNetwork:
    """A gene-embedding network: similarity, kNN / threshold graph and its communities.

    Attributes
    ----------
    similarity : pandas.DataFrame
        Gene x gene cosine similarity (from :func:`embedding_similarity`).
    graph : networkx.Graph
        Undirected; edge ``weight`` = cosine similarity (kept edges only).
    modules : pandas.Series
        Gene -> module number (0 = largest), from :func:`communities`.
    params : dict
        How the graph and modules were built.
    """

    similarity: pd.DataFrame
    graph: object
    modules: pd.Series
    params: dict = field(default_factory=dict)

    def edges(self) -> pd.DataFrame:
        """Graph edges ``source, target, score`` (one row per unordered pair), strongest first."""
        rows = [(a, b, d.get("weight", np.nan)) for a, b, d in self.graph.edges(data=True)]
        df = pd.DataFrame(rows, columns=["source", "target", "score"])
        return df.sort_values(["score", "source", "target"], ascending=[False, True, True],
                              kind="stable").reset_index(drop=True)

    def tf_edges(self, tfs: Iterable[str], *, graph_only: bool = False) -> pd.DataFrame:
        """TF -> gene edges scored by cosine similarity, for :func:`score_edges`.

        ``graph_only=False`` (default) ranks every TF -> gene pair by its similarity (the full
        ranking, as for every other method); ``True`` keeps only the pairs joined in the graph.
        """
        tf_set = {str(t) for t in tfs}
        if graph_only:
            e = self.edges()
            both = pd.concat([e, e.rename(columns={"source": "target", "target": "source"})])
            return both[both["source"].isin(tf_set)].reset_index(drop=True)
        return edges_from_matrix(self.similarity, sources=tf_set)

    def module_genes(self) -> dict:
        """``module -> list of genes`` (largest module first)."""
        return {m: list(g.index) for m, g in self.modules.groupby(self.modules, sort=True)}

    def to_anndata(self):
        """AnnData with one observation per gene (scanpy-style graph storage).

        ``X`` = the mean gene embeddings when known (else an empty matrix), ``obs['module']``
        (categorical), ``obs['degree']``, ``obs['n_cells']``, ``obs['symbol']`` where known,
        ``obsp['connectivities']`` (sparse graph weights), ``obsp['similarity']`` (dense cosine)
        and ``uns['embedding_network']`` (the parameters).
        """
        import anndata
        import networkx as nx
        import scipy.sparse as sp

        genes = list(self.similarity.index)
        emb = self.similarity.attrs.get("embeddings")
        X = (emb.loc[genes].to_numpy(dtype=np.float32) if isinstance(emb, pd.DataFrame)
             else np.zeros((len(genes), 0), dtype=np.float32))
        obs = pd.DataFrame(index=pd.Index([str(g) for g in genes], name="gene"))
        obs["module"] = pd.Categorical(self.modules.reindex(genes).astype("Int64").astype(str))
        obs["degree"] = [self.graph.degree(g) if g in self.graph else 0 for g in genes]
        for key in ("n_cells", "symbol"):
            s = self.similarity.attrs.get(key)
            if isinstance(s, pd.Series):
                obs[key] = s.reindex(genes).to_numpy()
        A = nx.to_scipy_sparse_array(self.graph, nodelist=genes, weight="weight", format="csr")
        ad = anndata.AnnData(X=X, obs=obs)
        ad.obsp["connectivities"] = sp.csr_matrix(A)
        ad.obsp["similarity"] = self.similarity.to_numpy(dtype=np.float32)
        ad.uns["embedding_network"] = {k: v for k, v in self.params.items() if v is not None}
        return ad

    def __repr__(self) -> str:
        return (f"EmbeddingNetwork(genes={len(self.similarity)}, edges="
                f"{self.graph.number_of_edges()}, modules={self.modules.nunique()}, "
                f"params={self.params})")


def embedding_network(
    similarity: pd.DataFrame,
    *,
    k: int | None = 10,
    threshold: float | None = None,
    mutual: bool = False,
    method: str = "louvain",
    resolution: float = 1.0,
    seed: int = 0,
) -> EmbeddingNetwork:
    """Gene-embedding network: cosine similarity -> kNN (or threshold) graph -> communities.

    Parameters
    ----------
    similarity
        Gene x gene similarity (:func:`embedding_similarity` or :func:`cosine_similarity`).
    k
        Join each gene to its ``k`` most similar genes (an edge is kept if either gene chooses
        the other; both with ``mutual=True``).  ``None`` with ``threshold``: threshold graph.
    threshold
        Keep pairs with similarity >= threshold (combined with ``k``: both conditions).
    mutual
        Mutual kNN graph (sparser, fewer hub genes).
    method, resolution, seed
        Community detection, as :func:`communities` (Louvain by default, seeded).

    Returns
    -------
    EmbeddingNetwork
        ``.graph``, ``.modules`` (gene -> module), ``.edges()``, ``.tf_edges(tfs)`` for
        :func:`score_edges`, ``.to_anndata()``.  Genes without any edge are their own module.

    Examples
    --------
    >>> emb = pd.DataFrame([[1, 0], [1, .1], [.1, 1], [0, 1]], index=list("abcd"), dtype=float)
    >>> net = embedding_network(cosine_similarity(emb), k=1)
    >>> net.modules.to_dict()
    {'a': 0, 'b': 0, 'c': 1, 'd': 1}
    """
    import networkx as nx

    S = _check_matrix(similarity)
    if list(S.index) != list(S.columns):
        raise CourseInputError(
            "similarity must be square with the same genes as rows and columns (a gene x gene "
            "similarity). Fix: use embedding_similarity(...) or cosine_similarity(embeddings)."
        )
    if k is None and threshold is None:
        raise CourseInputError("Pass k= (kNN graph), threshold= (threshold graph) or both.")
    genes = np.asarray(S.index, dtype=object)
    n = len(genes)
    V = S.to_numpy(dtype=np.float64, copy=True)
    np.fill_diagonal(V, -np.inf)
    V[np.isnan(V)] = -np.inf
    keep = np.ones_like(V, dtype=bool)
    if k is not None:
        if int(k) < 1:
            raise CourseInputError(f"k must be at least 1, got {k}.")
        kk = min(int(k), n - 1)
        order = np.argsort(-V, axis=1, kind="stable")[:, :kk]
        chosen = np.zeros_like(keep)
        chosen[np.repeat(np.arange(n), kk), order.ravel()] = True
        keep = (chosen & chosen.T) if mutual else (chosen | chosen.T)
    if threshold is not None:
        keep &= V >= float(threshold)
    keep &= np.isfinite(V)
    keep = np.triu(keep, k=1)
    i, j = np.nonzero(keep)
    G = nx.Graph()
    G.add_nodes_from(_py(g) for g in genes)
    # communities need non-negative weights; cosine can be negative after centring
    G.add_weighted_edges_from((genes[a], genes[b], float(max(V[a, b], 0.0)))
                              for a, b in zip(i, j))
    comm = communities(G, method=method, seed=seed, resolution=resolution)
    modules = pd.Series(comm, name="module").reindex(list(genes)).astype(int)
    modules.index.name = "gene"
    params = {"k": None if k is None else int(k), "threshold": threshold, "mutual": bool(mutual),
              "method": method, "resolution": float(resolution), "seed": int(seed),
              "n_edges": int(G.number_of_edges())}
    return EmbeddingNetwork(similarity=S, graph=G, modules=modules, params=params)


# --------------------------------------------------------------------------------------------
# gene-set libraries and enrichment
# --------------------------------------------------------------------------------------------
def tissue_gene_sets(
    truth,
    *,
    universe: Iterable[str] | None = None,
    decoys: int = 3,
    seed: int = 0,
    min_size: int = 5,
    programs: bool = True,
    regulons: bool = True,
) -> dict:
    """The teaching tissue's own gene-set library: programmes, regulons and decoys.

    Offline stand-in for MSigDB / Reactome: every set is known to be true (or known to be
    random), so an enrichment result can be checked.

    * ``program:<cell type>`` - the genes of each planted cell-type programme.
    * ``regulon:<TF symbol>`` - the planted targets of each TF (TFs with >= ``min_size``).
    * ``decoy<i>:<name>`` - for every true set, ``decoys`` random sets of the same size drawn
      from ``universe`` (seeded).  A decoy that comes out "enriched" shows what a false positive
      looks like; over many decoys about 5 % have p < 0.05.

    Parameters
    ----------
    truth
        :func:`course_helpers.data.load_ground_truth` (``programs``, ``edges``, ``genes``).
    universe
        Genes the sets are restricted to and decoys are drawn from (e.g. the genes of your
        network).  Default: every gene of the tissue (``truth.genes``).
    decoys
        Decoy sets per true set (0: none).
    seed
        Seed for the decoys.
    min_size
        Sets with fewer genes in the universe are left out.
    programs, regulons
        Which true sets to include.

    Returns
    -------
    dict
        ``name -> sorted list of Ensembl IDs``; true sets first, then decoys.  Pass it to
        :func:`enrich` or :func:`write_gmt`.

    Examples
    --------
    >>> from course_helpers.data import load_ground_truth
    >>> sets = tissue_gene_sets(load_ground_truth(), decoys=1)
    >>> len(sets["program:cardiomyocyte"]) == len(sets["decoy1:program:cardiomyocyte"])
    True
    """
    if not hasattr(truth, "programs") or not hasattr(truth, "edges"):
        raise CourseInputError(
            "truth must be the teaching tissue's ground truth. Fix: "
            "course_helpers.data.load_ground_truth()."
        )
    if int(decoys) < 0:
        raise CourseInputError(f"decoys must be >= 0, got {decoys}.")
    if universe is None:
        if getattr(truth, "genes", None) is not None:
            universe = list(truth.genes.index)
        else:
            universe = sorted(set(truth.edges["source"]) | set(truth.edges["target"])
                              | {g for v in truth.programs.values() for g in v})
    univ = sorted(dict.fromkeys(str(g) for g in universe))
    in_univ = set(univ)
    symbol = {}
    if getattr(truth, "genes", None) is not None and "gene_symbol" in truth.genes.columns:
        symbol = truth.genes["gene_symbol"].astype(str).to_dict()
    for a, b in zip(truth.edges["source"], truth.edges.get("source_symbol", truth.edges["source"])):
        symbol.setdefault(a, str(b))
    sets: dict = {}
    if programs:
        for prog, genes in truth.programs.items():
            sets[f"program:{prog}"] = sorted({str(g) for g in genes} & in_univ)
    if regulons:
        for tf, tg in truth.edges.groupby("source")["target"]:
            sets[f"regulon:{symbol.get(tf, tf)}"] = sorted(set(map(str, tg)) & in_univ)
    sets = {k: v for k, v in sets.items() if len(v) >= int(min_size)}
    if not sets:
        raise CourseInputError(
            f"No true gene set has {min_size} genes in the universe. Fix: pass a larger "
            "universe= (Ensembl IDs, as in the truth) or lower min_size."
        )
    rng = np.random.default_rng(seed)
    pool = np.asarray(univ, dtype=object)
    out = dict(sets)
    for i in range(1, int(decoys) + 1):
        for name, genes in sets.items():
            out[f"decoy{i}:{name}"] = sorted(rng.choice(pool, size=len(genes), replace=False))
    return out


def read_gmt(path) -> dict:
    """Read a GMT gene-set file (MSigDB, Reactome, Enrichr libraries): ``name -> genes``.

    Each line: ``name <tab> description <tab> gene1 <tab> gene2 ...``.

    Examples
    --------
    >>> sets = read_gmt("h.all.v2024.1.Hs.symbols.gmt")                  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise CourseInputError(
            f"GMT file {str(path)!r} not found. Fix: download it (e.g. MSigDB hallmark: "
            "https://www.gsea-msigdb.org/gsea/msigdb/human/collections.jsp) and pass its path."
        )
    sets: dict = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = [p.strip() for p in line.rstrip("\n\r").split("\t")]
            if not parts or not parts[0]:
                continue
            if len(parts) < 3:
                raise CourseInputError(
                    f"{path.name}, line {lineno}: a GMT line needs a name, a description and at "
                    "least one gene, separated by tabs. Fix: check that the file is a GMT file."
                )
            sets[parts[0]] = [g for g in parts[2:] if g]
    if not sets:
        raise CourseInputError(f"{path.name} holds no gene set. Fix: check the file.")
    return sets


def write_gmt(gene_sets: Mapping, path, *, description: str = "course_helpers") -> Path:
    """Write ``name -> genes`` as a GMT file (readable by :func:`read_gmt`, GSEA, Enrichr).

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_gmt({"A": ["g1", "g2"]}, os.path.join(tempfile.mkdtemp(), "x.gmt"))
    >>> read_gmt(p)
    {'A': ['g1', 'g2']}
    """
    sets = _as_gene_sets(gene_sets)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines("\t".join([name, description, *genes]) + "\n" for name, genes in sets.items())
    return path


def _as_gene_sets(gene_sets) -> dict:
    """dict name -> genes from a dict, a GMT path or a long DataFrame (source/target)."""
    if isinstance(gene_sets, (str, Path)):
        return read_gmt(gene_sets)
    if isinstance(gene_sets, pd.DataFrame):
        cols = [c for c in (("source", "target"), ("term", "gene"), ("geneset", "genesymbol"))
                if set(c) <= set(gene_sets.columns)]
        if not cols:
            raise CourseInputError(
                "A gene-set DataFrame needs columns source (set) and target (gene), as "
                f"decoupler's resources (got {list(gene_sets.columns)}). Fix: rename them."
            )
        s, t = cols[0]
        return {str(k): list(dict.fromkeys(map(str, v)))
                for k, v in gene_sets.groupby(s, sort=False)[t]}
    if isinstance(gene_sets, Mapping):
        out = {}
        for k, v in gene_sets.items():
            if isinstance(v, str) or not isinstance(v, Iterable):
                raise CourseInputError(
                    f"Gene set {k!r} must be a list of genes, got {type(v).__name__}. Fix: "
                    "{'set name': ['gene1', 'gene2', ...]}."
                )
            out[str(k)] = list(dict.fromkeys(str(g) for g in v))
        if not out:
            raise CourseInputError("gene_sets is empty. Fix: pass at least one gene set.")
        return out
    raise CourseInputError(
        f"gene_sets must be a dict name -> genes, a GMT file path or a DataFrame (source, "
        f"target); got {type(gene_sets).__name__}. Fix: e.g. tissue_gene_sets(load_ground_truth())."
    )


def _gseapy():
    try:
        import gseapy
    except ImportError as err:
        raise CourseInputError(
            "enrich() needs the optional package gseapy. Fix: pip install "
            "'course_helpers[baselines]' (or pip install gseapy==1.3.1)."
        ) from err
    return gseapy


def enrich(
    gene_sets,
    genes_or_ranking,
    *,
    universe: Iterable[str] | None = None,
    method: str = "ora",
    n_top: int | None = None,
    min_size: int = 3,
    max_size: int = 2000,
    permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Test a gene list (a module) or a ranked gene list against a gene-set library.

    Uses **gseapy** (Fang et al. 2023): ``method="ora"`` is ``gseapy.enrich`` run offline with
    our own library and background - Enrichr's one-sided hypergeometric test (over-
    representation only) with Benjamini-Hochberg FDR, the recipe of scGPT's gene-programme
    tutorial; ``method="prerank"`` is ``gseapy.prerank`` (GSEA on a ranking, permutation
    p-values).  Why gseapy rather than decoupler (which the course uses for AUCell/ULM):
    decoupler's ORA is built for per-cell matrices, tests both tails (depletion counts as
    "significant") and returns only FDR-adjusted p-values, whereas gseapy takes a plain gene
    list with an explicit background and a dict *or* GMT file, and reports the overlap genes,
    raw p-values and FDR.

    Switching to a public collection is one line - pass a GMT file instead of the tissue
    library (gene symbols: map your Ensembl IDs to symbols first, and use symbols for the
    universe too)::

        res = enrich("h.all.v2024.1.Hs.symbols.gmt", module_symbols, universe=all_symbols)

    (MSigDB hallmark or Reactome GMT files: gsea-msigdb.org, reactome.org; or
    ``gseapy.get_library("Reactome_2022")`` / ``decoupler.op.hallmark()`` online.)

    Parameters
    ----------
    gene_sets
        ``name -> genes`` (e.g. :func:`tissue_gene_sets`), a GMT file path, or a long DataFrame
        with ``source`` (set) and ``target`` (gene) columns (decoupler's resources).
    genes_or_ranking
        ORA: a list/set of genes (the module).  A pandas Series ``gene -> score`` is a ranking:
        ``method="prerank"`` uses all of it; ``method="ora"`` tests its ``n_top`` best genes.
    universe
        The background: every gene that could have been in the list (e.g. the genes of the
        network).  Gene sets are restricted to it.  Default: the union of the ranking / list
        and all gene sets - pass the real universe, a too large background inflates
        significance.
    method
        ``"ora"`` or ``"prerank"``.
    n_top
        ORA on a ranking: how many top-scored genes form the list.
    min_size, max_size
        Gene sets with fewer / more genes in the universe are skipped.
    permutations, seed
        ``prerank`` only.

    Returns
    -------
    pandas.DataFrame
        One row per gene set tested, most significant first: ``gene_set``, ``size`` (genes in
        the universe), ``overlap`` (ORA: set genes in the list), ``expected`` (ORA: overlap
        expected by chance), ``odds_ratio`` (ORA) or ``nes`` (prerank), ``p_value``, ``fdr``
        (Benjamini-Hochberg over the sets tested), ``genes`` (the overlap / leading-edge genes,
        ``;``-separated).  ``attrs["n_genes"]``, ``attrs["n_universe"]``.

    Examples
    --------
    >>> sets = {"T": ["g0", "g1", "g2", "g3"], "D": ["g10", "g11", "g12", "g13"]}
    >>> res = enrich(sets, ["g0", "g1", "g2", "g5"], universe=[f"g{i}" for i in range(40)])
    >>> res[["gene_set", "overlap", "p_value"]].round(5)
      gene_set  overlap  p_value
    0        T        3  0.00159
    1        D        0  1.00000
    """
    sets = _as_gene_sets(gene_sets)
    if method not in ("ora", "prerank"):
        raise CourseInputError(f"method={method!r} is not known. Fix: 'ora' or 'prerank'.")
    ranking = genes_or_ranking if isinstance(genes_or_ranking, pd.Series) else None
    if ranking is None:
        if isinstance(genes_or_ranking, str) or not isinstance(genes_or_ranking, Iterable):
            raise CourseInputError(
                "genes_or_ranking must be a list of genes (ORA) or a pandas Series gene -> score "
                f"(a ranking); got {type(genes_or_ranking).__name__}."
            )
        if method == "prerank":
            raise CourseInputError(
                "method='prerank' needs a ranking: a pandas Series gene -> score. Fix: pass one, "
                "or use method='ora' for a gene list."
            )
        query = list(dict.fromkeys(str(g) for g in genes_or_ranking))
    else:
        ranking = pd.to_numeric(ranking, errors="coerce").dropna()
        ranking.index = ranking.index.astype(str)
        ranking = ranking[~ranking.index.duplicated()]
        if method == "ora":
            if n_top is None or int(n_top) < 1:
                raise CourseInputError(
                    "ORA on a ranking needs n_top= (how many top-scored genes form the list). "
                    "Fix: enrich(sets, ranking, n_top=50), or method='prerank'."
                )
            query = list(ranking.sort_values(ascending=False, kind="stable").index[:int(n_top)])
        else:
            query = list(ranking.index)
    if universe is None:
        univ = set(query) | {g for v in sets.values() for g in v}
        if ranking is not None:
            univ |= set(ranking.index)
    else:
        univ = {str(g) for g in universe}
    query_in = [g for g in query if g in univ]
    if not query_in:
        raise CourseInputError(
            "None of the genes is in the universe. Fix: use the same identifiers everywhere "
            "(Ensembl IDs for the tissue library, symbols for MSigDB/Reactome GMT files)."
        )
    sized = {k: [g for g in v if g in univ] for k, v in sets.items()}
    sized = {k: v for k, v in sized.items() if int(min_size) <= len(v) <= int(max_size)}
    if not sized:
        raise CourseInputError(
            f"No gene set has between {min_size} and {max_size} genes in the universe. Fix: "
            "check that the sets use the same identifiers as the genes, or change min_size."
        )
    gp = _gseapy()
    N = len(univ)
    if method == "ora":
        res = gp.enrich(gene_list=query_in, gene_sets=sized, background=sorted(univ),
                        outdir=None, cutoff=1.0, no_plot=True, verbose=False)
        r = res.results if res.results is not None else pd.DataFrame()
        r = r.set_index("Term") if len(r) else pd.DataFrame(columns=["P-value", "Genes"])
        n = len(query_in)
        qset = set(query_in)
        rows = []
        for name, genes in sized.items():
            ov = sorted(set(genes) & qset)
            a, K = len(ov), len(genes)
            b, c, d = K - a, n - a, N - K - n + a
            odds = (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5))
            p = float(r.loc[name, "P-value"]) if name in r.index else 1.0
            rows.append({"gene_set": name, "size": K, "overlap": a, "expected": K * n / N,
                         "odds_ratio": odds, "p_value": min(p, 1.0), "genes": ";".join(ov)})
        out = pd.DataFrame(rows)
    else:
        rnk = ranking[ranking.index.isin(univ)].sort_values(ascending=False, kind="stable")
        res = gp.prerank(rnk=rnk, gene_sets=sized, permutation_num=int(permutations),
                         seed=int(seed), min_size=int(min_size), max_size=int(max_size),
                         outdir=None, no_plot=True, threads=1, verbose=False)
        r = res.res2d.set_index("Term")
        rows = []
        for name, genes in sized.items():
            if name not in r.index:
                continue
            rows.append({"gene_set": name, "size": len(genes),
                         "nes": float(r.loc[name, "NES"]), "es": float(r.loc[name, "ES"]),
                         "p_value": float(r.loc[name, "NOM p-val"]),
                         "genes": str(r.loc[name, "Lead_genes"])})
        out = pd.DataFrame(rows)
    from scipy.stats import false_discovery_control

    out["fdr"] = false_discovery_control(out["p_value"].clip(0, 1).to_numpy(), method="bh")
    cols = [c for c in ("gene_set", "size", "overlap", "expected", "odds_ratio", "nes", "es",
                        "p_value", "fdr", "genes") if c in out.columns]
    sort_key = ["p_value", "odds_ratio"] if method == "ora" else ["p_value", "nes"]
    out = out[cols].sort_values(sort_key, ascending=[True, False], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["n_genes"] = len(query_in)
    out.attrs["n_universe"] = N
    out.attrs["method"] = method
    return out


def enrich_modules(modules, gene_sets, *, universe: Iterable[str] | None = None,
                   min_module_size: int = 5, **kwargs) -> pd.DataFrame:
    """:func:`enrich` (ORA) for every module of a partition; one row per (module, gene set).

    Parameters
    ----------
    modules
        ``gene -> module`` (e.g. ``EmbeddingNetwork.modules`` or :func:`communities`), or
        ``module -> genes``.
    gene_sets
        As :func:`enrich`.
    universe
        Default: every gene placed in a module.
    min_module_size
        Smaller modules are skipped.
    **kwargs
        Passed to :func:`enrich`.

    Returns
    -------
    pandas.DataFrame
        :func:`enrich`'s columns plus ``module`` (first) and ``module_size``; the FDR is
        recomputed over all tests of all modules.

    Examples
    --------
    >>> enrich_modules(net.modules, tissue_gene_sets(gt, universe=net.modules.index))  # doctest: +SKIP
    """
    from scipy.stats import false_discovery_control

    if isinstance(modules, pd.Series):
        members = {m: list(g.index.astype(str)) for m, g in modules.groupby(modules, sort=True)}
    elif isinstance(modules, Mapping) and modules and all(
            isinstance(v, (list, tuple, set, np.ndarray, pd.Index)) for v in modules.values()):
        members = {m: [str(g) for g in v] for m, v in modules.items()}
    elif isinstance(modules, Mapping):
        s = pd.Series(modules)
        members = {m: list(g.index.astype(str)) for m, g in s.groupby(s, sort=True)}
    else:
        raise CourseInputError(
            f"modules must be a dict/Series gene -> module or a dict module -> genes; got "
            f"{type(modules).__name__}."
        )
    if universe is None:
        universe = sorted({g for v in members.values() for g in v})
    universe = list(universe)
    parts = []
    for m, genes in members.items():
        if len(genes) < int(min_module_size):
            continue
        r = enrich(gene_sets, genes, universe=universe, method="ora", **kwargs)
        r.insert(0, "module_size", len([g for g in genes if g in set(universe)]))
        r.insert(0, "module", m)
        parts.append(r)
    if not parts:
        raise CourseInputError(
            f"No module has at least {min_module_size} genes. Fix: lower min_module_size."
        )
    out = pd.concat(parts, ignore_index=True)
    out["fdr"] = false_discovery_control(out["p_value"].clip(0, 1).to_numpy(), method="bh")
    return out.sort_values(["p_value", "module"], kind="stable").reset_index(drop=True)
