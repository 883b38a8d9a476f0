"""Write graphs for Cytoscape / Gephi (GraphML, Cytoscape JSON, edge CSV/TSV) and read them back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .graph import _py, graph_from_edges

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
    >>> import networkx as nx, tempfile, os
    >>> p = export_network(nx.DiGraph([("GATA4", "NPPA", {"weight": 0.8})]),
    ...                    os.path.join(tempfile.mkdtemp(), "net.cyjs"))
    >>> G = read_network(p)
    >>> list(G.edges(data="weight"))
    [('GATA4', 'NPPA', 0.8)]
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
