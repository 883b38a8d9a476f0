"""Tests for course_helpers.networks.export: export round trips."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.networks import (
    export_network,
    read_network,
)


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
