"""in_silico_perturb: perturb genes one at a time (or with an anchor gene) in tokenized cells."""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pandas as pd

from .._utils import CourseInputError, find_stack_level
from ..model import model_facts
from ..tokenize import TokenizedCells
from .copies import _Block, _blocks_for_cell
from .engine import _Engine, _run
from .inputs import (
    _check_common,
    _resolve_emb_mode,
    _symbols,
)
from .selection import (
    _check_cls_cells,
    _parse_states,
    _select_cells,
    _Selection,
    _state_matrix,
)
from .warnings import GenesNotExpressedWarning

#: Columns that identify one perturbation of one cell in a result table.
_ID_COLUMNS = (
    "cell_id",
    "rank_index",
    "perturbed_token",
    "perturbed_gene",
    "anchor_token",
    "anchor_gene",
)


def _assemble(
    blocks: list[_Block], sel: _Selection, states, vocab, extra_sort=()
) -> tuple[pd.DataFrame, np.ndarray]:
    """The per-(cell, perturbed gene) table, and the global perturbation id of each of its
    (cell, gene) rows (what :func:`_gene_long` joins the per-gene cosines on)."""
    if not blocks:
        return pd.DataFrame(), np.zeros(0, dtype=np.int64)
    cols: dict[str, np.ndarray] = {}
    cell = np.concatenate([np.full(b.m, b.cell, dtype=np.int64) for b in blocks])
    for c in blocks[0].meta:
        cols[c] = np.concatenate([b.meta[c] for b in blocks])
    row = np.concatenate([b.first_row + np.arange(b.m) for b in blocks])
    order = np.lexsort(
        tuple(cols[c] for c in reversed(("rank_index", *extra_sort)) if c in cols) + (cell,)
    )
    cell, row = cell[order], row[order]
    cols = {c: v[order] for c, v in cols.items()}
    ids = np.asarray(sel.cell_ids, dtype=object)
    out = {"cell_id": ids[cell]}
    for c in ("rank_index", "perturbed_token", "anchor_token"):
        if c in cols:
            out[c] = cols[c].astype(np.int64)
    sym = _symbols(out["perturbed_token"], vocab)
    if sym is not None:
        out["perturbed_gene"] = sym
        if "anchor_token" in out:
            out["anchor_gene"] = _symbols(out["anchor_token"], vocab)
    if states is None:
        cos = np.concatenate([b.cos for b in blocks])[order]
        df = pd.DataFrame(out)
        df["cos_sim"] = cos
    else:
        shift = np.concatenate([b.shift for b in blocks])[order]
        names = [str(s) for s in states[1]]
        S = len(names)
        df = pd.DataFrame({c: np.repeat(_as_array(v), S) for c, v in out.items()})
        df["state"] = np.tile(np.asarray(names, dtype=object), len(cell))
        df["shift"] = shift.reshape(-1)
    return df, row


def _as_array(v) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)


def _gene_long(
    engine: _Engine, cell_df: pd.DataFrame, row: np.ndarray, states, vocab
) -> pd.DataFrame:
    if engine.gene_parts:
        pr, at, ar, cs = (np.concatenate(p) for p in zip(*engine.gene_parts))
    else:
        pr = at = ar = np.zeros(0, dtype=np.int64)
        cs = np.zeros(0)
    base = cell_df if states is None else cell_df.iloc[:: len(states[1])]
    inv = np.full(int(row.max()) + 1 if len(row) else 0, -1, dtype=np.int64)
    inv[row] = np.arange(len(row))
    k = inv[pr]
    order = np.lexsort((ar, k))
    k, at, ar, cs = k[order], at[order], ar[order], cs[order]
    keep_cols = [c for c in _ID_COLUMNS if c in base.columns]
    out = {c: base[c].to_numpy()[k] for c in keep_cols}
    out["affected_rank_index"] = ar.astype(np.int64)
    out["affected_token"] = at.astype(np.int64)
    sym = _symbols(at, vocab)
    if sym is not None:
        out["affected_gene"] = sym
    out["cos_sim"] = cs
    return pd.DataFrame(out)


