"""Per layer/head statistics: :func:`head_summary`, :func:`attention_by_rank`,
:func:`attention_vs_cell_length`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._utils import CourseInputError, renamed_parameters
from ..model import length_sorted_batches, model_facts
from ..tokenize import TokenizedCells
from .extract import _n_heads, _n_layers, _stream
from .inputs import _check_method, _resolve_index_list, _resolve_tokens, _select_cells
from .memory import _check_request


@dataclass
class _Plan:
    """What a per-layer/head statistic runs over (checked, memory-guarded)."""

    cells: TokenizedCells
    layer_ids: list
    head_ids: list
    sel: np.ndarray  # dataset rows used
    batches: list  # rows per length-sorted batch
    device: object

    @property
    def slot(self) -> dict:
        """Model layer -> its row in the accumulators."""
        return {layer: k for k, layer in enumerate(self.layer_ids)}

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.layer_ids), len(self.head_ids)

    def slots(self):
        """``(a, layer, b, head)`` for every accumulator slot, layer-major."""
        for a, layer in enumerate(self.layer_ids):
            for b, head in enumerate(self.head_ids):
                yield a, layer, b, head

    def run(self, model, on_layer, on_batch, *, progress, desc, switch_to_eager,
            need_value_norms=False) -> None:
        _stream(model, self.cells, self.batches, self.layer_ids, on_layer, head_ids=self.head_ids,
                on_batch=on_batch, need_value_norms=need_value_norms, progress=progress,
                desc=desc, switch_to_eager=switch_to_eager)


def _prepare_summary(model, dataset, attn_layers, heads, batch_size, max_cells, seed, max_memory,
                     what, method: str = "weight") -> _Plan:
    cells = TokenizedCells(dataset)
    layer_ids = _resolve_index_list(attn_layers, _n_layers(model), "attn_layers", "layers")
    head_ids = _resolve_index_list(heads, _n_heads(model), "heads")
    if int(batch_size) < 1:
        raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
    sel = _select_cells(cells, max_cells, seed)
    lengths = cells.lengths()[sel]
    _check_request(model, n_cells=len(sel), max_len=int(lengths.max()),
                   layers_kept=len(layer_ids), heads_kept=len(head_ids), batch_size=batch_size,
                   n_genes=0, method=method, max_memory=max_memory, what=what)
    batches = [sel[b] for b in length_sorted_batches(lengths, batch_size)]
    return _Plan(cells, layer_ids, head_ids, sel, batches, model_facts(model).device)


def _token_mask(ids, tokens_tensor, mask):
    import torch

    if tokens_tensor is None:
        return None
    return torch.isin(ids, tokens_tensor) & mask


@renamed_parameters(layers="attn_layers")
def head_summary(
    model,
    dataset,
    tf_tokens=None,
    attn_layers="all",
    *,
    heads="all",
    batch_size: int = 8,
    max_cells: int | None = None,
    progress: bool = True,
    seed: int = 0,
    max_memory=None,
    switch_to_eager: bool = True,
) -> pd.DataFrame:
    """One row per layer and head describing how that head distributes its attention.

    Averages are over every (cell, query gene) pair.

    Columns
    -------
    layer, head
        0 = first.
    entropy
        Mean entropy (nats) of a query's attention distribution; low = focused head.
    entropy_norm
        Entropy divided by its maximum ``log(n_genes in the cell)``: 1 = uniform attention.
    max_attention
        Mean of each query's largest attention weight.
    self_attention
        Mean attention of a gene to itself.
    mean_key_position
        Attention-weighted relative position of the keys (0 = the cell's top-ranked gene,
        1 = its lowest-ranked gene, 0.5 = no rank preference).
    tf_attention, tf_token_share, tf_enrichment
        With ``tf_tokens``: share of each query's attention that goes to transcription factors,
        the share of the cell's tokens that are TFs (what uniform attention would give), and
        their ratio (> 1: the head prefers TFs).
    n_cells

    Parameters
    ----------
    tf_tokens
        TFs as token ids or names (symbols / Ensembl IDs), e.g. ``load_ground_truth().tfs``.
    attn_layers, heads
        Attention layers and heads: ``"all"``, an index (0 = first, -1 = last) or a list
        (``layers=`` is the old, deprecated name of ``attn_layers``).

    Examples
    --------
    >>> import course_helpers as ch
    >>> model, truth = ch.model.load_model("teaching"), ch.data.load_ground_truth()
    >>> ds = ch.tokenize.tokenize(ch.data.load_tissue()[:8], model.gene_vocab, progress=False)
    >>> hs = head_summary(model, ds, tf_tokens=truth.tfs, progress=False)
    >>> len(hs), hs.columns.tolist()[:5]             # 4 layers x 4 heads
    (16, ['layer', 'head', 'entropy', 'entropy_norm', 'max_attention'])
    >>> bool(hs["entropy_norm"].between(0, 1).all())
    True
    """
    import torch

    plan = _prepare_summary(
        model, dataset, attn_layers, heads, batch_size, max_cells, seed, max_memory, "head_summary")
    device, slot = plan.device, plan.slot
    tf = None
    if tf_tokens is not None:
        tf = torch.as_tensor(_resolve_tokens(model, tf_tokens, "tf_tokens"), device=device)
    keys = ["entropy", "entropy_norm", "max_attention", "self_attention", "mean_key_position",
            "tf_attention"]
    acc = {k: torch.zeros(plan.shape, dtype=torch.float64, device=device) for k in keys}
    tot = {"queries": 0.0, "tf_share": 0.0}

    def on_batch(batch):
        m = batch.mask
        lens = batch.lengths.to(torch.float64)
        L = m.shape[1]
        qmask = m.to(torch.float32)  # (B, L)
        batch.extra["qmask"] = qmask
        batch.extra["logL"] = torch.log(lens).to(torch.float32)  # (B,)
        pos = torch.arange(L, device=device, dtype=torch.float64)[None, :]
        rel = pos / torch.clamp(lens[:, None] - 1, min=1)
        batch.extra["rel"] = (rel * qmask).to(torch.float32)
        if tf is not None:
            kt = _token_mask(batch.input_ids, tf, m).to(torch.float32)
            batch.extra["tf"] = kt
            tot["tf_share"] += float(kt.sum(1).sum())  # sum over queries of n_tf / L = n_tf
        tot["queries"] += float(qmask.sum())

    def on_layer(layer, attn, vnorm, batch):
        k = slot[layer]
        A = attn.float()  # (B, h, L, L)
        q = batch.extra["qmask"][:, None, :].double()  # (B, 1, L)

        def add(key, per_query):  # (B, h, L) -> sum over real queries, float64
            acc[key][k] += (per_query.double() * q).sum((0, 2))

        ent = -torch.special.xlogy(A, A).sum(-1)  # (B, h, L)
        add("entropy", ent)
        logL = batch.extra["logL"][:, None, None]
        add("entropy_norm", torch.where(logL > 0, ent / torch.where(logL > 0, logL,
                                                                     torch.ones_like(logL)),
                                        torch.ones_like(ent)))
        add("max_attention", A.amax(-1))
        add("self_attention", A.diagonal(dim1=-2, dim2=-1))
        add("mean_key_position", torch.einsum("bhij,bj->bhi", A, batch.extra["rel"]))
        if tf is not None:
            add("tf_attention", torch.einsum("bhij,bj->bhi", A, batch.extra["tf"]))

    plan.run(model, on_layer, on_batch, progress=progress, desc="head summary",
             switch_to_eager=switch_to_eager)
    nq = max(tot["queries"], 1.0)
    rows = []
    for a, layer, b, head in plan.slots():
        row = {"layer": layer, "head": head}
        for key in keys[:-1]:
            row[key] = float(acc[key][a, b]) / nq
        if tf is not None:
            share = tot["tf_share"] / nq
            row["tf_attention"] = float(acc["tf_attention"][a, b]) / nq
            row["tf_token_share"] = share
            row["tf_enrichment"] = row["tf_attention"] / share if share > 0 else np.nan
        row["n_cells"] = len(plan.sel)
        rows.append(row)
    return pd.DataFrame(rows)


@renamed_parameters(layers="attn_layers")
def attention_by_rank(
    model,
    dataset,
    attn_layers="all",
    heads="all",
    *,
    max_rank: int | None = None,
    relative_bins: int | None = None,
    batch_size: int = 8,
    max_cells: int | None = None,
    progress: bool = True,
    seed: int = 0,
    max_memory=None,
    switch_to_eager: bool = True,
) -> pd.DataFrame:
    """Attention received by a key as a function of its rank (position) in the cell.

    For each cell, the attention a key receives is the mean over the cell's query genes of
    ``alpha_ij`` (uniform attention gives ``1 / n_genes``); it is averaged over the cells long
    enough to have that rank.  Because Geneformer orders genes by normalised expression, rank
    preference and expression preference are the same thing here.

    Parameters
    ----------
    attn_layers, heads
        Attention layers and heads: ``"all"``, an index (0 = first, -1 = last) or a list
        (``layers=`` is the old, deprecated name of ``attn_layers``).
    max_rank
        Report ranks 1..max_rank (default: the longest cell).
    relative_bins
        If given, group keys by relative position ``(rank - 1) / n_genes`` into this many equal
        bins instead, so that cells of different lengths line up.

    Returns
    -------
    pandas.DataFrame
        ``layer, head, rank`` (1 = top-ranked gene) or ``rank_bin`` (lower edge, 0-1), then
        ``attention`` (mean received), ``attention_x_length`` (received x n_genes: 1 = what
        uniform attention would give) and ``n_cells``.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> cells = ch.data.load_tissue()[:8]                # 8 cells keep the example fast
    >>> ds = ch.tokenize.tokenize(cells, model.gene_vocab, progress=False)
    >>> df = attention_by_rank(model, ds, attn_layers=-1, max_rank=100, progress=False)
    >>> df.columns.tolist()
    ['layer', 'head', 'rank', 'attention', 'attention_x_length', 'n_cells']
    >>> len(df)                                      # 4 heads x 100 ranks
    400

    Then e.g. ``df.groupby("rank").attention_x_length.mean().plot(logy=True)``.
    """
    import torch

    plan = _prepare_summary(
        model, dataset, attn_layers, heads, batch_size, max_cells, seed, max_memory,
        "attention_by_rank")
    device, slot = plan.device, plan.slot
    lengths = plan.cells.lengths()[plan.sel]
    if relative_bins is not None:
        if int(relative_bins) < 1:
            raise CourseInputError(f"relative_bins must be at least 1, got {relative_bins}.")
        P = int(relative_bins)
    else:
        P = int(max_rank) if max_rank is not None else int(lengths.max())
        if P < 1:
            raise CourseInputError(f"max_rank must be at least 1, got {max_rank}.")
    s_att = torch.zeros((*plan.shape, P), dtype=torch.float64, device=device)
    s_xl = torch.zeros((*plan.shape, P), dtype=torch.float64, device=device)
    n_obs = torch.zeros(P, dtype=torch.float64, device=device)
    cells_per = torch.zeros(P, dtype=torch.float64, device=device)

    def on_batch(batch):
        m = batch.mask
        L = m.shape[1]
        pos = torch.arange(L, device=device)[None, :].expand_as(m)
        if relative_bins is not None:
            rel = pos.to(torch.float64) / batch.lengths[:, None].to(torch.float64)
            bins = torch.clamp((rel * P).floor().long(), max=P - 1)
            keep = m
        else:
            bins = pos
            keep = m & (pos < P)
        batch.extra["bins"] = bins[keep]
        batch.extra["keep"] = keep
        n_obs.index_add_(0, bins[keep], torch.ones(int(keep.sum()), dtype=torch.float64,
                                                   device=device))
        for b in range(m.shape[0]):  # cells contributing to each bin (once per cell)
            ub = torch.unique(bins[b][keep[b]])
            cells_per[ub] += 1

    def on_layer(layer, attn, vnorm, batch):
        k = slot[layer]
        A = attn.float()
        q = batch.mask.to(torch.float32)
        lens = batch.lengths.to(torch.float64)
        recv = torch.einsum("bhij,bi->bhj", A, q).double() / lens[:, None, None]  # (B, h, L)
        keep = batch.extra["keep"]
        r = recv.permute(0, 2, 1)[keep]  # (N, h)
        s_att[k].index_add_(1, batch.extra["bins"], r.T.contiguous())
        xl = (recv * lens[:, None, None]).permute(0, 2, 1)[keep]
        s_xl[k].index_add_(1, batch.extra["bins"], xl.T.contiguous())

    plan.run(model, on_layer, on_batch, progress=progress, desc="attention by rank",
             switch_to_eager=switch_to_eager)
    nobs = n_obs.cpu().numpy()
    valid = nobs > 0
    att = (s_att.cpu().numpy() / np.where(valid, nobs, 1))
    xl = (s_xl.cpu().numpy() / np.where(valid, nobs, 1))
    rows = []
    cp = cells_per.cpu().numpy()
    for a, layer, b, head in plan.slots():
        for p in np.flatnonzero(valid):
            row = {"layer": layer, "head": head}
            if relative_bins is not None:
                row["rank_bin"] = p / P
            else:
                row["rank"] = int(p) + 1
            row.update(attention=float(att[a, b, p]), attention_x_length=float(xl[a, b, p]),
                       n_cells=int(cp[p]))
            rows.append(row)
    return pd.DataFrame(rows)


@renamed_parameters(layers="attn_layers")
def attention_vs_cell_length(
    model,
    dataset,
    genes,
    attn_layers="all",
    *,
    heads="all",
    average: bool = True,
    batch_size: int = 8,
    max_cells: int | None = None,
    progress: bool = True,
    seed: int = 0,
    columns=None,
    method: str = "weight",
    max_memory=None,
    switch_to_eager: bool = True,
) -> pd.DataFrame:
    """Attention received by a gene group in each cell, next to the cell's number of genes.

    The thesis that fine-tuned Geneformer on sci-Plex found attention concentrated on
    mitochondrial and housekeeping genes, partly tracking how many genes a cell expresses.  This
    function measures that confounder: per cell, the share of each query's attention that goes to
    the group (mean over the cell's genes), the group's share of the cell's tokens (what uniform
    attention would give), and the number of genes in the cell.  Plot ``attention_to_group`` or
    ``attention_per_group_gene`` against ``n_genes``: if a gene-level attention score falls as
    ``1 / n_genes``, cell length, not biology, drives it.

    Parameters
    ----------
    genes
        The group: token ids, symbols / Ensembl IDs, or ``"mito"`` / ``"ribo"`` (from the
        vocabulary's symbols).
    attn_layers, heads
        Attention layers and heads: ``"all"``, an index (0 = first, -1 = last) or a list
        (``layers=`` is the old, deprecated name of ``attn_layers``).
    average
        True: one row per cell, averaged over the selected layers and heads.  False: one row per
        cell, layer and head.
    columns
        Dataset columns to copy into the table (default: those of ``cell_id``, ``cell_type``,
        ``state`` that exist).
    method
        ``"weight"``: shares of the attention weights.  ``"norm"``: shares of the norm-weighted
        attention ``alpha_ij ||f(x_j)||`` (Kobayashi et al. 2020; see the module docstring),
        renormalised over each query's keys so that, as with weights, the shares of one query
        sum to 1 and ``enrichment`` = 1 still means "no more than its share of tokens".

    Returns
    -------
    pandas.DataFrame
        ``cell`` (row number), copied columns, ``n_genes``, ``n_group``, ``attention_to_group``,
        ``group_token_share``, ``enrichment`` (ratio of the two), ``attention_per_group_gene``
        (attention_to_group / n_group), and ``layer``, ``head`` when ``average=False``.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> tissue = ch.data.load_tissue()
    >>> ds = ch.tokenize.tokenize(tissue[:8], model.gene_vocab, cell_attrs=("cell_id", "state"),
    ...                           progress=False)
    >>> df = attention_vs_cell_length(model, ds, "mito", progress=False)
    >>> df.columns.tolist()
    ['cell', 'cell_id', 'state', 'n_genes', 'n_group', 'attention_to_group', 'group_token_share',
     'enrichment', 'attention_per_group_gene']
    >>> len(df), bool((df["n_group"] > 0).all())     # one row per cell; each has mito genes
    (8, True)
    >>> norm = attention_vs_cell_length(model, ds, "mito", method="norm", progress=False)
    >>> bool((norm["n_genes"] == df["n_genes"]).all())
    True

    Then e.g. ``df.plot.scatter("n_genes", "attention_per_group_gene")``.
    """
    import torch

    method = _check_method(method)

    plan = _prepare_summary(
        model, dataset, attn_layers, heads, batch_size, max_cells, seed, max_memory,
        "attention_vs_cell_length", method)
    cells, sel, slot = plan.cells, plan.sel, plan.slot
    grp = torch.as_tensor(_resolve_tokens(model, genes, "genes"), device=plan.device)
    row_of = {int(c): r for r, c in enumerate(sel)}
    out = np.zeros((len(sel), *plan.shape), dtype=np.float64)
    n_group = np.zeros(len(sel), dtype=np.int64)
    n_genes = np.zeros(len(sel), dtype=np.int64)

    def on_batch(batch):
        kg = _token_mask(batch.input_ids, grp, batch.mask)
        batch.extra["grp"] = kg.to(torch.float32)
        rows = [row_of[int(c)] for c in batch.index]
        batch.extra["rows"] = rows
        n_group[rows] = kg.sum(1).cpu().numpy()
        n_genes[rows] = batch.lengths.cpu().numpy()

    def on_layer(layer, attn, vnorm, batch):
        A = attn.float()
        if vnorm is not None:  # norm-based: alpha_ij ||f(x_j)||, as shares of each query's total
            A = A * vnorm.float()[:, :, None, :]
            A = A / A.sum(-1, keepdim=True).clamp_min(1e-30)
        to_g = torch.einsum("bhij,bj->bhi", A, batch.extra["grp"]).double()  # (B, h, L)
        q = batch.mask.to(torch.float64)[:, None, :]
        mean_q = (to_g * q).sum(-1) / batch.lengths.to(torch.float64)[:, None]
        out[batch.extra["rows"], slot[layer], :] = mean_q.cpu().numpy()

    plan.run(model, on_layer, on_batch, progress=progress, desc="attention vs cell length",
             switch_to_eager=switch_to_eager, need_value_norms=(method == "norm"))

    if columns is None:
        columns = [c for c in ("cell_id", "cell_type", "state") if c in cells.columns]
    base = pd.DataFrame({"cell": sel})
    for c in columns:
        col = cells.get(c)
        if col is None:
            raise CourseInputError(f"Column {c!r} is not in the dataset ({cells.columns}).")
        base[c] = np.asarray(col, dtype=object)[sel]
    base["n_genes"] = n_genes
    base["n_group"] = n_group
    share = n_group / np.maximum(n_genes, 1)
    if average:
        frames = [base.assign(attention_to_group=out.mean(axis=(1, 2)))]
    else:
        frames = [base.assign(layer=layer, head=head, attention_to_group=out[:, a, b])
                  for a, layer, b, head in plan.slots()]
    df = pd.concat(frames, ignore_index=True)
    share_all = np.tile(share, len(frames))
    ng = np.tile(n_group, len(frames)).astype(np.float64)
    df["group_token_share"] = share_all
    with np.errstate(invalid="ignore", divide="ignore"):
        df["enrichment"] = np.where(share_all > 0, df["attention_to_group"] / share_all, np.nan)
        df["attention_per_group_gene"] = np.where(ng > 0, df["attention_to_group"] / ng, np.nan)
    return df
