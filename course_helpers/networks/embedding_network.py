"""Gene-embedding networks: cosine similarity of context-specific gene embeddings, pooled over
groups, kNN graph and communities.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from ..tokenize import TokenizedCells
from .graph import _check_matrix, _py, communities, edges_from_matrix


def _cell_indices(reader: TokenizedCells, cells) -> np.ndarray:
    """Row indices from None (all), a boolean mask or a list of integer positions."""
    n = len(reader)
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


class GeneSimilarity(pd.DataFrame):
    """Gene x gene cosine similarity from :func:`embedding_similarity`, with its side data.

    A plain DataFrame (index and columns: Ensembl IDs, named ``"gene"``) plus four attributes,
    kept as pandas ``_metadata`` (carried along by filtering and copying) rather than in
    ``DataFrame.attrs``, where a Series breaks ``pd.concat``, ``.nlargest`` and friends:

    * ``n_cells`` - Series, cells each gene was averaged over;
    * ``symbol`` - Series, Ensembl ID -> gene symbol;
    * ``embeddings`` - DataFrame, the mean gene embeddings (genes x hidden, same order);
    * ``params`` - dict, how the matrix was computed (``emb_layer``, ``center``, ``min_cells``,
      ``cells_used``; ``group`` per group, ``pooled_groups`` when pooled).

    They describe the genes the matrix was built with; after ``pd.concat`` they are ``None``.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> ds = ch.tokenize.tokenize(ch.data.load_tissue()[:20], model.gene_vocab, progress=False)
    >>> sim = embedding_similarity(model, ds, genes=["GATA4", "TBX5", "NPPA"], progress=False)
    >>> type(sim).__name__, sim.symbol.tolist(), sim.embeddings.shape
    ('GeneSimilarity', ['GATA4', 'TBX5', 'NPPA'], (3, 128))
    >>> sim.params["cells_used"], sim.attrs
    (20, {})
    >>> sim.loc["ENSG00000136574"].nlargest(2).size                 # an ordinary DataFrame
    2
    """

    _metadata: ClassVar[list[str]] = ["n_cells", "symbol", "embeddings", "params"]
    n_cells = None
    symbol = None
    embeddings = None
    params = None

    @property
    def _constructor(self):
        return GeneSimilarity


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
    GeneSimilarity or dict
        A DataFrame: genes x genes, indexed by **Ensembl ID** (index and columns), symmetric, 1
        on the diagonal.  Attributes: ``n_cells`` (Series, cells each gene was averaged over),
        ``symbol`` (Series Ensembl ID -> symbol), ``embeddings`` (the mean gene embeddings, genes x
        hidden, same order) and ``params`` (see :class:`GeneSimilarity`).  With ``groupby``:
        ``{group: GeneSimilarity}``.

    Examples
    --------
    >>> import numpy as np, course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> tissue = ch.data.load_tissue()
    >>> ds = ch.tokenize.tokenize(tissue[:30], model.gene_vocab, cell_attrs=("cell_type",),
    ...                           progress=False)
    >>> sim = embedding_similarity(model, ds, cells=np.asarray(ds["cell_type"]) == "fibroblast",
    ...                            min_cells=3, progress=False)
    >>> sim.shape[0] == sim.shape[1], bool(np.allclose(np.diag(sim), 1))
    (True, True)
    >>> sim.symbol["ENSG00000118526"]
    'TCF21'
    >>> like_tcf21 = sim["ENSG00000118526"].sort_values(ascending=False)  # genes embedded like TCF21
    >>> per_type = embedding_similarity(model, ds, groupby="cell_type", min_cells=3, progress=False)
    >>> sorted(per_type) == sorted(set(ds["cell_type"]))     # one matrix per cell type
    True
    """
    from ..embed import GeneNotInCellsWarning, embed_genes

    if int(min_cells) < 1:
        raise CourseInputError(f"min_cells must be at least 1, got {min_cells}.")
    reader = TokenizedCells(dataset)
    idx = _cell_indices(reader, cells)
    if groupby is not None:
        labels = np.asarray([str(v) for v in reader.column(groupby)], dtype=object)[idx]
        out = {}
        for g in dict.fromkeys(labels.tolist()):
            out[g] = embedding_similarity(
                model, dataset, cells=idx[labels == g], emb_layer=emb_layer, groupby=None,
                genes=genes, min_cells=min_cells, center=center, batch_size=batch_size,
                progress=progress)
            out[g].params["group"] = {groupby: g}
        return out
    subset = dataset if len(idx) == len(reader) else reader.subset(idx)
    genes_list = None if genes is None else ([genes] if isinstance(genes, str) else list(genes))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeneNotInCellsWarning)
        emb = embed_genes(model, subset, emb_layer, batch_size=batch_size,  # 3rd: the layer
                          genes=genes_list, progress=progress)
    ens, n_cells = emb.ensembl_id, emb.n_cells
    symbols = pd.Series(list(emb.index), index=ens.to_numpy(), name="symbol")
    emb = pd.DataFrame(emb, copy=True)  # the plain table: its gene labels change below
    emb.index = pd.Index(ens.to_numpy(), name="gene")
    n = pd.Series(n_cells.to_numpy(), index=emb.index, name="n_cells")
    keep = (n >= int(min_cells)).to_numpy() & ~emb.isna().any(axis=1).to_numpy()
    if keep.sum() < 2:
        raise CourseInputError(
            f"Only {int(keep.sum())} gene(s) occur in at least {min_cells} of the {len(idx)} "
            "chosen cells. Fix: choose more cells, lower min_cells, or check genes=."
        )
    emb, n = emb[keep], n[keep]
    sim = GeneSimilarity(cosine_similarity(emb, center=center))
    sim.index.name = sim.columns.name = "gene"
    sim.n_cells = n
    sim.symbol = symbols[keep]
    sim.embeddings = emb
    sim.params = {"emb_layer": int(emb_layer), "center": bool(center),
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
        ``{group: GeneSimilarity}`` from :func:`embedding_similarity` with ``groupby`` (each
        carries ``.embeddings`` and ``.n_cells``).
    min_cells
        Genes present in fewer cells over all groups are dropped.

    Returns
    -------
    GeneSimilarity
        As :func:`embedding_similarity` (``n_cells``, ``symbol``, ``embeddings``; ``params``
        with ``pooled_groups``).

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> ds = ch.tokenize.tokenize(ch.data.load_tissue()[:20], model.gene_vocab,
    ...                           cell_attrs=("state",), progress=False)
    >>> per_state = embedding_similarity(model, ds, groupby="state", min_cells=3, progress=False)
    >>> pooled = pool_similarities(per_state, min_cells=3)
    >>> pooled.params["pooled_groups"] == list(per_state)
    True
    """
    if not isinstance(per_group, Mapping) or not per_group:
        raise CourseInputError(
            "per_group must be the dict returned by embedding_similarity(..., groupby=...).")
    sums, counts, symbols, params = None, None, {}, {}
    for g, sim in per_group.items():
        emb, n = _side(sim, "embeddings"), _side(sim, "n_cells")
        if not isinstance(emb, pd.DataFrame) or not isinstance(n, pd.Series):
            raise CourseInputError(
                f"Group {g!r} carries no embeddings (.embeddings / .n_cells of a "
                "GeneSimilarity). Fix: pass the unmodified output of "
                "embedding_similarity(..., groupby=...)."
            )
        w = emb.astype(np.float64).mul(n.astype(np.float64), axis=0)
        sums = w if sums is None else sums.add(w, fill_value=0.0)
        counts = n.astype(np.int64) if counts is None else counts.add(n, fill_value=0)
        sym = _side(sim, "symbol")
        symbols.update(sym.to_dict() if isinstance(sym, pd.Series) else {})
        params = dict(_side(sim, "params") or {})
    counts = counts.astype(np.int64)
    keep = counts[counts >= int(min_cells)].index
    order = [gene for gene in sums.index if gene in set(keep)]
    emb = sums.loc[order].div(counts.loc[order].astype(np.float64), axis=0)
    sim = GeneSimilarity(cosine_similarity(emb, center=bool(params.get("center", False))))
    sim.index.name = sim.columns.name = "gene"
    sim.n_cells = counts.loc[order].rename("n_cells")
    sim.symbol = pd.Series({gene: symbols.get(gene) for gene in order}, name="symbol")
    sim.embeddings = emb.astype(np.float32)
    params.pop("group", None)
    params.update(pooled_groups=[str(g) for g in per_group], min_cells=int(min_cells),
                  cells_used=int(sum((_side(s, "params") or {}).get("cells_used", 0)
                                     for s in per_group.values())))
    sim.params = params
    return sim


def _side(sim, name: str):
    """Side data ``name`` of a :class:`GeneSimilarity` (``None`` for any other table)."""
    return getattr(sim, name, None) if isinstance(sim, GeneSimilarity) else None


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

    Examples
    --------
    >>> emb = pd.DataFrame([[1, 0], [1, .1], [.1, 1], [0, 1]], index=list("abcd"), dtype=float)
    >>> net = embedding_network(cosine_similarity(emb), k=1)
    >>> net.module_genes()
    {0: ['a', 'b'], 1: ['c', 'd']}
    >>> net.edges()[["source", "target"]].values.tolist()
    [['a', 'b'], ['c', 'd']]
    >>> net.tf_edges(["a"])["target"].tolist()
    ['b', 'c', 'd']
    >>> net.to_anndata().obs["module"].tolist()
    ['0', '0', '1', '1']
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
        emb = _side(self.similarity, "embeddings")
        X = (emb.loc[genes].to_numpy(dtype=np.float32) if isinstance(emb, pd.DataFrame)
             else np.zeros((len(genes), 0), dtype=np.float32))
        obs = pd.DataFrame(index=pd.Index([str(g) for g in genes], name="gene"))
        obs["module"] = pd.Categorical(self.modules.reindex(genes).astype("Int64").astype(str))
        obs["degree"] = [self.graph.degree(g) if g in self.graph else 0 for g in genes]
        for key in ("n_cells", "symbol"):
            s = _side(self.similarity, key)
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
