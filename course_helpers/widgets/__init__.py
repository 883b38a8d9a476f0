"""Interactive explorers for attention and in-silico perturbation.

Two explorers, each usable three ways:

* **live** in JupyterLab 4 / Colab (ipywidgets 8): display the object (last line of a cell) and
  use the controls;
* **from Python**: ``explorer.set(...)`` changes controls, ``explorer.data()`` returns the
  DataFrames currently shown, ``explorer.message`` the current warning (empty when all is well);
* **static**: ``explorer.figure(...)`` returns a matplotlib ``Figure`` of the current view, which
  the published HTML book shows where no kernel runs.

:class:`AttentionExplorer`
    attention among a cell's top genes (weight- or norm-based), the strongest gene -> gene pairs
    marked against the planted ground truth, per-layer/head summaries and a bertviz view.
:class:`PerturbationExplorer`
    delete / overexpress genes in cells of a state, see how far the cells move (towards a goal
    state), which genes' embeddings move most, where the cells go on a PCA map, whether random
    genes do the same, and whether two genes act together (synergy).

Bad choices in the controls (unknown genes, empty selections) never raise inside the widget:
they set :attr:`message`, shown in the widget's message line.  The explorers call
:mod:`course_helpers.attention`, :mod:`course_helpers.perturb` (``summarize_effects``,
``perturb_ids``) and :mod:`course_helpers.embed` for all model computations and analyses;
this package only arranges, caches and draws.

Files
-----
- ``attention_explorer.py``: :class:`AttentionExplorer` (controls, per-cell caches, view tables).
- ``attention_widget.py``: its live ipywidgets view (controls, redraws, bertviz button).
- ``pairs.py``: gene -> gene pairs of an attention view, marked against the planted edges.
- ``perturbation_explorer.py``: :class:`PerturbationExplorer` (controls, caches, view tables).
- ``perturbation_widget.py``: its live ipywidgets view (gene tags, controls, Run button).
- ``base.py``: what both share: control state, messages, safe callbacks, display.
- ``static.py``: static mode (:data:`STATIC_ENV`, the PNG shown where no kernel runs).
- ``drawing.py``: the explorers' matplotlib figures and HTML tables / message line.
- ``cells.py``: the cells (``TokenizedCells``; an AnnData is tokenized first), gene look-ups.

Examples
--------
>>> from course_helpers.data import load_ground_truth
>>> from course_helpers.model import load_model
>>> model = load_model("teaching")
>>> ids = model.gene_vocab.tokens(["GATA4", "MYH6", "TNNT2", "MYBPC3", "TNNI3"])
>>> ex = AttentionExplorer(model, [ids, ids[::-1]], ground_truth=load_ground_truth(), top_n=4)
>>> ex.set(cell=1, attn_layer=1, head="mean", method="norm").data()["heatmap"].shape
(4, 4)
>>> ex.show(static=True)  # a notebook shows the live widget for ``ex`` on a cell's last line
Figure(...)
"""
from .attention_explorer import AttentionExplorer
from .perturbation_explorer import PerturbationExplorer
from .static import STATIC_ENV

__all__ = ["STATIC_ENV", "AttentionExplorer", "PerturbationExplorer"]
