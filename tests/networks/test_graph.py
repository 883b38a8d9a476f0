"""Tests for course_helpers.networks.graph: matrices -> edges -> graphs, centrality, communities."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.networks import (
    centrality,
    communities,
    edges_from_matrix,
    graph_from_edges,
    graph_from_matrix,
    module_agreement,
)


@pytest.fixture
def mat():
    genes = ["a", "b", "c", "d"]
    m = np.array([[0.0, 0.9, 0.1, np.nan],
                  [0.2, 0.0, 0.5, 0.3],
                  [0.3, 0.4, 0.0, 0.8],
                  [0.05, 0.6, 0.7, 1.0]])
    return pd.DataFrame(m, index=genes, columns=genes)


# -- matrices -> edges -> graphs ------------------------------------------------------------
def test_edges_from_matrix_selection(mat):
    e = edges_from_matrix(mat, top_k=3)
    assert list(zip(e.source, e.target)) == [("a", "b"), ("c", "d"), ("d", "c")]
    assert list(e.score) == [0.9, 0.8, 0.7]
    assert len(edges_from_matrix(mat)) == 11  # 16 - 4 self-loops - 1 NaN
    assert len(edges_from_matrix(mat, self_loops=True)) == 15
    assert set(edges_from_matrix(mat, threshold=0.6).score) == {0.9, 0.8, 0.7, 0.6}
    assert len(edges_from_matrix(mat, top_fraction=0.5)) == 6  # ceil(0.5 * 11)
    src = edges_from_matrix(mat, sources=["a"])
    assert set(src.source) == {"a"} and len(src) == 2
    und = edges_from_matrix(mat, directed=False)
    assert len(und) == 6
    ab = und[(und.source == "a") & (und.target == "b")].score.item()
    assert ab == pytest.approx((0.9 + 0.2) / 2)
    ad = und[(und.source == "a") & (und.target == "d")].score.item()
    assert ad == pytest.approx(0.05)  # NaN half ignored
    neg = pd.DataFrame([[0, -0.9], [0.1, 0]], index=["x", "y"], columns=["x", "y"])
    assert edges_from_matrix(neg, top_k=1, absolute=True).score.item() == -0.9


def test_graph_from_matrix_and_edges(mat):
    G = graph_from_matrix(mat, top_k=3)
    assert isinstance(G, nx.DiGraph) and G.number_of_edges() == 3
    assert G["a"]["b"]["weight"] == 0.9
    U = graph_from_matrix(mat, threshold=0.5, directed=False, keep_isolated=True)
    assert isinstance(U, nx.Graph) and not U.is_directed() and set(U.nodes) == set("abcd")
    df = pd.DataFrame({"TF": ["x", "y"], "gene": ["y", "z"], "imp": [2.0, 1.0],
                       "sign": ["+", "-"]})
    G2 = graph_from_edges(df, source="TF", target="gene", weight="imp")
    assert G2["x"]["y"] == {"sign": "+", "weight": 2.0}
    with pytest.raises(CourseInputError, match="missing"):
        graph_from_edges(df, source="TF", target="gene", weight="nope")
    with pytest.raises(CourseInputError, match="source"):
        graph_from_edges(df)


def test_centrality_star():
    G = nx.DiGraph([("hub", x, {"weight": 1.0}) for x in "abcd"] + [("a", "b", {"weight": 0.5})])
    c = centrality(G)
    assert set(c.columns) >= {"degree", "in_degree", "out_degree", "strength", "pagerank",
                              "betweenness"}
    assert c.loc["hub", "out_degree"] == 4 and c.loc["hub", "strength"] == 4.0
    assert c.index[0] == "b"  # PageRank flows to b (from hub and a)
    assert c.pagerank.sum() == pytest.approx(1.0)
    u = centrality(nx.star_graph(4))
    assert u.betweenness.idxmax() == 0 and u.loc[0, "betweenness"] == pytest.approx(1.0)


def test_louvain_deterministic_and_recovers_cliques():
    G = nx.Graph()
    for block in (range(6), range(6, 12), range(12, 18)):
        G.add_edges_from((f"g{i}", f"g{j}", {"weight": 1.0}) for i in block for j in block
                         if i < j)
    G.add_edge("g0", "g6", weight=0.1)
    G.add_edge("g6", "g12", weight=0.1)
    a = communities(G, seed=0)
    b = communities(G, seed=0)
    assert a == b
    assert len(set(a.values())) == 3
    truth = {"p0": [f"g{i}" for i in range(6)], "p1": [f"g{i}" for i in range(6, 12)],
             "p2": [f"g{i}" for i in range(12, 18)]}
    assert module_agreement(a, truth) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    R = nx.gnp_random_graph(60, 0.1, seed=1)
    nx.set_edge_attributes(R, {e: float(rng.random()) for e in R.edges}, "weight")
    assert communities(R, seed=3) == communities(R, seed=3)
    with pytest.raises(CourseInputError, match="louvain"):
        communities(G, method="magic")
