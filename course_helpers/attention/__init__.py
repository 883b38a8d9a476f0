"""Attention extraction and streaming aggregation into gene x gene matrices.

Geneformer is a BERT encoder: in every layer each head computes, for a cell (a "sentence" of
genes ordered by rank), an ``L x L`` matrix of attention weights.  Convention used throughout
the course (FACTS.md)::

    attentions[layer][batch, head, i, j] = how much query position i attends to key position j
                                           (each row i sums to 1 over the cell's genes)

This module turns those per-cell maps into gene-level summaries **without storing them**:

* :func:`cell_attentions` - the raw maps for one small batch (for plots and teaching).
* :func:`aggregate_attention` - streams cells in length-sorted batches and accumulates, per
  layer and head, a gene x gene **sum** matrix and a **co-occurrence count** matrix.  Memory is
  ``O(layers x heads x genes^2)`` plus one batch's attention maps, independent of the number of
  cells.  The result (:class:`AttentionResult`) gives the mean attention from gene ``i``
  (query, row) to gene ``j`` (key, column) over the cells that express both.
* :func:`head_summary`, :func:`attention_by_rank`, :func:`attention_vs_cell_length` - per
  layer/head statistics (entropy, preference for transcription factors, attention received as a
  function of the key's rank, and the cell-length confounder described in the thesis).
* :func:`estimate_attention_memory` - the memory guard used before every extraction.
* :func:`state_contrast` - the same aggregation on two groups of cells (e.g. diseased vs healthy
  cardiomyocytes) and their normalised difference: which gene pairs' attention changes with the
  state (:class:`StateContrast`).

Two ways of reading attention are implemented (``method=``):

``"weight"``
    the attention weight ``alpha_ij`` itself.
``"norm"``
    the norm-based analysis of Kobayashi et al. (2020, "Attention is not only a weight"):
    ``||alpha_ij f(x_j)|| = alpha_ij ||f(x_j)||`` where, for head ``h``,
    ``f(x_j) = (x_j W_V^h + b_V^h) W_O^h`` is the value vector of key ``j`` projected through
    that head's slice of the attention output dense layer (the bias of that layer is shared by
    all positions and left out, as in the paper).  A key with a tiny value vector contributes
    little to the output however much attention it receives; the norm-based view corrects for
    that.  Values are captured with forward hooks on each layer's ``value`` projection.

Attention is a property of the model, not a measured regulatory interaction: an attention
"network" is a hypothesis to be tested against ground truth (see :mod:`course_helpers.networks`),
and attention weights are not explanations (Jain & Wallace 2019).

Implementation notes
--------------------
Only eager attention returns weights; SDPA/flash attention return none.  If the model is not in
eager mode the functions switch it to eager for the duration of the call and switch it back
(``switch_to_eager=True``), or raise a :class:`~course_helpers._utils.CourseInputError` that
explains the fix (``switch_to_eager=False``).  Weights are read with forward hooks on each
layer's self-attention module, reduced immediately, and the forward pass stops after the last
requested layer; the MLM head never runs.

Files
-----
``extract.py``
    :func:`cell_attentions` and the streaming engine: eager switch, forward hooks on each layer's
    self-attention (and value projection for ``"norm"``), length-sorted batches.
``inputs.py``
    argument checks shared by every function: cells, layer/head indices, gene sets and labels.
``memory.py``
    :func:`estimate_attention_memory`, :func:`default_max_memory` and the guard that refuses a
    request that would not fit.
``result.py``
    :class:`AttentionResult` (matrices, edge lists, save/load).
``aggregate.py``
    :func:`aggregate_attention`.
``diagnostics.py``
    :func:`head_summary`, :func:`attention_by_rank`, :func:`attention_vs_cell_length`.
``contrast.py``
    :func:`state_contrast` and :class:`StateContrast`.
"""
from __future__ import annotations

from .aggregate import aggregate_attention
from .contrast import StateContrast, state_contrast
from .diagnostics import attention_by_rank, attention_vs_cell_length, head_summary
from .extract import cell_attentions
from .memory import default_max_memory, estimate_attention_memory
from .result import AttentionResult

__all__ = [
    "AttentionResult",
    "StateContrast",
    "aggregate_attention",
    "attention_by_rank",
    "attention_vs_cell_length",
    "cell_attentions",
    "default_max_memory",
    "estimate_attention_memory",
    "head_summary",
    "state_contrast",
]
