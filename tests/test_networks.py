"""Tests for course_helpers.networks: graphs, export round trips and scoring against truth."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.networks import (
    centrality,
    communities,
    edges_from_matrix,
    export_network,
    graph_from_edges,
    graph_from_matrix,
    module_agreement,
    pr_curve,
    read_network,
    score_by_context,
    score_edges,
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


# -- export --------------------------------------------------------------------------------
@pytest.fixture
def graph():
    G = nx.DiGraph()
    G.add_edge("GATA4", "NPPA", weight=0.8, sign="+")
    G.add_edge("TBX5", "NPPA", weight=np.float32(0.5), sign="-")
    G.add_node("ERG", kind="tf")
    return G


def test_export_graphml_roundtrip(graph, tmp_path):
    p = export_network(graph, tmp_path / "sub" / "net.graphml")
    back = nx.read_graphml(p)
    assert back.is_directed() and set(back.nodes) == {"GATA4", "NPPA", "TBX5", "ERG"}
    assert back["GATA4"]["NPPA"]["weight"] == pytest.approx(0.8)
    assert back["TBX5"]["NPPA"]["sign"] == "-"
    assert back.nodes["ERG"]["kind"] == "tf"
    assert nx.utils.graphs_equal(nx.DiGraph(back.edges), nx.DiGraph(graph.edges))


def test_export_cytoscape_and_csv_roundtrip(graph, tmp_path):
    p = export_network(graph, tmp_path / "net.cyjs")
    data = json.loads(p.read_text())
    assert "elements" in data and len(data["elements"]["edges"]) == 2
    back = read_network(p)
    assert set(back.edges) == set(graph.edges)
    q = export_network(graph, tmp_path / "net.csv")
    df = pd.read_csv(q)
    assert list(df.columns[:2]) == ["source", "target"] and len(df) == 2
    back_csv = read_network(q)
    assert back_csv["GATA4"]["NPPA"]["weight"] == pytest.approx(0.8)
    with pytest.raises(CourseInputError, match="suffix"):
        export_network(graph, tmp_path / "net.xlsx")
    assert not (tmp_path / "net.xlsx").exists()


# -- scoring -------------------------------------------------------------------------------
def _toy_truth(n_tfs=10, n_genes=200, n_edges=60, seed=0):
    rng = np.random.default_rng(seed)
    tfs = [f"TF{i}" for i in range(n_tfs)]
    genes = tfs + [f"G{i}" for i in range(n_genes)]
    pairs = [(t, g) for t in tfs for g in genes if t != g]
    pick = rng.choice(len(pairs), size=n_edges, replace=False)
    truth = pd.DataFrame([pairs[i] for i in pick], columns=["source", "target"])
    return tfs, genes, pairs, truth


def test_perfect_predictor():
    tfs, genes, pairs, truth = _toy_truth()
    pred = truth.assign(score=1.0)
    s = score_edges(pred, truth, tfs=tfs, genes=genes)
    n_cand = len(tfs) * len(genes) - len(tfs)  # self-loops excluded
    assert s["n_candidates"] == n_cand and s["n_true"] == 60
    density = 60 / n_cand
    assert s["auprc"] == pytest.approx(1.0)
    assert s["auprc_random"] == pytest.approx(density)
    assert s["early_precision"] == pytest.approx(1.0)
    assert s["epr"] == pytest.approx(1 / density)
    assert s["auprc_ratio"] == pytest.approx(1 / density)
    # a full ranking where the truth comes first gives the same
    tset = set(zip(truth.source, truth.target))
    full = pd.DataFrame([(a, b, 1.0 if (a, b) in tset else 0.0) for a, b in pairs],
                        columns=["source", "target", "score"])
    s2 = score_edges(full, truth, tfs=tfs, genes=genes)
    assert s2["auprc"] == pytest.approx(1.0) and s2["epr"] == pytest.approx(1 / density)


def test_random_predictor_ratio_near_one():
    tfs, genes, pairs, truth = _toy_truth(n_tfs=20, n_genes=500, n_edges=400, seed=1)
    ratios, eprs = [], []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        pred = pd.DataFrame(pairs, columns=["source", "target"]).assign(
            score=rng.random(len(pairs)))
        s = score_edges(pred, truth, tfs=tfs, genes=genes)
        ratios.append(s["auprc_ratio"])
        eprs.append(s["epr"])
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.15)
    assert np.mean(eprs) == pytest.approx(1.0, abs=0.3)


def test_hand_computed_example():
    truth = pd.DataFrame({"source": ["T1", "T1", "T2"], "target": ["a", "b", "c"]})
    # candidates: T1, T2 -> {a, b, c, T1, T2} minus self-loops = 2 * 5 - 2 = 8; 3 true
    pred = pd.DataFrame({
        "source": ["T1", "T2", "T1", "T2", "T1", "T1"],
        "target": ["a", "a", "b", "c", "c", "a"],
        "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],  # duplicate (T1, a): max 0.9 kept
    })
    s = score_edges(pred, truth, tfs=["T1", "T2"], genes=["a", "b", "c", "T1", "T2"])
    # ranking: a+ (0.9), a- (0.8), b+ (0.7), c+ (0.6), c- (0.5), 3 unscored negatives tied
    # AP = (1/3) * (1/1 + 2/3 + 3/4)
    assert s["auprc"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert s["n_candidates"] == 8 and s["n_true"] == 3 and s["n_scored"] == 5
    # top-3 predictions: 0.9 (T), 0.8 (F), 0.7 (T) -> precision 2/3; density 3/8
    assert s["early_precision"] == pytest.approx(2 / 3)
    assert s["epr"] == pytest.approx((2 / 3) / (3 / 8))
    curve = pr_curve(pred, truth, tfs=["T1", "T2"], genes=["a", "b", "c", "T1", "T2"])
    assert curve.recall.max() == 1.0 and curve.random_precision.iloc[0] == pytest.approx(3 / 8)
    assert curve.precision.iloc[-1] == 1.0  # sklearn's final point


def test_candidates_ties_direction_and_outside_truth():
    truth = pd.DataFrame({"source": ["T1", "g1"], "target": ["g1", "T1"]})
    pred = pd.DataFrame({"source": ["g1", "T1"], "target": ["T1", "g2"], "score": [1.0, 0.5]})
    s = score_edges(pred, truth, tfs=["T1"], genes=["T1", "g1", "g2"])
    assert s["n_true_outside"] == 1  # g1 is not a TF
    assert s["n_candidates"] == 2 and s["n_true"] == 1
    assert s["auprc"] == pytest.approx(0.5)  # (T1, g1) unscored: ranked last
    und = score_edges(pred, truth, tfs=["T1"], genes=["T1", "g1", "g2"], directed=False)
    assert und["auprc"] == pytest.approx(1.0)  # g1 - T1 counts for T1 -> g1
    # ties at the top-k cut-off are all included (BEELINE)
    truth2 = pd.DataFrame({"source": ["T"], "target": ["x"]})
    tied = pd.DataFrame({"source": ["T"] * 4, "target": list("xyzw"), "score": [1.0] * 4})
    s2 = score_edges(tied, truth2, tfs=["T"], genes=list("xyzw"))
    assert s2["early_precision"] == pytest.approx(0.25) and s2["epr"] == pytest.approx(1.0)
    cand = pd.DataFrame({"source": ["T", "T"], "target": ["x", "y"]})
    s3 = score_edges(tied, truth2, candidates=cand)
    assert s3["n_candidates"] == 2
    with pytest.raises(CourseInputError, match="score"):
        score_edges(pred.drop(columns="score"), truth)


def test_score_by_context():
    truth = pd.DataFrame({
        "source": ["T1", "T1", "T2", "T2"],
        "target": ["a", "b", "c", "d"],
        "contexts": ["heart", "heart;liver", "", "liver"],
    })
    per_ctx = {"heart": truth.iloc[[0, 1, 2]].assign(score=1.0),
               "liver": truth.iloc[[1, 2, 3]].assign(score=1.0)}
    df = score_by_context(per_ctx, truth, genes=list("abcd"))
    assert list(df.index) == ["heart", "liver"]
    assert df.loc["heart", "n_true"] == 3 and df.loc["liver", "n_true"] == 3
    assert np.allclose(df["auprc"], 1.0)
    shared = score_by_context(truth.assign(score=1.0), truth, genes=list("abcd"))
    assert shared.loc["heart", "auprc"] < 1.0  # the liver-only edge is a false positive
    with pytest.raises(CourseInputError, match="contexts"):
        score_by_context(per_ctx, truth.drop(columns="contexts"))


def test_module_agreement():
    truth = {"x": ["a", "b", "c"], "y": ["d", "e", "f"], "z": ["c", "g"]}
    perm = {"a": 5, "b": 5, "d": 1, "e": 1, "f": 1, "g": 9, "c": 9}
    # c is in two programs (ambiguous): left out; labels are arbitrary
    assert module_agreement(perm, truth) == pytest.approx(1.0)
    assert module_agreement([{"a", "d"}, {"b", "e"}, {"f", "g"}], truth) < 0.2
    with pytest.raises(CourseInputError, match="same gene names"):
        module_agreement({"q": 0}, truth)