class GeneEffects(pd.DataFrame):
    """Per-(cell, perturbed gene, affected gene) table of ``emb_mode="cell_and_gene"``.

    A plain DataFrame plus one attribute, ``cell_results``: the per-(cell, perturbed gene) table
    that ``emb_mode="cell"`` would return. It is kept as pandas ``_metadata`` (carried along by
    filtering and copying, never deep-copied) rather than in ``DataFrame.attrs``, where a
    DataFrame breaks ``pd.concat`` and is deep-copied by every operation.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> cells = ch.tokenize.tokenize(ch.data.load_tissue("chapter")[:3], model.gene_vocab,
    ...                              progress=False)
    >>> first_two = cells[0]["input_ids"][:2]
    >>> long = in_silico_perturb(model, cells, "delete", genes=first_two, cells=[0],
    ...                          emb_mode="cell_and_gene", progress=False)
    >>> type(long).__name__, long.columns.tolist()[-4:]
    ('GeneEffects', ['affected_rank_index', 'affected_token', 'affected_gene', 'cos_sim'])
    >>> long.cell_results.columns.tolist()
    ['cell_id', 'rank_index', 'perturbed_token', 'perturbed_gene', 'cos_sim']
    """

    _metadata: ClassVar[list[str]] = ["cell_results"]

    @property
    def _constructor(self):
        return GeneEffects


