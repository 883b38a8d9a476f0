"""PerturbationExplorer: delete / overexpress genes in cells of a state and see what moves.

Effects come from :func:`course_helpers.perturb.in_silico_perturb`, the random-gene comparison
from :func:`course_helpers.perturb.random_gene_null`, two genes together from
:func:`course_helpers.perturb.perturb_pairs`, embeddings from
:func:`course_helpers.embed.embed_cells`; this file holds the controls, the caches and the
tables of a view. The live controls are in ``perturbation_widget.py``, the figure in
``drawing.py``.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import plotting
from .._utils import CourseInputError
from ..model import model_facts
from ..vocab import close_matches
from . import drawing
from .base import _Explorer, _whole_number
from .cells import _did_you_mean, _lookup, _model_vocab, _read_cells
from .perturbation_widget import _PerturbationWidget

_TABLES = ("effects", "null", "summary", "moved_genes", "map", "synergy")


def _empty_tables() -> dict[str, pd.DataFrame]:
    return {k: pd.DataFrame() for k in _TABLES}


class PerturbationExplorer(_PerturbationWidget, _Explorer):
    """Explore in-silico deletion / overexpression of genes, live or as static figures.

    Parameters
    ----------
    model
        A ``BertForMaskedLM`` from :func:`course_helpers.model.load_model`.
    dataset
        Tokenized cells with a ``state_key`` column (and ideally ``cell_id``), or an AnnData
        (tokenized with ``vocab``).
    state_key
        Column holding each cell's state or type, e.g. ``"state"`` or ``"cell_type"``.
    start_state
        The state whose cells are perturbed (default: all cells).
    goal_state
        Optional desired state: effects are then ``shift`` towards it (reference semantics:
        ``cos(perturbed, goal) - cos(original, goal)``, > 0 = towards the goal); without it the
        effect is ``1 - cos_sim`` (how much the other genes' embeddings changed).
    genes, perturb_type, n_cells, n_random, seed
        Initial control values (see :meth:`set`).
    vocab
        Default ``model.gene_vocab``.
    embeddings
        Optional cell embeddings of the whole dataset, in dataset order, from
        :func:`course_helpers.embed.embed_cells` with the same ``emb_layer`` (e.g.
        ``adata.obsm["X_geneformer"]``). They give the exact state embeddings (mean over all
        cells of a state, as the reference) and the PCA map without new forward passes.
    state_embs
        Optional ``{state: vector}`` (e.g. from :func:`course_helpers.embed.state_embeddings`).
    max_cells_per_state
        Without ``embeddings``: cells embedded per state (a seeded random sample) for the state
        embeddings and the PCA map.  Embedding every cell of a large dataset would take minutes
        on a CPU; pass ``embeddings=``/``state_embs=`` for the exact reference values.
    batch_size
        Forward-pass batch size for the perturbation functions.
    emb_layer
        Embedding layer (``-1`` = second-to-last, the reference default).

    Examples
    --------
    Four cells of six genes (in rank order) on the teaching model; in a chapter, pass the
    tokenized tissue instead.

    >>> from course_helpers.model import load_model
    >>> model = load_model("teaching")
    >>> ids = model.gene_vocab.tokens(["GATA4", "MYH6", "TNNT2", "MYBPC3", "TNNI3", "HAND2"])
    >>> cells = {"input_ids": [ids, ids[::-1], ids[1:] + ids[:1], ids[2:] + ids[:2]],
    ...          "state": ["healthy", "healthy", "diseased", "diseased"]}
    >>> ex = PerturbationExplorer(model, cells, "state", start_state="diseased",
    ...                           goal_state="healthy", genes=["GATA4"], n_cells=2, n_random=0)
    >>> d = ex.data()
    >>> d["summary"][["gene", "n_cells"]]
        gene  n_cells
    0  GATA4        2
    >>> d["effects"]["effect"].equals(d["effects"]["shift"])  # shift towards 'healthy'
    True

    With two genes, ``data()["synergy"]`` compares them together with each alone;
    ``n_random=`` random genes in the same cells give the comparison ``data()["null"]``.

    >>> fig = ex.figure()  # the static figure (what the book shows where no kernel runs)
    """

    _controls = ("genes", "perturb_type", "cells", "goal_state", "n_cells", "n_random", "seed")

    def __init__(
        self,
        model,
        dataset,
        state_key: str,
        start_state: str | None = None,
        *,
        goal_state: str | None = None,
        genes: Sequence[str] | str = (),
        perturb_type: str = "delete",
        n_cells: int = 10,
        n_random: int = 10,
        seed: int = 0,
        vocab=None,
        embeddings=None,
        state_embs=None,
        max_cells_per_state: int = 100,
        batch_size: int = 64,
        emb_layer: int = -1,
        static_fallback: bool = True,
    ):
        super().__init__(static_fallback=static_fallback)
        self.model = model
        self.vocab = _model_vocab(model, vocab)
        self.cells = _read_cells(dataset, self.vocab, model, [state_key])
        if state_key not in self.cells.meta:
            raise CourseInputError(
                f"The dataset has no column {state_key!r} (columns: "
                f"{[c for c in self.cells.columns if c != 'input_ids']}). Fix: pass the column "
                "that holds each cell's state, e.g. state_key='state' or 'cell_type'.")
        self.state_key = state_key
        self._states_col = np.asarray([str(x) for x in self.cells.meta[state_key]], dtype=object)
        self.states = list(dict.fromkeys(self._states_col.tolist()))
        self.batch_size = int(batch_size)
        self.emb_layer = int(emb_layer)
        self.max_cells_per_state = max(1, int(max_cells_per_state))
        self._user_embeddings = None
        if embeddings is not None:
            emb = np.asarray(embeddings, dtype=np.float32)
            hidden = int(getattr(model.config, "hidden_size", emb.shape[-1]))
            if emb.ndim != 2 or emb.shape[0] != self.cells.n or emb.shape[1] != hidden:
                raise CourseInputError(
                    f"embeddings has shape {emb.shape}; expected ({self.cells.n}, {hidden}) "
                    "(one row per cell of the dataset, in order). Fix: embeddings = "
                    "embed_cells(model, dataset).")
            self._user_embeddings = emb
        self._user_state_embs = None if state_embs is None else {
            str(k): np.asarray(v, dtype=np.float32) for k, v in dict(state_embs).items()}
        self._facts = model_facts(model, emb_layer=self.emb_layer)
        self._cache: dict[str, Any] = {}
        self._views: OrderedDict[str, dict] = OrderedDict()
        self._gene_options: list[str] | None = None
        self._state = {"genes": [], "perturb_type": "delete", "cells": "all", "goal_state": None,
                       "n_cells": 10, "n_random": 10, "seed": 0}
        self.set(genes=genes, perturb_type=perturb_type, cells=start_state or "all",
                 goal_state=goal_state, n_cells=n_cells, n_random=n_random, seed=seed)
        init = list(self._messages)
        if init:  # bad start/goal states are errors of the call, not of a control
            raise CourseInputError(" ".join(init))

    def __repr__(self) -> str:
        s = self._state
        return (f"PerturbationExplorer({self.cells.n} cells, state_key={self.state_key!r}; "
                f"genes={s['genes']}, {s['perturb_type']}, cells={s['cells']!r}, "
                f"goal={s['goal_state']!r}, n_cells={s['n_cells']})")

    # -- controls --------------------------------------------------------------------------
    def set(self, **controls) -> PerturbationExplorer:
        """Change controls; invalid values keep the old value and set :attr:`message`.

        Parameters
        ----------
        genes
            Gene symbols / Ensembl IDs to perturb (a list, or one string; ``"A, B"`` and
            ``"A + B"`` are split).  Each gene is measured on its own; with two genes the
            synergy view compares them together vs each alone; the map shows all of them
            perturbed together.  Unknown genes are dropped with a message.
        perturb_type
            ``"delete"`` or ``"overexpress"``.
        cells
            The state whose cells are perturbed, or ``"all"`` (not allowed with a goal state).
        goal_state
            Desired state (effects become shifts towards it) or ``None``.
        n_cells
            Number of cells perturbed (a seeded random choice among the eligible cells; with
            ``"delete"`` only cells expressing a chosen gene are eligible).
        n_random
            Random genes perturbed in the same cells for comparison (0 = none).
        seed
            Seed of the cell and random-gene choices.

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> cells = {"input_ids": [[5, 6, 7], [7, 6, 5], [6, 5, 7]], "state": ["a", "b", "b"]}
        >>> ex = PerturbationExplorer(load_model("teaching"), cells, "state", genes="CD99",
        ...                           n_cells=3, n_random=0)
        >>> ex.set(genes="CD99 + NOTAGENE", perturb_type="overexpress").state["genes"]
        ['CD99']
        >>> print(ex.message)
        Not in the model's vocabulary, ignored: NOTAGENE. Did you mean: ...?
        >>> print(ex.set(cells="nowhere").message)  # the old value stays
        No cells with state == 'nowhere'. States: a, b.
        >>> ex.state["cells"]
        'all'
        """
        self._check_names(controls)
        msgs: list[str] = []
        new = dict(self._state)
        for key in self._controls:
            if key in controls:
                try:
                    new[key] = self._validate(key, controls[key], msgs)
                except CourseInputError as err:
                    msgs.append(str(err))
        self._state = new
        self._messages = msgs
        return self

    def _validate(self, key, value, msgs):
        if key == "genes":
            if value is None:
                return []
            if isinstance(value, str):
                value = [g for part in value.replace("+", ",").split(",")
                         for g in [part.strip()] if g]
            genes = list(dict.fromkeys(str(g).strip() for g in value if str(g).strip()))
            known, unknown = [], []
            for g in genes:
                tok = _lookup(self.vocab, g)
                if tok is None:
                    unknown.append(g)
                else:  # the vocabulary's symbol, as the result tables name the gene
                    known.append(str(self.vocab.symbols([tok])[0]))
            if unknown:
                hint = "".join(_did_you_mean(self.vocab.suggest(u)) for u in unknown[:2])
                msgs.append(f"Not in the model's vocabulary, ignored: {', '.join(unknown)}.{hint}")
            return list(dict.fromkeys(known))
        if key == "perturb_type":
            v = str(value).lower()
            if v not in ("delete", "overexpress"):
                raise CourseInputError(
                    f"perturb_type={value!r} is not known. Fix: 'delete' or 'overexpress'.")
            return v
        if key == "cells":
            if value is None or str(value).lower() in ("all", "(all)", "all cells"):
                return "all"
            return self._known_state(value, f"No cells with {self.state_key} == {value!r}.")
        if key == "goal_state":
            if value is None or str(value) in ("", "(none)", "none"):
                return None
            return self._known_state(
                value, f"Goal state {value!r} does not occur in column {self.state_key!r}.")
        if key in ("n_cells", "n_random", "seed"):
            iv = _whole_number(key, value)
            if key == "n_cells" and iv < 1:
                raise CourseInputError("n_cells=0 selects no cells (empty selection). Fix: "
                                       "choose at least 1 cell.")
            if iv < 0:
                raise CourseInputError(f"{key} must not be negative.")
            return iv
        raise AssertionError(key)  # pragma: no cover

    def _known_state(self, value, problem: str) -> str:
        """``value`` as a state of the dataset, or an error listing the states (and close ones)."""
        if str(value) in self.states:
            return str(value)
        raise CourseInputError(f"{problem} States: {', '.join(self.states[:12])}."
                               + _did_you_mean(close_matches(str(value), self.states)))

    def gene_options(self) -> list[str]:
        """Symbols of the genes present in the cells (most frequent first; for autocomplete).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> cells = {"input_ids": [[5, 6, 7], [7, 6]], "state": ["a", "b"]}
        >>> PerturbationExplorer(load_model("teaching"), cells, "state").gene_options()
        ['WNT16', 'SNX11', 'CD99']
        """
        if self._gene_options is None:
            ids = self.cells.all_ids()
            flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
            uniq, cnt = np.unique(flat, return_counts=True)
            counts = dict(zip(uniq.tolist(), cnt.tolist()))
            specials = set(self._facts.special_ids.tolist())
            toks = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                    if t not in specials]
            syms = [str(s) for s in self.vocab.symbols(toks[:5000])]
            self._gene_options = list(dict.fromkeys(syms))
        return self._gene_options

    # -- computation -----------------------------------------------------------------------
    def _cell_states(self) -> dict | None:
        s = self._state
        if s["goal_state"] is None or s["cells"] == "all" or s["cells"] == s["goal_state"]:
            return None
        return {"state_key": self.state_key, "start_state": s["cells"],
                "goal_state": s["goal_state"], "alt_states": []}

    def _reference(self):
        """Embeddings of the reference cells: all cells (``embeddings=``) or a per-state sample."""
        from ..embed import embed_cells

        if "reference" not in self._cache:
            if self._user_embeddings is not None:
                rows = np.arange(self.cells.n)
                emb = self._user_embeddings
            else:
                rng = np.random.default_rng(0)
                parts = []
                for st in self.states:
                    idx = np.flatnonzero(self._states_col == st)
                    if idx.size > self.max_cells_per_state:
                        idx = rng.choice(idx, self.max_cells_per_state, replace=False)
                    parts.append(idx)
                rows = np.sort(np.concatenate(parts))
                seqs = [list(map(int, self.cells.ids_of(r))) for r in rows]
                emb = embed_cells(self.model, seqs, self.emb_layer,  # the emb_layer
                                  batch_size=self.batch_size, progress=False)
            self._cache["reference"] = (rows, np.asarray(emb, dtype=np.float32))
        return self._cache["reference"]

    def _state_embs(self) -> dict:
        """``{state: vector}`` for the perturbed and the goal state."""
        s = self._state
        need = [s["cells"], s["goal_state"]]
        if self._user_state_embs is not None:
            missing = [x for x in need if x not in self._user_state_embs]
            if missing:
                raise CourseInputError(
                    f"state_embs has no vector for {missing}. Fix: include every state you "
                    "perturb or aim for, e.g. state_embeddings(model, dataset, state_key).")
            return {x: self._user_state_embs[x] for x in need}
        rows, emb = self._reference()
        states = self._states_col[rows]
        return {x: emb[states == x].mean(axis=0, dtype=np.float64).astype(np.float32)
                for x in need}

    def _background(self):
        """PCA (2 components) of the reference cells' embeddings (cached)."""
        from sklearn.decomposition import PCA

        if "background" not in self._cache:
            rows, emb = self._reference()
            if len(rows) > 2000:  # keep the map readable and fast
                keep = np.sort(np.random.default_rng(0).choice(len(rows), 2000, replace=False))
                rows, emb = rows[keep], emb[keep]
            pca = PCA(n_components=2, random_state=0).fit(emb)
            self._cache["background"] = (rows, pca.transform(emb), pca)
        return self._cache["background"]

    def _effect_label(self) -> str:
        cs = self._cell_states()
        return (f"shift towards {cs['goal_state']!r}" if cs is not None
                else "embedding change (1 − cos_sim)")

    def _start_rows(self) -> list[int] | None:
        """Rows of the state whose cells are perturbed (``None``: every cell)."""
        if self._state["cells"] == "all":
            return None
        return np.flatnonzero(self._states_col == self._state["cells"]).tolist()

    def _compute(self) -> dict:
        from ..perturb import summarize_effects

        s = self._state
        key = repr(sorted(s.items()))
        if key in self._views:
            self._views.move_to_end(key)
            return self._views[key]
        view = {"tables": _empty_tables(), "messages": [], "background": None, "genes": [],
                "rows": [], "min_cells": 1, "result": None}
        if not s["genes"]:
            view["messages"].append("Choose at least one gene to perturb (type a symbol).")
            return self._remember(key, view)
        if s["goal_state"] is not None and s["cells"] == "all":
            view["messages"].append(
                f"Choose which cells to perturb (a state other than {s['goal_state']!r}) to "
                "measure shifts towards the goal; showing the embedding change instead.")
        if s["goal_state"] is not None and s["cells"] == s["goal_state"]:
            view["messages"].append(
                f"The perturbed cells are already in the goal state {s['goal_state']!r}; "
                "showing the embedding change instead. Choose another state to perturb.")
        cs = self._cell_states()
        state_embs = self._state_embs() if cs is not None else None
        try:
            res = summarize_effects(
                self.model, self.cells.dataset, s["genes"], s["perturb_type"],
                cells=self._start_rows(), cell_states=cs, n_cells=s["n_cells"],
                n_random=s["n_random"], seed=s["seed"], emb_layer=self.emb_layer,
                batch_size=self.batch_size, state_embs=state_embs)
        except CourseInputError as err:  # e.g. no chosen cell expresses the genes
            view["messages"].append(str(err))
            return self._remember(key, view)
        view["messages"] += res.messages
        tables = _empty_tables()
        tables.update(res.tables())
        bg_rows, bg_xy, pca = self._background()
        tables["map"] = self._map(res.rows, res.tokens, cs, pca)
        view.update(tables=tables, background=(bg_rows, bg_xy), genes=list(res.genes),
                    rows=res.rows, min_cells=res.min_cells, result=res)
        return self._remember(key, view)

    def _map(self, rows: list[int], tokens: list[int], cs, pca) -> pd.DataFrame:
        """PCA coordinates of the cells before / after perturbing all ``tokens`` together."""
        from ..embed import embed_cells
        from ..perturb import perturb_ids

        f = self._facts
        orig = [list(map(int, self.cells.ids_of(r))) for r in rows]
        pert = [perturb_ids(x, tokens, self._state["perturb_type"], cls_id=f.cls_id,
                            eos_id=f.eos_id, max_len=f.max_len).tolist() for x in orig]
        keep = [i for i, p in enumerate(pert) if len(p) > 0]
        if not keep:
            return pd.DataFrame()
        emb = embed_cells(self.model, [orig[i] for i in keep] + [pert[i] for i in keep],
                          self.emb_layer, batch_size=self.batch_size, progress=False)
        k = len(keep)
        xy = pca.transform(emb)
        meta = self.cells.meta
        ids = meta["cell_id"].tolist() if "cell_id" in meta else None
        m = pd.DataFrame({
            "row": [rows[i] for i in keep],
            "cell_id": [ids[rows[i]] if ids else str(rows[i]) for i in keep],
            "pc1_before": xy[:k, 0], "pc2_before": xy[:k, 1],
            "pc1_after": xy[k:, 0], "pc2_after": xy[k:, 1],
        })
        if cs is not None:
            g = np.asarray(self._state_embs()[cs["goal_state"]], dtype=np.float64)

            def cos(a):
                a = np.asarray(a, dtype=np.float64)
                return a @ g / (np.linalg.norm(a, axis=1) * np.linalg.norm(g))

            m["cos_goal_before"] = cos(emb[:k])
            m["cos_goal_after"] = cos(emb[k:])
        return m

    def _remember(self, key: str, view: dict) -> dict:
        self._views[key] = view
        while len(self._views) > 8:
            self._views.popitem(last=False)
        return view

    def data(self) -> dict[str, pd.DataFrame]:
        """The tables behind the current view (computing them if needed).

        Returns
        -------
        dict
            ``effects`` (one row per perturbed cell and gene, with ``effect``), ``null`` (the
            same for random genes in the same cells), ``summary`` (per gene: mean effect, the
            random genes' mean, share of random genes with a smaller effect, rank-sum p-value),
            ``moved_genes`` (genes whose embeddings change most, ``1 - cos``), ``map`` (PCA
            coordinates of the perturbed cells before/after, all chosen genes together) and
            ``synergy`` (two genes: each alone, together and the additive expectation; the
            per-cell rows and the mean synergy are in :meth:`effect_summary`). The tables come
            from :func:`course_helpers.perturb.summarize_effects`.
            Empty DataFrames where there is nothing to show (see :attr:`message`).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> cells = {"input_ids": [[5, 6, 7], [7, 6, 5], [6, 5, 7]], "state": ["a", "b", "b"]}
        >>> ex = PerturbationExplorer(load_model("teaching"), cells, "state", start_state="b",
        ...                           genes=["CD99"], n_random=0)
        >>> d = ex.data()
        >>> sorted(d)
        ['effects', 'map', 'moved_genes', 'null', 'summary', 'synergy']
        >>> len(d["effects"]), d["null"].empty, d["synergy"].empty
        (2, True, True)
        >>> d["map"].columns.tolist()[:4]
        ['row', 'cell_id', 'pc1_before', 'pc2_before']
        """
        try:
            v = self._compute()
        except CourseInputError as err:
            self._messages = [str(err)]
            return _empty_tables()
        return {k: t.copy() for k, t in v["tables"].items()}

    def effect_summary(self):
        """The :class:`~course_helpers.perturb.EffectSummary` behind the current view.

        Everything :meth:`data` shows and more: ``synergy_per_cell`` (the per-cell rows behind
        the synergy table), ``synergy_mean``, ``gene_effects``, ``messages``, ...

        Returns
        -------
        EffectSummary or None
            ``None`` when the view has nothing to compute (no gene chosen, or bad input: see
            :attr:`message`).

        Examples
        --------
        >>> import course_helpers as ch
        >>> ex = PerturbationExplorer(ch.model.load_model("teaching"),
        ...                           {"input_ids": [[7, 6, 5], [6, 5, 7]], "state": ["b", "b"]},
        ...                           "state", start_state="b", genes=["CD99"], n_random=0)
        >>> res = ex.effect_summary()
        >>> type(res).__name__, res.synergy_mean, len(res.effects)
        ('EffectSummary', None, 2)
        >>> ex.set(genes=[]).effect_summary() is None
        True
        """
        try:
            v = self._compute()
        except CourseInputError as err:
            self._messages = [str(err)]
            return None
        return v.get("result")

    # -- figures ---------------------------------------------------------------------------
    def figure(self, **controls):
        """Static rendering of the current view as a matplotlib Figure (2 x 2 panels).

        Keyword arguments are passed to :meth:`set` first.

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> cells = {"input_ids": [[5, 6, 7, 8], [8, 7, 6, 5]], "state": ["ill", "ill"]}
        >>> ex = PerturbationExplorer(load_model("teaching"), cells, "state", genes="CD99",
        ...                           n_random=0)
        >>> ex.figure(perturb_type="overexpress").get_suptitle()
        'overexpress CD99 in 2 cell(s) of all states'
        """
        v, failed = self._view_or_figure(controls)
        if failed is not None:
            return failed
        t = v["tables"]
        if t["effects"].empty:
            return plotting.message_figure(self.message or "Nothing to show.",
                                           title="PerturbationExplorer")
        bg_rows, _xy = v["background"]
        return drawing._perturbation_figure(
            t, v["background"], self._state, effect_label=self._effect_label(),
            background_groups=self._states_col[bg_rows], n_rows=len(v["rows"]),
            min_cells=int(v["min_cells"]))
