"""AttentionExplorer: one cell's attention among its top genes, live or as static figures.

The maps come from :func:`course_helpers.attention.aggregate_attention` (one cell at a time,
cached), the per layer/head statistics from :func:`course_helpers.attention.head_summary`; this
file holds the controls, the caches and the tables of a view (heatmap, pairs, genes). The live
controls are in ``attention_widget.py``, the figures in ``drawing.py``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd

from .._utils import CourseInputError, renamed_parameters
from ..model import model_facts
from ..vocab import close_matches
from . import drawing
from .attention_widget import _AttentionWidget
from .base import _Explorer, _whole_number
from .cells import _did_you_mean, _known_genes, _lookup, _model_vocab, _read_cells
from .pairs import _marks, _pairs_table, _truth_pairs


def _index_control(name: str, value, n: int, pooled: str, noun: str):
    """Validate a layer/head control: ``pooled`` ('all'/'mean', or None) or an index in [-n, n).

    ``noun`` names what is counted in messages (``layer``, ``head``).
    """
    if value is None or (isinstance(value, str) and value.lower() in ("all", "mean")):
        return pooled
    try:
        iv = int(value)
    except (TypeError, ValueError):
        raise CourseInputError(
            f"{name}={value!r} is not understood. Fix: '{pooled}' or 0 to {n - 1}.") from None
    if not -n <= iv < n:
        raise CourseInputError(
            f"{name}={iv} is out of range: the model has {n} {noun}s (0 to {n - 1}).")
    return iv % n


class AttentionExplorer(_AttentionWidget, _Explorer):
    """Explore a model's attention in single cells, live or as static figures.

    Parameters
    ----------
    model
        A ``BertForMaskedLM`` from :func:`course_helpers.model.load_model` (with
        ``model.gene_vocab``).  Eager attention is switched on where needed.
    dataset
        Tokenized cells (HF dataset with ``input_ids``; ``cell_id`` and the cell-type column are
        used when present), or an AnnData (then ``vocab`` is used to tokenize it).
    ground_truth
        Optional :func:`course_helpers.data.load_ground_truth` result (or DataFrame of edges with
        ``source``/``target``): pairs that are planted edges get a mark; its ``tfs`` define the
        "share of attention on TFs" summary.
    vocab
        Gene vocabulary; default ``model.gene_vocab``.
    cell_type_key
        Column with the cell type (for choosing cells by type).
    tfs
        Transcription factors (symbols/Ensembl IDs) overriding ``ground_truth.tfs``.
    cell, attn_layer, head, method, top_n, gene, select, n_pairs
        Initial control values (see :meth:`set`).
    max_genes
        Attention is kept among a cell's ``max_genes`` top-ranked genes (the whole cell is still
        the model's input); bounds memory for long cells of real models.
    cache_size
        Cells whose attention maps are kept in memory (forward passes are cached per cell).
    static_fallback
        Also embed a PNG of the current view when displaying the widget (pages without a
        kernel, such as the published book, show that image).

    Attributes
    ----------
    message : str
        Current warning ('' if none).
    last_redraw_s : float
        Seconds the last widget redraw took.

    Examples
    --------
    Two cells of six genes (in rank order) on the teaching model; in a chapter, pass the
    tokenized tissue instead.

    >>> from course_helpers.data import load_ground_truth
    >>> from course_helpers.model import load_model
    >>> model = load_model("teaching")
    >>> genes = ["GATA4", "MYH6", "TNNT2", "MYBPC3", "TNNI3", "HAND2"]
    >>> ids = model.gene_vocab.tokens(genes)
    >>> cells = {"input_ids": [ids, ids[::-1]], "cell_id": ["c0", "c1"]}
    >>> ex = AttentionExplorer(model, cells, ground_truth=load_ground_truth(), top_n=5)
    >>> ex
    AttentionExplorer(2 cells, 4 layers x 4 heads; cell=0, attn_layer=all, head=mean,
    method='weight', top_n=5)
    >>> d = ex.set(cell="c1", attn_layer=1, method="norm").data()
    >>> d["heatmap"].shape, list(d["heatmap"].index) == genes[::-1][:5]
    ((5, 5), True)
    >>> ex.title
    'c1 · layer 1 · head mean · norm-based'
    >>> d["pairs"][["query", "key", "planted_edge"]].shape
    (15, 3)
    >>> fig = ex.figure()  # the static figure (what the book shows where no kernel runs)
    >>> ex.message
    ''
    """

    _controls = ("cell", "cell_type", "attn_layer", "head", "method", "top_n", "gene", "select",
                 "n_pairs")

    @renamed_parameters(layer="attn_layer")
    def __init__(
        self,
        model,
        dataset=None,
        ground_truth=None,
        *,
        vocab=None,
        cell_type_key: str = "cell_type",
        tfs=None,
        cell: int | str = 0,
        attn_layer: int | str = "all",
        head: int | str = "mean",
        method: str = "weight",
        top_n: int = 20,
        gene: str = "",
        select: str = "rank",
        n_pairs: int = 15,
        max_genes: int = 1024,
        cache_size: int = 6,
        static_fallback: bool = True,
    ):
        super().__init__(static_fallback=static_fallback)
        self.model = model
        self._is_special = model_facts(self.model).is_special  # <cls>, <eos>, <pad> ...
        self.vocab = _model_vocab(model, vocab)
        self.cells = _read_cells(dataset, self.vocab, model, [cell_type_key])
        self.cell_type_key = cell_type_key if cell_type_key in self.cells.meta else None
        self.n_layers = int(model.config.num_hidden_layers)
        self.n_heads = int(model.config.num_attention_heads)
        self.max_genes = int(max_genes)
        self.cache_size = max(1, int(cache_size))
        self.ground_truth = ground_truth
        self._edges, tf_tokens = _truth_pairs(ground_truth, self.vocab)
        if tfs is not None:
            tf_tokens, unknown = _known_genes(self.vocab, list(tfs))
            tf_tokens = set(tf_tokens)
            if unknown:
                self._messages.append(f"TFs not in the vocabulary, ignored: {unknown[:5]}")
        self._tf_tokens = tf_tokens
        self._maps: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._summaries: OrderedDict[int, pd.DataFrame] = OrderedDict()
        self._view_cache: tuple | None = None
        self._state = {"cell": 0, "cell_type": None, "attn_layer": "all", "head": "mean",
                       "method": "weight", "top_n": 20, "gene": "", "select": "rank",
                       "n_pairs": 15}
        init_msgs = list(self._messages)
        self.set(cell=cell, attn_layer=attn_layer, head=head, method=method, top_n=top_n, gene=gene,
                 select=select, n_pairs=n_pairs)
        self._messages = init_msgs + self._messages

    def __repr__(self) -> str:
        s = self._state
        return (f"AttentionExplorer({self.cells.n} cells, {self.n_layers} layers x "
                f"{self.n_heads} heads; cell={s['cell']}, attn_layer={s['attn_layer']}, "
                f"head={s['head']}, method={s['method']!r}, top_n={s['top_n']})")

    # -- controls --------------------------------------------------------------------------
    def _cell_index(self, value) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            i = int(value)
            if not -self.cells.n <= i < self.cells.n:
                raise CourseInputError(
                    f"cell={i} is out of range: there are {self.cells.n} cells (0 to "
                    f"{self.cells.n - 1}).")
            return i % self.cells.n
        meta = self.cells.meta
        ids = [str(x) for x in meta["cell_id"]] if "cell_id" in meta else None
        if ids is not None and str(value) in ids:
            return ids.index(str(value))
        raise CourseInputError(
            f"cell={value!r} is not a cell index (0 to {self.cells.n - 1})"
            + (f" nor a cell_id (e.g. {ids[0]!r})" if ids else "") + ".")

    def _cell_types(self) -> list[str]:
        if self.cell_type_key is None:
            return []
        return list(dict.fromkeys(str(x) for x in self.cells.meta[self.cell_type_key].tolist()))

    @renamed_parameters(layer="attn_layer")
    def set(self, **controls) -> AttentionExplorer:
        """Change controls; invalid values keep the old value and set :attr:`message`.

        Parameters
        ----------
        cell
            Cell index in the dataset (or its ``cell_id``).
        cell_type
            Choose cells of this type: if the current cell has another type, jump to the first
            cell of this type.  ``None`` = any.
        attn_layer
            Attention layer index (0 = first) or ``"all"`` (mean over layers); ``layer=`` is
            the old name (still accepted, with a warning).
        head
            Head index (0 = first) or ``"mean"`` (mean over heads).
        method
            ``"weight"`` (attention weights) or ``"norm"`` (weight x value-vector norm,
            Kobayashi et al. 2020).
        top_n
            Number of genes in the heatmap.
        gene
            A gene symbol / Ensembl ID to look up: highlighted in the heatmap (added if it is not
            among the top genes) and the pairs table lists its strongest pairs.  ``""`` = none.
        select
            Which genes the heatmap shows: ``"rank"`` (the cell's top-ranked genes) or
            ``"attention"`` (the genes receiving most attention in this layer/head).
        n_pairs
            Rows of the pairs table.

        Returns
        -------
        AttentionExplorer
            ``self`` (calls can be chained).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> ex = AttentionExplorer(load_model("teaching"), [[5, 6, 7, 8, 9]], top_n=4)
        >>> ex.set(attn_layer=1, head="mean", method="norm", top_n=3).state["attn_layer"]
        1
        >>> print(ex.set(gene="NOTAGENE").message)
        Gene 'NOTAGENE' is not in the model's vocabulary, so it cannot be looked up...
        >>> print(ex.set(gene="", top_n=0).message)  # the old value stays
        top_n=0 selects nothing (empty selection). Fix: choose at least 1 (2 or more genes
        make a useful heatmap).
        >>> ex.state["top_n"]
        3
        """
        self._check_names(controls)
        msgs: list[str] = []
        new = dict(self._state)
        for key in self._controls:
            if key not in controls:
                continue
            value = controls[key]
            try:
                new[key] = self._validate(key, value, new)
            except CourseInputError as err:
                msgs.append(str(err))
        # a cell type filter moves the cell unless the cell (also given) already matches
        if new.get("cell_type") is not None:
            types = [str(t) for t in self.cells.meta[self.cell_type_key].tolist()]
            if types[new["cell"]] != new["cell_type"]:
                if "cell" in controls and "cell_type" not in controls:
                    new["cell_type"] = None  # an explicit cell of another type clears the filter
                else:
                    new["cell"] = types.index(new["cell_type"])
        self._state = new
        self._messages = msgs
        return self

    def _validate(self, key, value, new):
        L, H = self.n_layers, self.n_heads
        if key == "cell":
            return self._cell_index(value)
        if key == "cell_type":
            if value is None or value == "" or value == "(any)":
                return None
            if self.cell_type_key is None:
                raise CourseInputError(
                    "The dataset has no cell-type column, so cells cannot be chosen by type. "
                    "Fix: pass cell_type_key= the column holding the cell type.")
            types = self._cell_types()
            if str(value) not in types:
                raise CourseInputError(
                    f"No cells of type {value!r}. Types present: {', '.join(types[:12])}."
                    + _did_you_mean(close_matches(str(value), types)))
            return str(value)
        if key == "attn_layer":
            return _index_control("attn_layer", value, L, "all", "layer")
        if key == "head":
            return _index_control("head", value, H, "mean", "head")
        if key == "method":
            v = str(value).lower().replace("-based", "").strip()
            if v not in ("weight", "norm"):
                raise CourseInputError(
                    f"method={value!r} is not known. Fix: 'weight' or 'norm'.")
            return v
        if key in ("top_n", "n_pairs"):
            iv = _whole_number(key, value)
            if iv < 1:
                raise CourseInputError(
                    f"{key}={iv} selects nothing (empty selection). Fix: choose at least 1"
                    + (" (2 or more genes make a useful heatmap)." if key == "top_n" else "."))
            return iv
        if key == "gene":
            return "" if value is None else str(value).strip()
        if key == "select":
            v = str(value).lower()
            if v not in ("rank", "attention"):
                raise CourseInputError(f"select={value!r} is not known. Fix: 'rank' or "
                                       "'attention'.")
            return v
        raise AssertionError(key)  # pragma: no cover

    # -- computation -----------------------------------------------------------------------
    def cell_maps(self, cell: int | None = None, method: str | None = None):
        """All attention maps of one cell: ``(maps, tokens)``.

        ``maps`` is ``(layers, heads, G, G)`` float32 (row = query gene, column = key gene, in
        the cell's rank order), ``tokens`` the G token ids; G = the cell's genes (at most
        ``max_genes``).  Computed by :func:`course_helpers.attention.aggregate_attention` on
        this one cell and cached.

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> maps, tokens = AttentionExplorer(load_model("teaching"), [[5, 6, 7]]).cell_maps()
        >>> maps.shape, tokens.tolist()  # (layers, heads, genes, genes)
        ((4, 4, 3, 3), [5, 6, 7])
        """
        from .. import attention as _att

        cell = self._state["cell"] if cell is None else self._cell_index(cell)
        method = self._state["method"] if method is None else self._validate("method", method, {})
        key = (cell, method)
        hit = self._maps.get(key)
        if hit is not None:
            self._maps.move_to_end(key)
            return hit
        ids = self.cells.ids_of(cell)
        if len(ids) == 0:
            raise CourseInputError(f"Cell {cell} has no tokens; choose another cell.")
        ids = np.asarray(ids, dtype=np.int64)
        gene_ids = ids[~self._is_special(ids)]  # V2 cells hold <cls>, <eos>
        genes = [int(t) for t in gene_ids[: self.max_genes]]
        res = _att.aggregate_attention(self.model, [list(map(int, ids))], genes=genes,
                                       method=method, batch_size=1, progress=False)
        counts = np.maximum(res.counts, 1).astype(np.float32)
        maps = (res.sums / counts[None, None]).astype(np.float32)
        out = (maps, np.asarray(res.tokens, dtype=np.int64))
        self._maps[key] = out
        while len(self._maps) > self.cache_size:
            self._maps.popitem(last=False)
        return out

    def cell_summary(self, cell: int | None = None) -> pd.DataFrame:
        """Per layer/head statistics of one cell (:func:`course_helpers.attention.head_summary`).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> summ = AttentionExplorer(load_model("teaching"), [[5, 6, 7, 8]]).cell_summary()
        >>> len(summ), {"layer", "head", "entropy"} <= set(summ.columns)  # 4 layers x 4 heads
        (16, True)
        """
        from .. import attention as _att

        cell = self._state["cell"] if cell is None else self._cell_index(cell)
        hit = self._summaries.get(cell)
        if hit is not None:
            return hit
        ids = list(map(int, self.cells.ids_of(cell)))
        tf = sorted(self._tf_tokens & set(ids)) if self._tf_tokens else None
        summ = _att.head_summary(self.model, [ids], tf_tokens=tf or None, batch_size=1,
                                 progress=False)
        if not tf and self._tf_tokens:
            summ["tf_attention"] = 0.0
        self._summaries[cell] = summ
        while len(self._summaries) > self.cache_size:
            self._summaries.popitem(last=False)
        return summ

    def _reduce(self, maps: np.ndarray, attn_layer, head) -> np.ndarray:
        m = maps if attn_layer == "all" else maps[[attn_layer]]
        m = m.mean(axis=0)
        return m.mean(axis=0) if head == "mean" else m[head]

    def _title(self, s=None) -> str:
        s = s or self._state
        head = "mean" if s["head"] == "mean" else s["head"]
        return (f"{self.cells.label(s['cell'], self.cell_type_key)} · layer {s['attn_layer']} · "
                f"head {head} · {s['method']}-based")

    def _compute(self) -> dict:
        s = self._state
        key = tuple(sorted((k, str(v)) for k, v in s.items()))
        if self._view_cache is not None and self._view_cache[0] == key:
            return self._view_cache[1]
        msgs: list[str] = []
        maps, tokens = self.cell_maps()
        M = self._reduce(maps, s["attn_layer"], s["head"])
        G = len(tokens)
        symbols = [str(x) for x in self.vocab.symbols(tokens.tolist())]
        ensembl = [self.vocab.id_to_token.get(int(t), str(t)) for t in tokens]
        n_cell = int((~self._is_special(self.cells.ids_of(s["cell"]))).sum())
        if n_cell > G:
            msgs.append(f"This cell has {n_cell} genes; attention is shown among its top {G} "
                        "(max_genes).")
        top_n = s["top_n"]
        if top_n > G:
            msgs.append(f"top_n={top_n} but the cell has only {G} genes: showing all {G}.")
            top_n = G
        if s["select"] == "attention":
            received = M.sum(axis=0)
            sel = list(np.argsort(-received, kind="stable")[:top_n])
        else:
            sel = list(range(top_n))
        # gene search
        focus = None
        if s["gene"]:
            tok = _lookup(self.vocab, s["gene"])
            if tok is None:
                msgs.append(f"Gene {s['gene']!r} is not in the model's vocabulary, so it "
                            "cannot be looked up."
                            + _did_you_mean(self.vocab.suggest(s["gene"])))
            else:
                where = np.flatnonzero(tokens == tok)
                if where.size == 0:
                    where_cells = [i for i, x in enumerate(self.cells.all_ids())
                                   if (x[: self.max_genes] == tok).any()]
                    hint = (f" It is among the top genes of {len(where_cells)} cell(s), e.g. "
                            f"cell {where_cells[0]}." if where_cells else
                            " No cell of this dataset has it among its top genes.")
                    msgs.append(f"Gene {s['gene']!r} is not expressed in "
                                f"{self.cells.label(s['cell'])} (not among its {G} genes)."
                                + hint)
                else:
                    focus = int(where[0])
                    if focus not in sel:
                        sel = sel[:-1] + [focus] if len(sel) >= 2 else sel + [focus]
        sel = [int(i) for i in sel]
        labels = [symbols[i] for i in sel]
        heat = pd.DataFrame(M[np.ix_(sel, sel)], index=pd.Index(labels, name="query"),
                            columns=pd.Index(labels, name="key"))
        marks = _marks(tokens, sel, self._edges)
        genes = pd.DataFrame({
            "rank": sel, "gene": labels, "ensembl_id": [ensembl[i] for i in sel],
            "token_id": [int(tokens[i]) for i in sel],
            "is_tf": [int(tokens[i]) in self._tf_tokens for i in sel],
            "attention_received": M[:, sel].sum(axis=0),
        })
        pairs = _pairs_table(M, tokens, symbols, ensembl, self._edges, shown=set(sel),
                             focus=focus, n_pairs=s["n_pairs"])
        view = {"M": M, "tokens": tokens, "symbols": symbols, "sel": sel, "heatmap": heat,
                "marks": marks, "genes": genes, "pairs": pairs, "focus": focus,
                "title": self._title(), "messages": msgs}
        self._view_cache = (key, view)
        return view

    def data(self) -> dict[str, pd.DataFrame]:
        """The tables behind the current view.

        Returns
        -------
        dict
            ``heatmap`` (genes x genes attention, row = query, column = key, labelled by
            symbol), ``pairs`` (strongest gene -> gene pairs of the whole cell, or of the
            searched gene, with ``planted_edge``), ``summary`` (one row per layer/head:
            entropy, TF share, ... for this cell; weight-based) and ``genes`` (the genes in the
            heatmap).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> d = AttentionExplorer(load_model("teaching"), [[5, 6, 7, 8, 9]], top_n=3).data()
        >>> sorted(d), d["heatmap"].shape
        (['genes', 'heatmap', 'pairs', 'summary'], (3, 3))
        >>> d["genes"]["gene"].tolist()  # the cell's first (top-ranked) genes
        ['CD99', 'WNT16', 'SNX11']
        """
        v = self._compute()
        return {"heatmap": v["heatmap"].copy(), "pairs": v["pairs"].copy(),
                "summary": self.cell_summary().copy(), "genes": v["genes"].copy()}

    @property
    def title(self) -> str:
        """Title of the current heatmap.

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> cells = {"input_ids": [[5, 6]], "cell_id": ["c7"]}
        >>> ex = AttentionExplorer(load_model("teaching"), cells)
        >>> ex.set(attn_layer=0, head=2).title
        'c7 · layer 0 · head 2 · weight-based'
        """
        return self._title()

    # -- figures ---------------------------------------------------------------------------
    def _summary_grid(self, column: str) -> pd.DataFrame:
        summ = self.cell_summary()
        return summ.pivot(index="layer", columns="head", values=column)

    def _share_col(self) -> str:
        """The second summary panel: share of attention on TFs, or on the gene itself."""
        return "tf_attention" if "tf_attention" in self.cell_summary() else "self_attention"

    def _grids(self) -> dict[str, pd.DataFrame]:
        share = self._share_col()
        return {"entropy": self._summary_grid("entropy"), share: self._summary_grid(share)}

    @renamed_parameters(layer="attn_layer")
    def heatmap_figure(self, title: bool = True, **controls):
        """Only the heatmap of the current (or given) controls, as a matplotlib Figure.

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> fig = AttentionExplorer(load_model("teaching"), [[5, 6, 7]]).heatmap_figure(head=1)
        >>> fig.axes[0].get_title()
        'cell 0 · layer all · head 1 · weight-based'
        """
        if controls:
            self.set(**controls)
        return drawing._attention_heatmap_figure(self._compute(), self._state["method"],
                                                title=title)

    @renamed_parameters(layer="attn_layer")
    def figure(self, **controls):
        """Static rendering of the current view (heatmap + per-layer/head summaries).

        Keyword arguments are passed to :meth:`set` first.  Returns a
        ``matplotlib.figure.Figure`` (shown by the book where no kernel runs).

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> ex = AttentionExplorer(load_model("teaching"), [[9, 8, 7, 6, 5]])
        >>> [a.get_title() for a in ex.figure(attn_layer=0, head=1).axes][0]
        'cell 0 · layer 0 · head 1 · weight-based'
        """
        v, failed = self._view_or_figure(controls)
        if failed is not None:
            return failed
        return drawing._attention_overview_figure(v, self._state, self._grids(), self._share_col(),
                                                 self.message)

    @renamed_parameters(layer="attn_layer")
    def bertviz(self, view: str = "head", **controls):
        """bertviz head or model view of the current cell, restricted to the heatmap's genes.

        Returns an ``IPython.display.HTML`` (bertviz draws with JavaScript in the notebook).
        The maps are the current method's (weight- or norm-based) among the top genes; rows are
        not renormalised after the restriction.

        Examples
        --------
        >>> from course_helpers.model import load_model
        >>> ex = AttentionExplorer(load_model("teaching"), [[5, 6, 7, 8, 9, 10]], top_n=4)
        >>> html = ex.bertviz("head").data  # drawn by JavaScript in the notebook
        >>> all(g in html for g in ["CD99", "WNT16", "SNX11", "CYP26B1"])
        True
        """
        import torch
        from bertviz import head_view, model_view

        if controls:
            self.set(**controls)
        v = self._compute()
        maps, _ = self.cell_maps()
        sel = v["sel"]
        sub = maps[:, :, sel][:, :, :, sel]
        att = tuple(torch.from_numpy(np.ascontiguousarray(sub[i][None])) for i in
                    range(sub.shape[0]))
        tokens = [v["symbols"][i] for i in sel]
        if view == "model":
            return model_view(att, tokens, prettify_tokens=False, html_action="return")
        if view != "head":
            raise CourseInputError(f"view={view!r}: use 'head' or 'model'.")
        layer = None if self._state["attn_layer"] == "all" else int(self._state["attn_layer"])
        heads = None if self._state["head"] == "mean" else [int(self._state["head"])]
        return head_view(att, tokens, prettify_tokens=False, layer=layer, heads=heads,
                         html_action="return")
