"""What a perturbation of a few chosen genes did: the tables an explorer shows, as one result.

:func:`summarize_effects` perturbs the chosen genes in a few cells (each gene on its own, plus
the pair together when there are two), the same number of random genes in the same cells, and
summarises: per-cell effects, a per-gene summary against the random genes, the genes whose
embeddings move most, and the synergy of a pair. Warnings of the perturbation functions are
collected as structured fields of :class:`EffectSummary` (never matched by their text).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from ..model import model_facts
from ..tokenize import TokenizedCells
from .effects import in_silico_perturb
from .inputs import _symbols
from .null import random_gene_null
from .pairs import perturb_pairs
from .rule import _check_perturb_type
from .selection import _parse_states, _select_cells
from .stats import perturbation_stats
from .warnings import (
    FewCellsWarning,
    FewNullGenesWarning,
    GenesNotExpressedWarning,
    PerturbWarning,
)

#: The tables of an :class:`EffectSummary`, in the order :meth:`EffectSummary.tables` gives them.
TABLES = ("effects", "null", "summary", "moved_genes", "synergy")


@dataclass
class EffectSummary:
    """The result of :func:`summarize_effects`: tables plus structured notes.

    Attributes
    ----------
    genes, tokens
        The perturbed genes (symbols where the model has a vocabulary, else as given) and
        their token ids, in the same order; the tables name genes this way.
    perturb_type
        ``"delete"`` or ``"overexpress"``.
    goal_state
        The goal state when the effects are shifts towards it, else ``None``.
    effect
        What the ``effect`` columns hold: ``"shift"`` (towards ``goal_state``) or
        ``"1 - cos_sim"`` (how much the other genes' embeddings changed).
    rows
        Dataset row numbers of the perturbed cells.
    effects
        One row per (cell, perturbed gene): the :func:`in_silico_perturb` columns (goal state
        only) plus ``effect``.
    null
        The same for the random genes (empty without random genes).
    summary
        Per gene: ``gene, n_cells, mean_effect, sem`` and, with random genes,
        ``null_mean_effect, random_genes_beaten`` (share of random genes with a smaller mean
        effect) and ``p_value_vs_random`` (rank-sum, :func:`perturbation_stats`).
    moved_genes
        ``gene, mean_change, n``: mean embedding change (``1 - cos``) of every other gene over
        the perturbed cells and genes, largest first; ``n`` = number of (cell, perturbed gene)
        measurements.
    min_cells
        Genes of ``moved_genes`` measured fewer times than this are noisy (half the perturbed
        cells, at least 1): a chart should leave them out.
    gene_effects
        The ``emb_mode="cell_and_gene"`` table behind ``moved_genes``.
    synergy
        Two genes only: ``condition, mean, sem, n_cells`` for each gene alone, both together and
        the additive expectation (empty otherwise).
    synergy_per_cell
        The :func:`perturb_pairs` rows behind ``synergy`` (goal state only).
    synergy_mean
        Mean synergy over the cells (``None`` without a synergy view).
    genes_not_expressed
        Chosen genes expressed in none of the perturbed cells (they have no rows).
    n_eligible, n_requested
        Cells that could be perturbed and cells asked for (``n_cells``).
    null_genes_available
        Set when fewer random genes were available than asked for (all were used).
    null_error, synergy_error
        Why there is no random-gene comparison / synergy view (``None`` when there is one).
    warnings
        The :class:`~course_helpers.perturb.PerturbWarning` objects raised while computing
        (their attributes hold the data; see :attr:`messages` for the text).

    Examples
    --------
    >>> import dataclasses
    >>> [f.name for f in dataclasses.fields(EffectSummary)][:6]
    ['genes', 'tokens', 'perturb_type', 'goal_state', 'effect', 'rows']

    See :func:`summarize_effects` for one computed on the teaching model.
    """

    genes: list
    tokens: list
    perturb_type: str
    goal_state: str | None
    effect: str
    rows: list
    effects: pd.DataFrame
    null: pd.DataFrame
    summary: pd.DataFrame
    moved_genes: pd.DataFrame
    min_cells: int
    gene_effects: pd.DataFrame
    synergy: pd.DataFrame = field(default_factory=pd.DataFrame)
    synergy_per_cell: pd.DataFrame = field(default_factory=pd.DataFrame)
    synergy_mean: float | None = None
    genes_not_expressed: list = field(default_factory=list)
    n_eligible: int | None = None
    n_requested: int | None = None
    null_genes_available: int | None = None
    null_error: str | None = None
    synergy_error: str | None = None
    warnings: list = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Notes for a reader, in order: few cells, no null, no synergy, then the warnings."""
        out = [str(w) for w in self.warnings if isinstance(w, FewCellsWarning)]
        if self.null_error is not None:
            out.append(f"No random-gene comparison: {self.null_error}")
        if self.synergy_error is not None:
            out.append(f"No synergy view: {self.synergy_error}")
        out += [str(w) for w in self.warnings if not isinstance(w, FewCellsWarning)]
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{name: table}`` for ``effects, null, summary, moved_genes, synergy``."""
        return {name: getattr(self, name) for name in TABLES}


def _effect(df: pd.DataFrame) -> pd.Series:
    return df["shift"] if "shift" in df else 1.0 - df["cos_sim"]


def _sem(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan


def _choose_rows(model, dataset, tokens, perturb_type, cells, cell_states, n_cells, seed):
    """Rows eligible for the perturbation (start state; with delete: expressing a chosen gene),
    at most ``n_cells`` of them (a seeded random choice)."""
    info = model_facts(model)
    sel = _select_cells(TokenizedCells(dataset), info, cells, None, seed, _parse_states(cell_states))
    rows, xs = np.asarray(sel.rows, dtype=np.int64), sel.xs
    if perturb_type == "delete":
        toks = np.asarray(tokens, dtype=np.int64)
        ok = np.asarray([bool(np.isin(x, toks).any()) for x in xs], dtype=bool)
        rows = rows[ok]
        if rows.size == 0:
            raise CourseInputError(
                f"None of the {len(xs)} chosen cell(s) expresses a chosen gene, so nothing can be "
                "deleted. Fix: choose other genes or cells, or perturb_type='overexpress'."
            )
    rows = np.sort(rows)
    n_eligible = int(rows.size)
    few = None
    if n_cells is not None:
        if int(n_cells) < 1:
            raise CourseInputError(f"n_cells must be at least 1, got {n_cells}.")
        if rows.size > int(n_cells):
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(rows, int(n_cells), replace=False))
        elif rows.size < int(n_cells):
            few = FewCellsWarning(
                f"Only {rows.size} cell(s) are eligible (n_cells={int(n_cells)}).",
                rows.size,
                int(n_cells),
            )
    return [int(r) for r in rows], n_eligible, few


def summarize_effects(
    model,
    dataset,
    genes,
    perturb_type: str = "delete",
    *,
    cells=None,
    cell_states=None,
    n_cells: int | None = None,
    n_random: int = 10,
    seed: int = 0,
    emb_layer: int = -1,
    batch_size: int = 64,
    state_embs=None,
    progress: bool = False,
) -> EffectSummary:
    """Perturb a few chosen genes in a few cells and summarise what happened.

    Each gene is perturbed on its own (:func:`in_silico_perturb`, ``emb_mode="cell_and_gene"``)
    in the chosen cells; ``n_random`` random expressed genes are perturbed in the same cells
    (:func:`random_gene_null`) for comparison; with exactly two genes the pair is also
    perturbed together (:func:`perturb_pairs`). The effect of a perturbation is the shift
    towards the goal state with ``cell_states``, else ``1 - cos_sim``.

    Parameters
    ----------
    model, dataset
        As in :func:`in_silico_perturb`.
    genes
        Gene symbols / Ensembl IDs / token ids (one or a list). The tables name them by their
        symbols (the names as given when the model has no vocabulary).
    perturb_type
        ``"delete"`` or ``"overexpress"``.
    cells
        Candidate cells (row numbers or cell ids); ``None``: all cells.
    cell_states
        As in :func:`in_silico_perturb`; effects are then shifts towards ``goal_state``.
    n_cells
        Perturb at most this many of the eligible cells (start-state cells; with
        ``"delete"`` only cells expressing a chosen gene), chosen at random with ``seed``;
        ``None``: all of them. Fewer eligible cells give a :class:`FewCellsWarning` note.
    n_random
        Random genes for the comparison (``0``: none).
    seed
        Seed of the cell and random-gene choices.
    emb_layer, batch_size, state_embs, progress
        As in :func:`in_silico_perturb`.

    Returns
    -------
    EffectSummary
        The tables and notes (see :class:`EffectSummary`). Warnings of the perturbation
        functions are collected in ``.warnings`` (and their fields), not re-emitted.

    Raises
    ------
    CourseInputError
        Unknown genes, no eligible cell, bad arguments (as :func:`in_silico_perturb`).

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> tissue = ch.data.load_tissue("chapter")
    >>> heart = tissue[tissue.obs["cell_type"] == "cardiomyocyte"][:12]
    >>> ds = ch.tokenize.tokenize(heart, model.gene_vocab, progress=False)
    >>> s = summarize_effects(model, ds, ["GATA4", "TBX5"], "delete", n_cells=3, n_random=2)
    >>> s.summary.columns.tolist()
    ['gene', 'n_cells', 'mean_effect', 'sem', 'null_mean_effect', 'random_genes_beaten', 'p_value_vs_random']
    >>> s.synergy["condition"].tolist()
    ['GATA4', 'TBX5', 'GATA4 + TBX5 together', 'expected (additive)']
    >>> s.effect, len(s.rows), s.messages
    ('1 - cos_sim', 3, [])
    >>> bool(s.synergy_mean == s.synergy_per_cell["synergy"].mean())
    True
    """
    _check_perturb_type(perturb_type)
    if isinstance(genes, (str, int, np.integer)):
        genes = [genes]
    genes = list(genes)
    if not genes:
        raise CourseInputError("genes is empty. Fix: pass at least one gene to perturb.")
    info = model_facts(model, emb_layer=emb_layer)
    labels, tokens = [], []
    for g in genes:
        t = info.resolve_genes([g])[0]
        if t not in tokens:
            labels.append(str(g))
            tokens.append(int(t))
    labels = _symbols(tokens, info.vocab) or labels  # the names the result tables use
    if int(n_random) < 0:
        raise CourseInputError(f"n_random must not be negative, got {n_random}.")
    rows, n_eligible, few = _choose_rows(
        model, dataset, tokens, perturb_type, cells, cell_states, n_cells, seed
    )
    common = {"cells": rows, "emb_layer": emb_layer, "batch_size": batch_size,
              "progress": progress}
    if cell_states is not None and state_embs is not None:
        common["state_embs"] = state_embs
    null = synergy = None
    null_error = synergy_error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        long = in_silico_perturb(model, dataset, perturb_type, genes=tokens,
                                 cell_states=cell_states, emb_mode="cell_and_gene", **common)
        res = long.cell_results
        if int(n_random) > 0:
            try:
                null = random_gene_null(model, dataset, n_genes=int(n_random), seed=seed,
                                        perturb_type=perturb_type, cell_states=cell_states,
                                        exclude=tokens, **common)
            except CourseInputError as err:
                null_error = str(err)
        if len(tokens) == 2:
            try:
                synergy = perturb_pairs(model, dataset, [tuple(tokens)], perturb_type,
                                        cell_states=cell_states, **common)
            except CourseInputError as err:
                synergy_error = str(err)
    notes = [] if few is None else [few]
    for w in caught:
        if isinstance(w.message, PerturbWarning):
            notes.append(w.message)
        else:  # not ours: pass it on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    goal = None if cell_states is None else str(cell_states["goal_state"])
    if goal is not None:
        res = res[res["state"] == goal]
        if null is not None:
            null = null[null["state"] == goal]
    eff = res.assign(effect=_effect(res).to_numpy())
    effects = eff.reset_index(drop=True)
    if "perturbed_gene" not in eff:
        eff["perturbed_gene"] = eff["perturbed_token"].map(dict(zip(tokens, labels)))
    summ = (
        eff.groupby("perturbed_gene", sort=False)["effect"]
        .agg(n_cells="size", mean_effect="mean", sem=_sem)
        .reset_index()
        .rename(columns={"perturbed_gene": "gene"})
    )
    null_table = pd.DataFrame()
    if null is not None and not null.empty:
        null = null.assign(effect=_effect(null).to_numpy())
        null_table = null.reset_index(drop=True)
        per_gene_null = null.groupby("perturbed_token")["effect"].mean()
        summ["null_mean_effect"] = float(null["effect"].mean())
        summ["random_genes_beaten"] = [float((per_gene_null < m).mean())
                                       for m in summ["mean_effect"]]
        st = perturbation_stats(res, null=null.drop(columns=["effect"]))
        pmap = dict(zip(st["perturbed_token"], st["p_value"]))
        tok_of = dict(zip(eff["perturbed_gene"], eff["perturbed_token"]))
        summ["p_value_vs_random"] = [pmap.get(tok_of.get(g), np.nan) for g in summ["gene"]]
    # genes whose embeddings move most (1 - cos over cells and perturbed genes)
    mv = long.assign(change=1.0 - long["cos_sim"])
    gcol = "affected_gene" if "affected_gene" in mv else "affected_token"
    moved = (
        mv.groupby(gcol)["change"].agg(["mean", "size"])
        .rename(columns={"mean": "mean_change", "size": "n"})
        .sort_values("mean_change", ascending=False)
    )
    moved.index.name = "gene"
    out = EffectSummary(
        genes=labels, tokens=tokens, perturb_type=perturb_type, goal_state=goal,
        effect="shift" if goal is not None else "1 - cos_sim", rows=rows, effects=effects,
        null=null_table, summary=summ, moved_genes=pd.DataFrame(moved.reset_index()),
        min_cells=max(1, int(eff["cell_id"].nunique()) // 2),
        gene_effects=pd.DataFrame(long), null_error=null_error, synergy_error=synergy_error,
        warnings=notes, n_eligible=n_eligible,
        n_requested=None if n_cells is None else int(n_cells),
    )
    for w in notes:
        if isinstance(w, GenesNotExpressedWarning):
            out.genes_not_expressed += w.genes
        elif isinstance(w, FewNullGenesWarning):
            out.null_genes_available = w.n_available
    if synergy is not None and not synergy.empty:
        if goal is not None:
            synergy = synergy[synergy["state"] == goal]
            ea, eb, eab = synergy["shift_a"], synergy["shift_b"], synergy["shift_ab"]
        else:
            ea, eb, eab = (1 - synergy["cos_sim_a"], 1 - synergy["cos_sim_b"],
                           1 - synergy["cos_sim_ab"])
        a, b = labels
        vals = {a: ea, b: eb, f"{a} + {b} together": eab,
                "expected (additive)": ea.to_numpy() + eb.to_numpy()}
        out.synergy = pd.DataFrame({
            "condition": list(vals),
            "mean": [float(np.mean(v)) for v in vals.values()],
            "sem": [_sem(v) for v in vals.values()],
            "n_cells": [len(v) for v in vals.values()],
        })
        out.synergy_per_cell = synergy.reset_index(drop=True)
        out.synergy_mean = float(out.synergy_per_cell["synergy"].mean())
    return out
