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

Files
-----

====================  ============================================================================
File                  What lives there
====================  ============================================================================
graph.py              edges_from_matrix, graph_from_edges, graph_from_matrix; centrality, communities
export.py             export_network, read_network (GraphML, Cytoscape JSON, CSV/TSV)
scoring.py            score_edges, pr_curve, score_by_context, module_agreement (against ground truth)
embedding_network.py  cosine_similarity, embedding_similarity, pool_similarities, embedding_network
                      (their results: GeneSimilarity, EmbeddingNetwork)
gene_sets.py          tissue_gene_sets, read_gmt, write_gmt
enrichment.py         enrich (ORA / preranked GSEA with gseapy), enrich_modules
====================  ============================================================================
"""
from __future__ import annotations

from .embedding_network import (
    EmbeddingNetwork,
    GeneSimilarity,
    cosine_similarity,
    embedding_network,
    embedding_similarity,
    pool_similarities,
)
from .enrichment import enrich, enrich_modules
from .export import export_network, read_network
from .gene_sets import read_gmt, tissue_gene_sets, write_gmt
from .graph import centrality, communities, edges_from_matrix, graph_from_edges, graph_from_matrix
from .scoring import module_agreement, pr_curve, score_by_context, score_edges

__all__ = [
    "EmbeddingNetwork",
    "GeneSimilarity",
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