def in_silico_perturb(
    model,
    dataset,
    perturb_type: str = "delete",
    genes="all",
    *,
    cell_states: Mapping | None = None,
    emb_layer: int = -1,
    batch_size: int = 64,
    combos: int = 0,
    anchor_gene=None,
    cells=None,
    max_cells: int | None = None,
    emb_mode: str | None = None,
    state_embs=None,
    progress: bool = True,
    seed: int = 0,
    context_only: bool = False,
) -> pd.DataFrame:
    """Perturb genes in tokenized cells and measure the effect on the embeddings.

    Reproduces the reference Geneformer ``InSilicoPerturber`` value for value (``emb_mode=
    "cell"``, ``cell_emb_style="mean_pool"`` for V1; ``emb_mode="cls"`` for V2), without writing
    pickles.

    Parameters
    ----------
    model
        A ``BertForMaskedLM`` (from :func:`course_helpers.model.load_model`; any Geneformer-style
        BERT works). Gene names need ``model.gene_vocab``; the padding id comes from
        ``model.config.pad_token_id``; V2 models keep ``<cls>``/``<eos>`` in place.
    dataset
        Tokenized cells: a ``datasets.Dataset`` (or DataFrame) with ``input_ids`` and, ideally,
        ``cell_id`` and the ``state_key`` column.
    perturb_type
        ``"delete"`` (remove the gene) or ``"overexpress"`` (move it to the front; genes absent
        from a cell are inserted at the front, cutting the cell to the model's input size).
    genes
        ``"all"`` (every gene of every chosen cell, the reference default), or a list of gene
        symbols / Ensembl IDs / token ids, each perturbed on its own. With ``"delete"`` a gene is
        perturbed only in cells that express it; with ``"overexpress"`` in every chosen cell.
    cell_states
        ``{"state_key": column, "start_state": s0, "goal_state": s1, "alt_states": [...]}``:
        perturb only start-state cells and report the shift towards every state. ``None``: report
        ``cos_sim`` (the mean cosine over the other genes).
    emb_layer
        ``-1`` = second-to-last layer (reference default), ``0`` = last layer, ...
    batch_size
        Perturbed cells per forward pass (lower it if memory runs out).
    combos
        ``0``: one gene at a time. ``1``: the ``anchor_gene`` together with each other gene (for
        arbitrary pairs use :func:`perturb_pairs`).
    anchor_gene
        The gene perturbed together with each other gene when ``combos=1``; cells without it are
        skipped. ``perturbed_token`` then names the other gene.
    cells
        Cell ids (``cell_id`` column) or row numbers to perturb; ``None``: all cells.
    max_cells
        Perturb at most this many cells (chosen at random with ``seed``).
    emb_mode
        How the effect on the cell is measured, as in the reference. ``None`` (default):
        ``"cls"`` for V2 models, ``"cell"`` for V1 and the teaching model.
        ``"cell"``: from the gene embeddings (``cos_sim`` = mean cosine over the other genes;
        with states, cell = mean of its gene embeddings). ``"cls"`` (V2 only): from the
        ``<cls>`` embedding (``cos_sim`` = cos(perturbed ``<cls>``, original ``<cls>``); with
        states, ``<cls>`` cell and state embeddings). Both give one row per (cell, perturbed
        gene). ``"cell_and_gene"`` / ``"cls_and_gene"``: one row per (cell, perturbed gene,
        affected gene) with the cosine between the affected gene's embeddings before and after
        (the raw material for perturbation-derived gene networks); the result is a
        :class:`GeneEffects` table whose ``cell_results`` attribute holds the per-cell table of
        ``"cell"`` / ``"cls"``. Affected genes are matched by identity (the reference labels
        them one position off for ``"overexpress"``). ``"cls"`` on a model without ``<cls>``
        falls back to ``"cell"`` with a warning (as the reference does).
    state_embs
        ``{state: vector}`` (or a DataFrame with ``state`` and ``vector``). ``None``: computed
        from ``dataset`` with :func:`course_helpers.embed.state_embeddings` (all cells of each
        state, not only the perturbed ones), as the reference does.
    progress
        Show a progress bar.
    seed
        Seed for ``max_cells`` subsampling.
    context_only
        With ``cell_states`` only. ``False`` (the reference): the perturbed cell's embedding
        (all its genes) is compared with the original cell's (all its genes), so deleting a
        gene whose own token is typical of a state moves the cell away from that state even if
        nothing else changed. ``True``: both embeddings are means over the **same** genes -- the
        ones not perturbed -- so the shift measures only how the model's embeddings of the
        *other* genes moved (a step beyond the reference; chapter 7 uses it to tell drivers
        from markers).

    Returns
    -------
    pandas.DataFrame
        Without states: ``cell_id, rank_index, perturbed_token, [perturbed_gene], cos_sim``.
        With states: ``cell_id, rank_index, perturbed_token, [perturbed_gene], state, shift`` (one
        row per state). ``rank_index`` is the gene's 0-based position in ``input_ids`` (-1 for a
        gene inserted by overexpression). ``combos=1`` adds ``anchor_token`` (and
        ``anchor_gene``). Gene symbols appear when the model has a vocabulary. Rows are ordered
        by cell (dataset order), then rank.

    Raises
    ------
    CourseInputError
        Unknown genes (with suggestions), genes expressed in none of the chosen cells, unknown
        cells, missing state column or state names, bad arguments.

    Examples
    --------
    >>> from course_helpers.data import load_tissue
    >>> from course_helpers.model import load_model
    >>> from course_helpers.tokenize import tokenize
    >>> model = load_model("teaching")
    >>> adata = load_tissue("chapter")
    >>> cm = adata[adata.obs["cell_type"] == "cardiomyocyte"][:8]
    >>> ds = tokenize(cm, model.gene_vocab, cell_attrs=("cell_id", "state"), progress=False)
    >>> res = in_silico_perturb(model, ds, "delete", genes=["GATA4", "TBX5"], progress=False)
    >>> res.columns.tolist()
    ['cell_id', 'rank_index', 'perturbed_token', 'perturbed_gene', 'cos_sim']
    >>> bool(res["cos_sim"].between(0, 1).all())
    True
    >>> states = {"state_key": "state", "start_state": "diseased", "goal_state": "healthy"}
    >>> shifts = in_silico_perturb(model, ds, "delete", genes=["NFATC4"], cell_states=states,
    ...                            progress=False)
    >>> shifts.columns.tolist()[-2:], sorted(shifts["state"].unique())
    (['state', 'shift'], ['diseased', 'healthy'])
    """
    _check_common(perturb_type, emb_mode)
    info = model_facts(model, emb_layer=emb_layer)
    emb_mode = _resolve_emb_mode(emb_mode, info)
    cls_mode = emb_mode.startswith("cls")
    if context_only and cls_mode:
        raise CourseInputError(
            "context_only=True compares mean gene embeddings over the same genes, so it needs "
            "emb_mode='cell' (the <cls> embedding always sees the whole cell). Fix: pass "
            "emb_mode='cell' with context_only=True, or drop context_only."
        )
    if combos not in (0, 1):
        raise CourseInputError(
            f"combos={combos!r} is not supported. Fix: combos=0 (single genes) or combos=1 with "
            "anchor_gene= (the anchor plus each other gene); for chosen pairs use perturb_pairs()."
        )
    if combos == 1 and anchor_gene is None:
        raise CourseInputError(
            "combos=1 needs anchor_gene= (the gene perturbed together with each other gene). "
            "Fix: pass anchor_gene='GENE', or use perturb_pairs(model, dataset, [('A', 'B')])."
        )
    if combos == 0 and anchor_gene is not None:
        raise CourseInputError(
            "anchor_gene= is only used with combos=1. Fix: pass combos=1 as well."
        )
    anchor = (
        info.resolve_genes([anchor_gene], argname="anchor_gene")[0] if anchor_gene is not None else None
    )
    all_genes = isinstance(genes, str) and genes == "all"
    tokens = None if all_genes else info.resolve_genes(genes)
    if context_only and cell_states is None:
        raise CourseInputError(
            "context_only=True changes how the shift toward cell states is measured, so it needs "
            "cell_states. Fix: pass cell_states={...}, or drop context_only (without states the "
            "effect, cos_sim, already leaves the perturbed gene out)."
        )
    states = _parse_states(cell_states)
    reader = TokenizedCells(dataset)
    sel = _select_cells(reader, info, cells, max_cells, seed, states)
    if cls_mode:
        _check_cls_cells(sel, info)

    # presence checks, before any model work
    present = np.unique(np.concatenate(sel.xs)) if sel.xs else np.zeros(0, dtype=np.int64)
    where = f"the {len(sel.xs)} chosen cell(s)"
    if anchor is not None and anchor not in set(present.tolist()):
        raise CourseInputError(
            f"The anchor gene {anchor_gene!r} is expressed in none of {where}. Fix: pick an "
            "anchor gene that these cells express, or other cells."
        )
    if tokens is not None and perturb_type == "delete":
        missing = [t for t in tokens if t not in set(present.tolist())]
        if len(missing) == len(tokens):
            names = _symbols(missing, info.vocab) or missing
            raise CourseInputError(
                f"None of the genes {names[:10]} is expressed in {where}, so there is nothing "
                "to delete. Fix: choose genes the cells express (e.g. from their input_ids), "
                "other cells, or perturb_type='overexpress' to add them."
            )
        if missing:
            names = _symbols(missing, info.vocab) or missing
            warnings.warn(
                GenesNotExpressedWarning(
                    f"{len(missing)} gene(s) are expressed in none of {where} and get no rows: "
                    f"{names[:10]}",
                    genes=names,
                ),
                stacklevel=find_stack_level(),
            )
    state_mat = None
    if states is not None:
        state_mat = _state_matrix(
            model, dataset, reader, info, states, state_embs, batch_size, progress, cls_mode
        )

    def make_blocks(ci, x):
        return _blocks_for_cell(x, ci, info, perturb_type, tokens, anchor)

    blocks, engine = _run(
        info,
        sel,
        make_blocks,
        batch_size,
        state_mat,
        emb_mode.endswith("_and_gene"),
        progress,
        f"Perturbing ({perturb_type})",
        context_only=context_only,
        cls_mode=cls_mode,
    )
    df, row = _assemble(blocks, sel, states, info.vocab)
    if df.empty:
        raise CourseInputError(
            f"No perturbation could be made in {where} (e.g. every requested gene is already "
            "first, or cells are too short). Fix: choose other genes or cells."
        )
    df.attrs["emb_mode"] = emb_mode
    if emb_mode.endswith("_and_gene"):
        long = _gene_long(engine, df, row, states, info.vocab)
        long = GeneEffects(long)
        long.cell_results = df
        return long
    return df
