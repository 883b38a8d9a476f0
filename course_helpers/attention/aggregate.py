"""Streaming aggregation of attention into gene x gene matrices (:func:`aggregate_attention`)."""
from __future__ import annotations

import time

import numpy as np

from .._utils import CourseInputError, renamed_parameters
from ..model import length_sorted_batches, model_facts
from ..tokenize import TokenizedCells
from .extract import _n_heads, _n_layers, _stream
from .inputs import (
    _DEFAULT_MAX_GENES,
    _average_flags,
    _check_method,
    _gene_labels,
    _gene_set,
    _resolve_index_list,
    _select_cells,
)
from .memory import _check_request
from .result import AttentionResult


@renamed_parameters(layers="attn_layers")
def aggregate_attention(
    model,
    dataset,
    genes=None,
    attn_layers="all",
    *,
    heads="all",
    method: str = "weight",
    batch_size: int = 8,
    max_cells: int | None = None,
    symmetric: bool = False,
    progress: bool = True,
    seed: int = 0,
    max_genes: int = _DEFAULT_MAX_GENES,
    average=None,
    max_memory=None,
    switch_to_eager: bool = True,
) -> AttentionResult:
    """Stream cells through the model and average attention into gene x gene matrices.

    For every cell, layer and head, the attention from each gene in the gene set (query, row) to
    each other gene in the set (key, column) is added to a sum matrix; a count matrix records in
    how many cells both genes were present.  ``sum / count`` is the mean attention from gene i to
    gene j over the cells that express both.  Attention to genes outside the set (and to padding)
    is simply not recorded; rows are therefore not normalised.

    Memory: one batch's attention for one layer at a time plus the accumulators
    (``layers x heads x G^2``), independent of the number of cells.  The request is checked
    against ``max_memory`` before anything runs (see :func:`estimate_attention_memory`).

    Parameters
    ----------
    model
        ``BertForMaskedLM`` (``load_model(...)``); its attention implementation is switched to
        eager for the call if needed (``switch_to_eager``).
    dataset
        Tokenized cells (HF dataset with ``input_ids`` and ideally ``length``).
    genes
        Gene set: token ids, symbols / Ensembl IDs (needs ``model.gene_vocab``), ``"mito"`` /
        ``"ribo"``; default: the ``max_genes`` most frequently present genes of the cells used
        (a warning says when genes were left out).
    attn_layers, heads
        Attention layers and heads: ``"all"``, an index (0 = first, -1 = last) or a list.  The
        forward pass stops after the last layer needed.  (``layers=`` is the old, deprecated
        name of ``attn_layers``.)
    method
        ``"weight"`` (attention weights) or ``"norm"`` (Kobayashi et al. 2020:
        ``alpha_ij x ||(x_j W_V^h + b_V^h) W_O^h||``; see the module docstring).
    batch_size
        Cells per forward pass (cells are sorted by length, longest batch first).
    max_cells
        Use a random subset (seeded) of this many cells.
    symmetric
        Default view of the result: directed (False) or ``(A + A.T) / 2`` (True).
    progress
        Show a progress bar.
    seed
        Seed for the ``max_cells`` subset.
    max_genes
        Cap on the default gene set.
    average
        ``None`` keep every layer and head; ``"heads"`` / ``"layers"`` / ``"all"`` average them on
        the fly (accumulators shrink accordingly).
    max_memory
        Budget in bytes (or ``"2GB"``); default :func:`default_max_memory`.
    switch_to_eager
        See :func:`cell_attentions`.

    Returns
    -------
    AttentionResult
        ``.matrix(attn_layer, head, symmetric)``, ``.counts``, ``.to_edges(top_k=...)``.

    Raises
    ------
    CourseInputError
        Bad arguments, unknown genes, token ids outside the vocabulary, cells longer than the
        model accepts, SDPA without ``switch_to_eager``, or an estimated memory above
        ``max_memory`` (the message gives the estimate and what to reduce).

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> ds = ch.tokenize.tokenize(ch.data.load_tissue()[:8], model.gene_vocab, progress=False)
    >>> res = aggregate_attention(model, ds, genes=["GATA4", "NPPA", "TNNT2", "ACTC1"],
    ...                           attn_layers=-1, progress=False)
    >>> res
    AttentionResult(method='weight', genes=4, layers=[3], heads=[0, 1, 2, 3], n_cells=8,
    symmetric=False, 0.0 MiB)
    >>> res.matrix(symmetric=True).shape
    (4, 4)
    >>> res.to_edges(top_k=3).columns.tolist()
    ['source', 'target', 'score', 'n_cells']
    """
    import torch

    _check_method(method)
    avg_heads, avg_layers = _average_flags(average)
    cells = TokenizedCells(dataset)
    n_model_layers, n_model_heads = _n_layers(model), _n_heads(model)
    layer_ids = _resolve_index_list(attn_layers, n_model_layers, "attn_layers", "layers")
    head_ids = _resolve_index_list(heads, n_model_heads, "heads")
    if int(batch_size) < 1:
        raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
    sel = _select_cells(cells, max_cells, seed)
    lengths = cells.lengths()[sel]

    tokens = _gene_set(model, cells, sel, genes, max_genes, what="aggregate_attention",
                       note=" (memory grows with genes^2)")
    G = len(tokens)
    Ls = 1 if avg_layers else len(layer_ids)
    Hs = 1 if avg_heads else len(head_ids)

    est = _check_request(model, n_cells=len(sel), max_len=int(lengths.max()), layers_kept=Ls,
                         heads_kept=Hs, batch_size=batch_size, n_genes=G, method=method,
                         max_memory=max_memory, what="aggregate_attention")

    device = model_facts(model).device
    lut = torch.full((int(model.config.vocab_size),), -1, dtype=torch.long, device=device)
    lut[torch.as_tensor(tokens, device=device)] = torch.arange(G, device=device)
    sums = torch.zeros((Ls, Hs, G * G), dtype=torch.float32, device=device)
    counts = torch.zeros((G, G), dtype=torch.float64, device=device)
    layer_slot = {layer: (0 if avg_layers else k) for k, layer in enumerate(layer_ids)}
    layer_scale = 1.0 / len(layer_ids) if avg_layers else 1.0

    def on_batch(batch):
        g = lut[batch.input_ids]
        g = torch.where(batch.mask, g, torch.full_like(g, -1))
        present = torch.zeros((g.shape[0], G), dtype=torch.float64, device=device)
        cell_pairs = []
        for b in range(g.shape[0]):
            pos = torch.nonzero(g[b] >= 0).squeeze(1)
            if pos.numel() == 0:
                cell_pairs.append(None)
                continue
            gi = g[b, pos]
            present[b].index_add_(0, gi, torch.ones(gi.shape, dtype=torch.float64, device=device))
            cell_pairs.append((pos, (gi[:, None] * G + gi[None, :]).reshape(-1)))
        counts.add_(present.T @ present)  # number of (i, j) position pairs = co-occurrences
        batch.extra["pairs"] = cell_pairs

    def on_layer(layer, attn, vnorm, batch):
        acc = sums[layer_slot[layer]]
        for b, cp in enumerate(batch.extra["pairs"]):
            if cp is None:
                continue
            pos, pair = cp
            sub = attn[b].index_select(1, pos).index_select(2, pos).float()  # (h, k, k)
            if vnorm is not None:
                sub = sub * vnorm[b].index_select(1, pos)[:, None, :].float()
            if avg_heads:
                sub = sub.mean(0, keepdim=True)
            if layer_scale != 1.0:
                sub = sub * layer_scale
            acc.index_add_(1, pair, sub.reshape(sub.shape[0], -1))

    batches = [sel[b] for b in length_sorted_batches(lengths, batch_size)]
    t0 = time.perf_counter()
    _stream(model, cells, batches, layer_ids, on_layer, head_ids=head_ids, on_batch=on_batch,
            need_value_norms=(method == "norm"), progress=progress,
            desc=f"attention ({method})", switch_to_eager=switch_to_eager)
    seconds = time.perf_counter() - t0

    return AttentionResult(
        sums=sums.reshape(Ls, Hs, G, G).cpu().numpy(),
        counts=np.rint(counts.cpu().numpy()).astype(np.int64),
        tokens=np.asarray(tokens, dtype=np.int64),
        genes=_gene_labels(model, tokens),
        layers=["mean"] if avg_layers else list(layer_ids),
        heads=["mean"] if avg_heads else list(head_ids),
        method=method,
        n_cells=len(sel),
        symmetric=bool(symmetric),
        info={"batch_size": int(batch_size), "max_len": int(lengths.max()),
              "seconds": round(seconds, 3), "estimated_bytes": int(est),
              "model_layers": n_model_layers, "model_heads": n_model_heads,
              "averaged_layers": layer_ids if avg_layers else None,
              "averaged_heads": head_ids if avg_heads else None},
    )
