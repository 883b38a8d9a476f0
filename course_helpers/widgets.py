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
:mod:`course_helpers.attention`, :mod:`course_helpers.perturb` and :mod:`course_helpers.embed`
for all model computations; this module only arranges, caches and draws.

Examples
--------
>>> from course_helpers.model import load_model                             # doctest: +SKIP
>>> model = load_model("teaching", output_attentions=True)                  # doctest: +SKIP
>>> ex = AttentionExplorer(model, dataset, ground_truth=load_ground_truth())  # doctest: +SKIP
>>> ex                      # live widget in JupyterLab                     # doctest: +SKIP
>>> ex.set(cell=3, layer=1, head="mean", method="norm", top_n=15)            # doctest: +SKIP
>>> ex.data()["pairs"].head()                                              # doctest: +SKIP
>>> ex.figure()             # static matplotlib figure                      # doctest: +SKIP
"""
from __future__ import annotations

import difflib
import html
import os
import time
import traceback
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import plotting
from ._utils import CourseInputError

__all__ = ["STATIC_ENV", "AttentionExplorer", "PerturbationExplorer"]

#: Environment variable: set to ``1`` (e.g. in the book build) to display explorers as static
#: PNG figures only, without live controls.
STATIC_ENV = "COURSE_STATIC_WIDGETS"


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def _is_anndata(obj) -> bool:
    return hasattr(obj, "obs") and hasattr(obj, "var") and hasattr(obj, "X")


class _CellTable:
    """Token ids and metadata of tokenized cells (HF dataset, DataFrame, dict or list)."""

    def __init__(self, dataset):
        if dataset is None:
            raise CourseInputError(
                "No cells given. Fix: pass a tokenized dataset (course_helpers.tokenize) or an "
                "AnnData together with vocab=..."
            )
        self.dataset = dataset
        self._hf = hasattr(dataset, "column_names") and hasattr(dataset, "select_columns")
        if self._hf:
            cols = list(dataset.column_names)
            if "input_ids" not in cols:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {cols}). Fix: tokenize the "
                    "cells first with course_helpers.tokenize."
                )
            self.columns = cols
            self.n = len(dataset)
            self._ids_ds = dataset.select_columns(["input_ids"])
            self.meta = pd.DataFrame(
                {c: list(dataset[c]) for c in cols if c not in ("input_ids",)})
        else:
            if isinstance(dataset, (list, tuple)):
                frame = pd.DataFrame({"input_ids": list(dataset)})
            elif isinstance(dataset, pd.DataFrame):
                frame = dataset
            elif isinstance(dataset, dict):
                frame = pd.DataFrame(dict(dataset))
            else:
                raise CourseInputError(
                    f"Cannot read cells from a {type(dataset).__name__}. Fix: pass a tokenized "
                    "Hugging Face dataset, a DataFrame/dict with 'input_ids', or an AnnData with "
                    "vocab=..."
                )
            if "input_ids" not in frame.columns:
                raise CourseInputError("The cells have no 'input_ids'. Fix: tokenize them first.")
            self.columns = list(frame.columns)
            self.n = len(frame)
            self._ids_list = [np.asarray(x, dtype=np.int64) for x in frame["input_ids"]]
            self.meta = frame.drop(columns=["input_ids"]).reset_index(drop=True)
        if self.n == 0:
            raise CourseInputError("The dataset has no cells. Fix: pass at least one cell.")
        if "length" not in self.meta:
            self.meta["length"] = [len(self.ids(i)) for i in range(self.n)]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def ids(self, i: int) -> np.ndarray:
        i = int(i)
        if not self._hf:
            return self._ids_list[i]
        bulk = self.__dict__.get("_all_ids")
        if bulk is not None and i < len(bulk):
            return bulk[i]
        hit = self._cache.get(i)
        if hit is None:
            hit = np.asarray(self._ids_ds[i]["input_ids"], dtype=np.int64)
            self._cache[i] = hit
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return hit

    def all_ids(self, limit: int = 20000) -> list[np.ndarray]:
        """Token ids of the first ``limit`` cells, read in bulk once (for searches)."""
        hit = self.__dict__.get("_all_ids")
        if hit is None:
            n = min(self.n, int(limit))
            if self._hf:
                sub = self._ids_ds if n == self.n else self._ids_ds.select(range(n))
                col = sub.with_format("numpy")["input_ids"]
                hit = [np.asarray(c, dtype=np.int64) for c in col]
            else:
                hit = self._ids_list[:n]
            self._all_ids = hit
        return hit

    def column(self, name: str):
        if name in self.meta:
            return self.meta[name].tolist()
        return None

    def label(self, i: int, type_key: str | None = None) -> str:
        key = type_key if type_key and type_key in self.meta else None
        cache = self.__dict__.setdefault("_labels", {})
        if key not in cache:
            ids = ([str(x) for x in self.meta["cell_id"]] if "cell_id" in self.meta
                   else [f"cell {j}" for j in range(self.n)])
            if key is not None:
                ids = [f"{c} ({t})" for c, t in zip(ids, self.meta[key].astype(str))]
            cache[key] = ids
        return cache[key][int(i)]


def _tokenize_adata(adata, vocab, model=None, extra_attrs=()):
    """Tokenize an AnnData with :func:`course_helpers.tokenize.tokenize` (needs ``vocab``)."""
    if vocab is None:
        raise CourseInputError(
            "An AnnData was given without a vocabulary. Fix: pass vocab=model.gene_vocab, or "
            "tokenize first with course_helpers.tokenize.tokenize and pass the dataset."
        )
    from .tokenize import tokenize

    wanted = ["cell_id", "cell_type", "state", *extra_attrs]
    attrs = list(dict.fromkeys(c for c in wanted if c and (c == "cell_id" or c in adata.obs)))
    version = "V2" if getattr(vocab, "version", "V1") == "V2" else "V1"
    kwargs = {}
    max_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if max_pos:
        kwargs["model_input_size"] = int(max_pos)
    return tokenize(adata, vocab, model_version=version, cell_attrs=attrs, progress=False,
                    **kwargs)


def _gene_tokens_safe(vocab, genes) -> tuple[list[int], list[str]]:
    """Token ids of the genes that the vocabulary knows, and the names it does not know."""
    known, unknown = [], []
    for g in genes:
        if g is None or (isinstance(g, float) and np.isnan(g)):
            continue
        if isinstance(g, (int, np.integer)):
            known.append(int(g))
            continue
        try:
            known.append(int(vocab.tokens([str(g)])[0]))
        except (CourseInputError, KeyError, ValueError):
            unknown.append(str(g))
    return known, unknown


def _suggest(word: str, choices: Sequence[str], n: int = 4) -> str:
    if not choices:
        return ""
    up = {c.upper(): c for c in choices}
    close = difflib.get_close_matches(word.upper(), list(up), n=n, cutoff=0.6)
    starts = [c for u, c in up.items() if u.startswith(word.upper()[:3])][:n] if len(word) >= 3 \
        else []
    found = list(dict.fromkeys([up[c] for c in close] + starts))[:n]
    return f" Did you mean: {', '.join(found)}?" if found else ""


def _truth_pairs(ground_truth, vocab) -> tuple[set[tuple[int, int]], set[int]]:
    """Planted edges as (source token, target token) pairs, and TF tokens, from a ground truth.

    ``ground_truth``: an object with ``.edges`` (DataFrame with ``source``/``target`` as Ensembl
    IDs or symbols) and optionally ``.tfs``; or such a DataFrame itself.
    """
    if ground_truth is None:
        return set(), set()
    edges = getattr(ground_truth, "edges", ground_truth)
    if not isinstance(edges, pd.DataFrame) or not {"source", "target"} <= set(edges.columns):
        raise CourseInputError(
            "ground_truth must be load_ground_truth() (or a DataFrame of edges with 'source' and "
            "'target' columns)."
        )
    names = pd.unique(pd.concat([edges["source"], edges["target"]]).astype(str))
    lut: dict[str, int] = {}
    for g in names:
        tok, _ = _gene_tokens_safe(vocab, [g])
        if tok:
            lut[g] = tok[0]
    pairs = set()
    for s, t in zip(edges["source"].astype(str), edges["target"].astype(str)):
        if s in lut and t in lut:
            pairs.add((lut[s], lut[t]))
    tfs_raw = getattr(ground_truth, "tfs", None)
    if tfs_raw is None:
        tfs_raw = list(pd.unique(edges["source"].astype(str)))
    tf_tokens, _ = _gene_tokens_safe(vocab, list(tfs_raw))
    return pairs, set(tf_tokens)


def _html_table(df: pd.DataFrame, *, max_rows: int = 30, css_class: str = "ch-table") -> str:
    if df is None or df.empty:
        return "<i>nothing to show</i>"
    fmt = df.head(max_rows).copy()
    for c in fmt.columns:
        if pd.api.types.is_float_dtype(fmt[c]):
            fmt[c] = fmt[c].map(lambda v: f"{v:.4g}")
        elif pd.api.types.is_bool_dtype(fmt[c]):
            fmt[c] = fmt[c].map(lambda v: "&#9733;" if v else "")
    body = fmt.to_html(index=False, escape=False, border=0, classes=css_class)
    style = (f"<style>.{css_class}{{font-size:11px;border-collapse:collapse}}"
             f".{css_class} td,.{css_class} th{{padding:1px 6px;text-align:right}}"
             f".{css_class} tr:nth-child(even){{background:rgba(127,127,127,0.08)}}</style>")
    return style + body


def _message_html(text: str) -> str:
    if not text:
        return "<span style='color:#2e7d32'>&#10003; ok</span>"
    return ("<div style='color:#8a5300;background:#fff4e0;border-left:4px solid #e69f00;"
            f"padding:4px 8px;white-space:pre-wrap'>&#9888; {html.escape(text)}</div>")


class _Explorer:
    """Machinery shared by the explorers: state, messages, widget display, static fallback."""

    _controls: tuple[str, ...] = ()

    def __init__(self, static_fallback: bool = True):
        self._state: dict[str, Any] = {}
        self._messages: list[str] = []
        self._widget = None
        self._syncing = False
        self.static_fallback = bool(static_fallback)
        self.last_redraw_s: float | None = None
        self.last_error: str | None = None

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        """The current control values (a copy)."""
        return dict(self._state)

    @property
    def message(self) -> str:
        """The current warning shown in the widget ('' when everything is fine)."""
        msgs = list(self._messages) + list(self._view_messages())
        return "\n".join(dict.fromkeys(m for m in msgs if m))

    def _view_messages(self) -> list[str]:
        return []

    def _check_names(self, kwargs: dict) -> None:
        bad = [k for k in kwargs if k not in self._controls]
        if bad:
            raise CourseInputError(
                f"{type(self).__name__}.set() got unknown control(s) {bad}. Controls: "
                f"{', '.join(self._controls)}."
            )

    # -- display ---------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets view (built on first use)."""
        if self._widget is None:
            self._widget = self._build_widget()
            self._refresh_widget()
        return self._widget

    def _build_widget(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _refresh_widget(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _static_png(self) -> bytes | None:
        try:
            fig = self.figure()
            return plotting.figure_to_png(fig, dpi=80)
        except Exception:  # noqa: BLE001 - never break display because of the fallback
            return None

    def show(self, static: bool | None = None):
        """Display the explorer: live widget, or (``static=True``) the static figure only.

        ``static=None`` follows the environment variable ``COURSE_STATIC_WIDGETS``.
        """
        from IPython.display import display

        if static is None:
            static = os.environ.get(STATIC_ENV, "").strip().lower() in {"1", "true", "yes"}
        if static:
            display(self.figure())
            return
        bundle = {"text/plain": repr(self)}
        try:
            w = self.widget
            wb = w._repr_mimebundle_() if hasattr(w, "_repr_mimebundle_") else None
        except Exception as err:  # noqa: BLE001 - no ipywidgets/comm: fall back to the figure
            self.last_error = f"{type(err).__name__}: {err}"
            wb = None
        if wb:
            bundle.update(wb)
            bundle["text/plain"] = repr(self)
        if self.static_fallback or not wb:
            png = self._static_png()
            if png is not None:
                import base64

                bundle["image/png"] = base64.b64encode(png).decode("ascii")
        display(bundle, raw=True)

    def _ipython_display_(self):
        self.show()

    def _safe(self, fn, *args, **kwargs):
        """Run a widget callback; turn any exception into a message (never a traceback)."""
        try:
            return fn(*args, **kwargs)
        except CourseInputError as err:
            self._messages = [str(err)]
        except Exception as err:  # noqa: BLE001 - a widget callback must never show a traceback
            self.last_error = traceback.format_exc()
            self._messages = [(f"Something went wrong: {type(err).__name__}: {err}. "
                              "Change a control to try again (details: explorer.last_error).")]
        return None


# --------------------------------------------------------------------------------------------
# AttentionExplorer
# --------------------------------------------------------------------------------------------

def _index_control(name: str, value, n: int, pooled: str):
    """Validate a layer/head control: ``pooled`` ('all'/'mean', or None) or an index in [-n, n)."""
    if value is None or (isinstance(value, str) and value.lower() in ("all", "mean")):
        return pooled
    try:
        iv = int(value)
    except (TypeError, ValueError):
        raise CourseInputError(
            f"{name}={value!r} is not understood. Fix: '{pooled}' or 0 to {n - 1}.") from None
    if not -n <= iv < n:
        raise CourseInputError(
            f"{name}={iv} is out of range: the model has {n} {name}s (0 to {n - 1}).")
    return iv % n

class AttentionExplorer(_Explorer):
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
    cell, layer, head, method, top_n, gene, select, n_pairs
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
    >>> ex = AttentionExplorer(model, dataset, ground_truth=truth)              # doctest: +SKIP
    >>> ex.set(cell=3, layer=1, head="mean", method="norm", top_n=15)           # doctest: +SKIP
    >>> d = ex.data(); d["heatmap"].shape                                      # doctest: +SKIP
    (15, 15)
    >>> d["pairs"].query("planted_edge")                                       # doctest: +SKIP
    >>> fig = ex.figure()                                                      # doctest: +SKIP
    """

    _controls = ("cell", "cell_type", "layer", "head", "method", "top_n", "gene", "select",
                 "n_pairs")

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
        layer: int | str = "all",
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
        self.vocab = vocab if vocab is not None else getattr(model, "gene_vocab", None)
        if self.vocab is None:
            raise CourseInputError(
                "The model has no gene vocabulary (model.gene_vocab). Fix: load it with "
                "course_helpers.model.load_model(...) or pass vocab=GeneVocab..."
            )
        if _is_anndata(dataset):
            dataset = _tokenize_adata(dataset, self.vocab, model, [cell_type_key])
        self.cells = _CellTable(dataset)
        self.cell_type_key = cell_type_key if cell_type_key in self.cells.meta else None
        self.n_layers = int(model.config.num_hidden_layers)
        self.n_heads = int(model.config.num_attention_heads)
        self.max_genes = int(max_genes)
        self.cache_size = max(1, int(cache_size))
        self.ground_truth = ground_truth
        self._edges, tf_tokens = _truth_pairs(ground_truth, self.vocab)
        if tfs is not None:
            tf_tokens, unknown = _gene_tokens_safe(self.vocab, list(tfs))
            tf_tokens = set(tf_tokens)
            if unknown:
                self._messages.append(f"TFs not in the vocabulary, ignored: {unknown[:5]}")
        self._tf_tokens = tf_tokens
        self._maps: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._summaries: OrderedDict[int, pd.DataFrame] = OrderedDict()
        self._view_cache: tuple | None = None
        self._state = {"cell": 0, "cell_type": None, "layer": "all", "head": "mean",
                       "method": "weight", "top_n": 20, "gene": "", "select": "rank",
                       "n_pairs": 15}
        init_msgs = list(self._messages)
        self.set(cell=cell, layer=layer, head=head, method=method, top_n=top_n, gene=gene,
                 select=select, n_pairs=n_pairs)
        self._messages = init_msgs + self._messages

    def __repr__(self) -> str:
        s = self._state
        return (f"AttentionExplorer({self.cells.n} cells, {self.n_layers} layers x "
                f"{self.n_heads} heads; cell={s['cell']}, layer={s['layer']}, head={s['head']}, "
                f"method={s['method']!r}, top_n={s['top_n']})")

    # -- controls --------------------------------------------------------------------------
    def _cell_index(self, value) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            i = int(value)
            if not -self.cells.n <= i < self.cells.n:
                raise CourseInputError(
                    f"cell={i} is out of range: there are {self.cells.n} cells (0 to "
                    f"{self.cells.n - 1}).")
            return i % self.cells.n
        ids = self.cells.column("cell_id")
        if ids is not None and str(value) in ids:
            return ids.index(str(value))
        raise CourseInputError(
            f"cell={value!r} is not a cell index (0 to {self.cells.n - 1})"
            + (f" nor a cell_id (e.g. {ids[0]!r})" if ids else "") + ".")

    def _cell_types(self) -> list[str]:
        if self.cell_type_key is None:
            return []
        return list(dict.fromkeys(str(x) for x in self.cells.column(self.cell_type_key)))

    def set(self, **controls) -> AttentionExplorer:
        """Change controls; invalid values keep the old value and set :attr:`message`.

        Parameters
        ----------
        cell
            Cell index in the dataset (or its ``cell_id``).
        cell_type
            Choose cells of this type: if the current cell has another type, jump to the first
            cell of this type.  ``None`` = any.
        layer
            Layer index (0 = first) or ``"all"`` (mean over layers).
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
        >>> ex.set(cell=3, layer=1, head="mean", method="norm", top_n=15)    # doctest: +SKIP
        >>> ex.set(gene="NOTAGENE").message                                 # doctest: +SKIP
        "Gene 'NOTAGENE' is not in the model's vocabulary. ..."
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
            types = [str(t) for t in self.cells.column(self.cell_type_key)]
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
                    + _suggest(str(value), types))
            return str(value)
        if key == "layer":
            return _index_control("layer", value, L, "all")
        if key == "head":
            return _index_control("head", value, H, "mean")
        if key == "method":
            v = str(value).lower().replace("-based", "").strip()
            if v not in ("weight", "norm"):
                raise CourseInputError(
                    f"method={value!r} is not known. Fix: 'weight' or 'norm'.")
            return v
        if key in ("top_n", "n_pairs"):
            try:
                iv = int(value)
            except (TypeError, ValueError):
                raise CourseInputError(f"{key}={value!r} must be a whole number.") from None
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
        """
        from . import attention as _att

        cell = self._state["cell"] if cell is None else self._cell_index(cell)
        method = self._state["method"] if method is None else self._validate("method", method, {})
        key = (cell, method)
        hit = self._maps.get(key)
        if hit is not None:
            self._maps.move_to_end(key)
            return hit
        ids = self.cells.ids(cell)
        if len(ids) == 0:
            raise CourseInputError(f"Cell {cell} has no tokens; choose another cell.")
        genes = [int(t) for t in ids[: self.max_genes]]
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
        """Per layer/head statistics of one cell (:func:`course_helpers.attention.head_summary`)."""
        from . import attention as _att

        cell = self._state["cell"] if cell is None else self._cell_index(cell)
        hit = self._summaries.get(cell)
        if hit is not None:
            return hit
        ids = list(map(int, self.cells.ids(cell)))
        tf = sorted(self._tf_tokens & set(ids)) if self._tf_tokens else None
        summ = _att.head_summary(self.model, [ids], tf_tokens=tf or None, batch_size=1,
                                 progress=False)
        if not tf and self._tf_tokens:
            summ["tf_attention"] = 0.0
        self._summaries[cell] = summ
        while len(self._summaries) > self.cache_size:
            self._summaries.popitem(last=False)
        return summ

    def _reduce(self, maps: np.ndarray, layer, head) -> np.ndarray:
        m = maps if layer == "all" else maps[[layer]]
        m = m.mean(axis=0)
        return m.mean(axis=0) if head == "mean" else m[head]

    def _title(self, s=None) -> str:
        s = s or self._state
        head = "mean" if s["head"] == "mean" else s["head"]
        return (f"{self.cells.label(s['cell'], self.cell_type_key)} · layer {s['layer']} · "
                f"head {head} · {s['method']}-based")

    def _compute(self) -> dict:
        s = self._state
        key = tuple(sorted((k, str(v)) for k, v in s.items()))
        if self._view_cache is not None and self._view_cache[0] == key:
            return self._view_cache[1]
        msgs: list[str] = []
        maps, tokens = self.cell_maps()
        M = self._reduce(maps, s["layer"], s["head"])
        G = len(tokens)
        symbols = [str(x) for x in self.vocab.symbols(tokens.tolist())]
        ensembl = [self.vocab.id_to_token.get(int(t), str(t)) for t in tokens]
        n_cell = len(self.cells.ids(s["cell"]))
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
            tok, unknown = _gene_tokens_safe(self.vocab, [s["gene"]])
            if unknown:
                msgs.append(f"Gene {s['gene']!r} is not in the model's vocabulary, so it "
                            "cannot be looked up." + _suggest(s["gene"], symbols))
            else:
                where = np.flatnonzero(tokens == tok[0])
                if where.size == 0:
                    where_cells = [i for i, x in enumerate(self.cells.all_ids())
                                   if (x[: self.max_genes] == tok[0]).any()]
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
        marks = np.array([[(int(tokens[i]), int(tokens[j])) in self._edges
                           or (int(tokens[j]), int(tokens[i])) in self._edges
                           for j in sel] for i in sel], dtype=bool) if self._edges else None
        genes = pd.DataFrame({
            "rank": sel, "gene": labels, "ensembl_id": [ensembl[i] for i in sel],
            "token_id": [int(tokens[i]) for i in sel],
            "is_tf": [int(tokens[i]) in self._tf_tokens for i in sel],
            "attention_received": M[:, sel].sum(axis=0),
        })
        pairs = self._pairs(M, tokens, symbols, ensembl, set(sel), focus, s["n_pairs"])
        view = {"M": M, "tokens": tokens, "symbols": symbols, "sel": sel, "heatmap": heat,
                "marks": marks, "genes": genes, "pairs": pairs, "focus": focus,
                "title": self._title(), "messages": msgs}
        self._view_cache = (key, view)
        return view

    def _pairs(self, M, tokens, symbols, ensembl, shown, focus, n_pairs) -> pd.DataFrame:
        G = M.shape[0]
        off = ~np.eye(G, dtype=bool)
        if focus is not None:
            keep = np.zeros((G, G), dtype=bool)
            keep[focus, :] = True
            keep[:, focus] = True
            off &= keep
        ii, jj = np.nonzero(off)
        vals = M[ii, jj]
        order = np.lexsort((jj, ii, -vals))[: int(n_pairs)]
        ii, jj, vals = ii[order], jj[order], vals[order]
        fwd = [(int(tokens[i]), int(tokens[j])) in self._edges for i, j in zip(ii, jj)]
        rev = [(int(tokens[j]), int(tokens[i])) in self._edges for i, j in zip(ii, jj)]
        edge = ["both" if f and r else "query→key" if f else "key→query" if r else ""
                for f, r in zip(fwd, rev)]
        return pd.DataFrame({
            "query": [symbols[i] for i in ii], "key": [symbols[j] for j in jj],
            "attention": vals.astype(float),
            "query_rank": ii.astype(int), "key_rank": jj.astype(int),
            "planted_edge": [f or r for f, r in zip(fwd, rev)], "edge_direction": edge,
            "in_heatmap": [int(i) in shown and int(j) in shown for i, j in zip(ii, jj)],
            "query_id": [ensembl[i] for i in ii], "key_id": [ensembl[j] for j in jj],
        })

    def _view_messages(self) -> list[str]:
        try:
            return self._compute()["messages"]
        except CourseInputError as err:
            return [str(err)]

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
        """
        v = self._compute()
        return {"heatmap": v["heatmap"].copy(), "pairs": v["pairs"].copy(),
                "summary": self.cell_summary().copy(), "genes": v["genes"].copy()}

    @property
    def title(self) -> str:
        """Title of the current heatmap."""
        return self._title()

    # -- figures ---------------------------------------------------------------------------
    def _summary_grid(self, column: str) -> pd.DataFrame:
        summ = self.cell_summary()
        return summ.pivot(index="layer", columns="head", values=column)

    def heatmap_figure(self, title: bool = True, **controls):
        """Only the heatmap of the current (or given) controls, as a matplotlib Figure."""
        if controls:
            self.set(**controls)

        v = self._compute()
        n = len(v["sel"])
        # fixed margins (no layout engine): redraws stay fast in the live widget
        chars = max((len(x) for x in v["heatmap"].index), default=4)
        fs = 8 if n <= 25 else 6 if n <= 45 else 4
        lab = 0.1 + 0.0085 * fs * chars  # tick-label room (inches)
        cell = 0.26 if n <= 25 else 0.19 if n <= 45 else 0.12
        w_in = lab + 0.35 + cell * n + 1.3
        h_in = lab + 0.35 + cell * n + 0.35
        fig = plotting.figure(figsize=(w_in, h_in), layout=None)
        fig.subplots_adjust(left=(lab + 0.35) / w_in, right=1 - 1.3 / w_in,
                            bottom=(lab + 0.35) / h_in, top=1 - 0.35 / h_in)
        ax = fig.add_subplot()
        plotting.attention_heatmap(v["heatmap"], ax=ax, title=None,
                                   highlight=[v["symbols"][v["focus"]]] if v["focus"] is not None
                                   else (), marks=v["marks"], vmin=None,
                                   cbar_label=f"attention ({self._state['method']}-based)")
        if title:
            ax.set_title(v["title"], fontsize=9)
        return fig

    def figure(self, **controls):
        """Static rendering of the current view (heatmap + per-layer/head summaries).

        Keyword arguments are passed to :meth:`set` first.  Returns a
        ``matplotlib.figure.Figure`` (shown by the book where no kernel runs).
        """
        if controls:
            self.set(**controls)
        try:
            v = self._compute()
        except CourseInputError as err:
            return plotting.message_figure(str(err), title="AttentionExplorer")
        s = self._state
        n = len(v["sel"])
        side = min(3.2 + 0.24 * n, 10)
        fig = plotting.figure(figsize=(side + 4.6, max(side, 6.2)))
        gs = fig.add_gridspec(2, 2, width_ratios=[side, 4.2])
        ax_h = fig.add_subplot(gs[:, 0])
        plotting.attention_heatmap(v["heatmap"], ax=ax_h, title=v["title"],
                                   highlight=[v["symbols"][v["focus"]]] if v["focus"] is not None
                                   else (), marks=v["marks"], vmin=None,
                                   cbar_label=f"attention ({s['method']}-based)")
        sel = (None if s["layer"] == "all" else s["layer"],
               None if s["head"] == "mean" else s["head"])
        ax_e = fig.add_subplot(gs[0, 1])
        plotting.layer_head_grid(self._summary_grid("entropy"), ax=ax_e, selected=sel,
                                 title="entropy of attention (nats; this cell)",
                                 cbar_label="entropy", cmap="viridis")
        ax_t = fig.add_subplot(gs[1, 1])
        summ = self.cell_summary()
        if "tf_attention" in summ:
            plotting.layer_head_grid(self._summary_grid("tf_attention"), ax=ax_t, selected=sel,
                                     title="share of attention on TFs (this cell)",
                                     cbar_label="TF share", cmap="magma")
        else:
            plotting.layer_head_grid(self._summary_grid("self_attention"), ax=ax_t,
                                     selected=sel, title="attention to itself (no TF list)",
                                     cbar_label="self share", cmap="magma")
        msg = self.message
        if msg:
            fig.suptitle("⚠ " + msg.splitlines()[0][:160], fontsize=8, color="#8A5300")
        return fig

    def bertviz(self, view: str = "head", **controls):
        """bertviz head or model view of the current cell, restricted to the heatmap's genes.

        Returns an ``IPython.display.HTML`` (bertviz draws with JavaScript in the notebook).
        The maps are the current method's (weight- or norm-based) among the top genes; rows are
        not renormalised after the restriction.
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
        layer = None if self._state["layer"] == "all" else int(self._state["layer"])
        heads = None if self._state["head"] == "mean" else [int(self._state["head"])]
        return head_view(att, tokens, prettify_tokens=False, layer=layer, heads=heads,
                         html_action="return")

    # -- widget ----------------------------------------------------------------------------
    def _cell_options(self):
        ct = self._state.get("cell_type")
        types = self.cells.column(self.cell_type_key) if self.cell_type_key else None
        lengths = self.cells.meta["length"].tolist()
        out = []
        for i in range(self.cells.n):
            if ct is not None and types is not None and str(types[i]) != ct:
                continue
            out.append((f"{i}: {self.cells.label(i, self.cell_type_key)} · {lengths[i]} genes",
                        i))
            if len(out) >= 2000:
                break
        return out

    def _build_widget(self):
        import ipywidgets as W

        s = self._state
        lay = W.Layout
        self._w = w = {}
        w["cell_type"] = W.Dropdown(options=["(any)"] + self._cell_types(),
                                    value=s["cell_type"] or "(any)", description="cell type",
                                    layout=lay(width="250px"))
        w["cell"] = W.Dropdown(options=self._cell_options(), value=s["cell"], description="cell",
                               layout=lay(width="360px"))
        w["gene"] = W.Combobox(value=s["gene"], placeholder="search a gene (symbol)",
                               options=[], ensure_option=False, description="gene",
                               continuous_update=False, layout=lay(width="250px"))
        w["layer"] = W.Dropdown(options=["all"] + list(range(self.n_layers)), value=s["layer"],
                                description="layer", layout=lay(width="160px"))
        w["head"] = W.Dropdown(options=["mean"] + list(range(self.n_heads)), value=s["head"],
                               description="head", layout=lay(width="160px"))
        w["method"] = W.ToggleButtons(options=[("weight", "weight"), ("norm", "norm")],
                                      value=s["method"], description="attention",
                                      style={"button_width": "70px",
                                             "description_width": "initial"},
                                      tooltips=["attention weights",
                                                "weight x |transformed value| (Kobayashi 2020)"])
        w["top_n"] = W.IntSlider(value=s["top_n"], min=2, max=max(2, min(60, self.max_genes)),
                                 description="top genes", continuous_update=False,
                                 layout=lay(width="300px"))
        w["select"] = W.ToggleButtons(options=[("by rank", "rank"), ("by attention",
                                                                      "attention")],
                                      value=s["select"], description="genes shown",
                                      style={"button_width": "100px",
                                             "description_width": "initial"})
        for name, cls in (("layer", "ch-layer"), ("head", "ch-head"), ("cell", "ch-cell"),
                          ("cell_type", "ch-cell-type"), ("gene", "ch-gene"),
                          ("method", "ch-method"), ("top_n", "ch-top-n"),
                          ("select", "ch-select")):
            w[name].add_class(cls)
        self._msg_w = W.HTML(layout=lay(width="100%")).add_class("ch-message")
        self._title_w = W.HTML().add_class("ch-heatmap-title")
        self._heat_w = W.Image(format="png", layout=lay(max_width="100%"))
        heat_box = W.VBox([self._title_w, self._heat_w]).add_class("ch-heatmap")
        self._pairs_w = W.HTML().add_class("ch-pairs")
        self._summary_w = W.Image(format="png", layout=lay(max_width="100%"))
        self._timing_w = W.HTML().add_class("ch-timing")
        self._bv_out = W.Output(layout=lay(width="100%"))
        bv_button = W.Button(description="open in bertviz", icon="eye",
                             tooltip="bertviz head view of this cell, top genes only")
        bv_kind = W.Dropdown(options=["head", "model"], value="head", layout=lay(width="90px"))

        def on_bertviz(_):
            from IPython.display import display

            self._bv_out.clear_output()
            with self._bv_out:
                out = self._safe(self.bertviz, view=bv_kind.value)
                if out is not None:
                    display(out)
                else:
                    self._refresh_widget()

        bv_button.on_click(on_bertviz)
        for name in ("cell_type", "cell", "gene", "layer", "head", "method", "top_n", "select"):
            w[name].observe(self._on_control(name), names="value")
        wrap = lay(flex_flow="row wrap")
        controls = W.VBox([
            W.HBox([w["cell_type"], w["cell"], w["gene"]], layout=wrap),
            W.HBox([w["layer"], w["head"], w["top_n"]], layout=wrap),
            W.HBox([w["method"], w["select"]], layout=wrap),
        ])
        right = W.VBox([W.HTML("<b>strongest pairs</b> (&#9733; = planted edge)"),
                        self._pairs_w, W.HTML("<b>layers × heads</b>"), self._summary_w],
                       layout=lay(width="45%"))
        body = W.HBox([W.Box([heat_box], layout=lay(width="55%")), right])
        root = W.VBox([W.HTML("<b>AttentionExplorer</b>"), controls, self._msg_w, body,
                       W.HBox([bv_button, bv_kind, self._timing_w]), self._bv_out])
        root.add_class("ch-explorer")
        return root

    def _on_control(self, name):
        def handler(change):
            if self._syncing:
                return
            self._safe(self.set, **{name: change["new"] if change["new"] != "(any)" else None})
            self._safe(self._refresh_widget)
        return handler

    def _sync_controls(self):
        w = self._w
        s = self._state
        self._syncing = True
        try:
            w["cell_type"].value = s["cell_type"] or "(any)"
            opts = self._cell_options()
            if [o[1] for o in w["cell"].options] != [o[1] for o in opts]:
                w["cell"].options = opts
            if s["cell"] not in [o[1] for o in opts]:
                w["cell"].options = [*opts, ((f"{s['cell']}: "
                                              f"{self.cells.label(s['cell'], self.cell_type_key)}"),
                                             s["cell"])]
            w["cell"].value = s["cell"]
            w["layer"].value = s["layer"]
            w["head"].value = s["head"]
            w["method"].value = s["method"]
            w["select"].value = s["select"]
            w["top_n"].value = min(max(s["top_n"], w["top_n"].min), w["top_n"].max)
            if w["gene"].value != s["gene"]:
                w["gene"].value = s["gene"]
        finally:
            self._syncing = False

    def _refresh_widget(self):
        if self._widget is None:
            return
        t0 = time.perf_counter()
        self._sync_controls()
        try:
            v = self._compute()
        except CourseInputError as err:
            self._messages = [str(err)]
            self._msg_w.value = _message_html(self.message)
            return
        self._w["gene"].options = tuple(sorted(set(v["symbols"])))[:3000]
        self._title_w.value = f"<b>{html.escape(v['title'])}</b>"
        self._heat_w.value = plotting.figure_to_png(self.heatmap_figure(title=False), dpi=90)
        self._pairs_w.value = _html_table(
            v["pairs"][["query", "key", "attention", "planted_edge", "edge_direction"]]
            .rename(columns={"planted_edge": "edge", "edge_direction": "direction"}),
            max_rows=self._state["n_pairs"])
        s = self._state
        skey = s["cell"]
        if getattr(self, "_summary_key", None) != skey:
            pngs = self.__dict__.setdefault("_summary_pngs", OrderedDict())
            if skey not in pngs:
                pngs[skey] = plotting.figure_to_png(self._summary_figure(), dpi=70)
                while len(pngs) > 4 * self.cache_size:
                    pngs.popitem(last=False)
            self._summary_w.value = pngs[skey]
            self._summary_key = skey
        self._msg_w.value = _message_html(self.message)
        self.last_redraw_s = time.perf_counter() - t0
        self._timing_w.value = f"<small>redrawn in {self.last_redraw_s:.2f} s</small>"

    def _summary_figure(self):
        fig = plotting.figure(figsize=(7.5, 2.2 + 0.35 * self.n_layers), layout=None)  # fast
        fig.subplots_adjust(left=0.08, right=0.97, bottom=0.2, top=0.86, wspace=0.35)
        axes = fig.subplots(1, 2)
        plotting.layer_head_grid(self._summary_grid("entropy"), ax=axes[0],
                                 title="entropy (nats)", cbar_label="", cmap="viridis")
        col = "tf_attention" if "tf_attention" in self.cell_summary() else "self_attention"
        plotting.layer_head_grid(self._summary_grid(col), ax=axes[1],
                                 title="share on TFs" if col == "tf_attention" else
                                 "attention to self", cbar_label="", cmap="magma")
        return fig


# --------------------------------------------------------------------------------------------
# PerturbationExplorer
# --------------------------------------------------------------------------------------------
def _perturbed_ids(ids: np.ndarray, tokens: Sequence[int], perturb_type: str, vocab,
                   max_len: int | None) -> np.ndarray:
    """The cell's token ids after deleting / overexpressing ``tokens`` together.

    Same rules as :mod:`course_helpers.perturb` (used only to place perturbed cells on the
    embedding map): delete removes the genes; overexpress moves the present genes to the front
    (after ``<cls>``) in their original order, inserts absent ones after them and cuts the cell to
    ``max_len`` (keeping ``<eos>`` last).
    """
    ids = np.asarray(ids, dtype=np.int64)
    toks = [int(t) for t in tokens]
    if perturb_type == "delete":
        return ids[~np.isin(ids, toks)]
    cls_id = getattr(vocab, "cls_token_id", None)
    eos_id = getattr(vocab, "eos_token_id", None)
    head = [int(ids[0])] if cls_id is not None and len(ids) and ids[0] == cls_id else []
    tail = [int(ids[-1])] if eos_id is not None and len(ids) and ids[-1] == eos_id else []
    body = ids[len(head): len(ids) - len(tail)]
    present = [int(t) for t in body if int(t) in set(toks)]
    absent = [t for t in toks if t not in set(body.tolist())]
    rest = [int(t) for t in body if int(t) not in set(toks)]
    out = head + present + absent + rest
    if max_len:
        out = out[: int(max_len) - len(tail)]
    return np.asarray(out + tail, dtype=np.int64)


class PerturbationExplorer(_Explorer):
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
    >>> ex = PerturbationExplorer(model, dataset, "state", start_state="diseased",
    ...                           goal_state="healthy", genes=["NFATC4"])    # doctest: +SKIP
    >>> ex.data()["summary"]                                               # doctest: +SKIP
    >>> ex.set(genes=["GATA4", "TBX5"]).data()["synergy"]                   # doctest: +SKIP
    >>> ex.figure()                                                        # doctest: +SKIP
    """

    _controls = ("genes", "perturb_type", "cells", "goal_state", "n_cells", "n_random", "seed")

    def __init__(
        self,
        model,
        dataset,
        state_key: str,
        start_state: str | None = None,
        goal_state: str | None = None,
        *,
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
        self.vocab = vocab if vocab is not None else getattr(model, "gene_vocab", None)
        if self.vocab is None:
            raise CourseInputError(
                "The model has no gene vocabulary (model.gene_vocab). Fix: load it with "
                "course_helpers.model.load_model(...) or pass vocab=...")
        if _is_anndata(dataset):
            dataset = _tokenize_adata(dataset, self.vocab, model, [state_key])
        self.cells = _CellTable(dataset)
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
        self._max_len = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
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
                _tok, bad = _gene_tokens_safe(self.vocab, [g])
                (unknown if bad else known).append(g)
            if unknown:
                hint = "".join(_suggest(u, self.gene_options()) for u in unknown[:2])
                msgs.append(f"Not in the model's vocabulary, ignored: {', '.join(unknown)}.{hint}")
            return known
        if key == "perturb_type":
            v = str(value).lower()
            if v not in ("delete", "overexpress"):
                raise CourseInputError(
                    f"perturb_type={value!r} is not known. Fix: 'delete' or 'overexpress'.")
            return v
        if key == "cells":
            if value is None or str(value).lower() in ("all", "(all)", "all cells"):
                return "all"
            if str(value) not in self.states:
                raise CourseInputError(
                    f"No cells with {self.state_key} == {value!r}. States: "
                    f"{', '.join(self.states[:12])}." + _suggest(str(value), self.states))
            return str(value)
        if key == "goal_state":
            if value is None or str(value) in ("", "(none)", "none"):
                return None
            if str(value) not in self.states:
                raise CourseInputError(
                    f"Goal state {value!r} does not occur in column {self.state_key!r}. States: "
                    f"{', '.join(self.states[:12])}." + _suggest(str(value), self.states))
            return str(value)
        if key in ("n_cells", "n_random", "seed"):
            try:
                iv = int(value)
            except (TypeError, ValueError):
                raise CourseInputError(f"{key}={value!r} must be a whole number.") from None
            if key == "n_cells" and iv < 1:
                raise CourseInputError("n_cells=0 selects no cells (empty selection). Fix: "
                                       "choose at least 1 cell.")
            if iv < 0:
                raise CourseInputError(f"{key} must not be negative.")
            return iv
        raise AssertionError(key)  # pragma: no cover

    def gene_options(self) -> list[str]:
        """Symbols of the genes present in the cells (most frequent first; for autocomplete)."""
        if self._gene_options is None:
            ids = self.cells.all_ids()
            flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
            uniq, cnt = np.unique(flat, return_counts=True)
            counts = dict(zip(uniq.tolist(), cnt.tolist()))
            specials = {getattr(self.vocab, n, None) for n in
                        ("pad_token_id", "mask_token_id", "cls_token_id", "eos_token_id")}
            toks = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                    if t not in specials]
            syms = [str(s) for s in self.vocab.symbols(toks[:5000])]
            self._gene_options = list(dict.fromkeys(syms))
        return self._gene_options

    # -- computation -----------------------------------------------------------------------
    def _eligible(self, tokens: list[int]) -> tuple[np.ndarray, list[str]]:
        s = self._state
        msgs = []
        rows = np.arange(self.cells.n)
        if s["cells"] != "all":
            rows = rows[self._states_col == s["cells"]]
        where = f"{self.state_key} == {s['cells']!r}" if s["cells"] != "all" else "the dataset"
        if s["perturb_type"] == "delete":
            self.cells.all_ids()  # bulk read once: row-by-row access is slow for big datasets
            toks = np.asarray(tokens, dtype=np.int64)
            rows = np.asarray([r for r in rows if np.isin(self.cells.ids(r), toks).any()],
                              dtype=np.int64)
            if rows.size == 0:
                names = ", ".join(s["genes"])
                msgs.append(f"No cell of {where} expresses {names}, so nothing can be deleted. "
                            "Choose other genes or cells, or overexpress instead.")
        return rows, msgs

    def _cell_states(self) -> dict | None:
        s = self._state
        if s["goal_state"] is None or s["cells"] == "all" or s["cells"] == s["goal_state"]:
            return None
        return {"state_key": self.state_key, "start_state": s["cells"],
                "goal_state": s["goal_state"], "alt_states": []}

    def _reference(self):
        """Embeddings of the reference cells: all cells (``embeddings=``) or a per-state sample."""
        from .embed import embed_cells

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
                seqs = [list(map(int, self.cells.ids(r))) for r in rows]
                emb = embed_cells(self.model, seqs, layer=self.emb_layer,
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

    @staticmethod
    def _effect(df: pd.DataFrame, goal) -> pd.Series:
        if "shift" in df:
            return df["shift"]
        return 1.0 - df["cos_sim"]

    def _effect_label(self) -> str:
        cs = self._cell_states()
        return (f"shift towards {cs['goal_state']!r}" if cs is not None
                else "embedding change (1 − cos_sim)")

    def _compute(self) -> dict:
        import warnings

        from . import perturb as _pert
        from .embed import embed_cells

        s = self._state
        key = repr(sorted(s.items()))
        if key in self._views:
            self._views.move_to_end(key)
            return self._views[key]
        empty = {k: pd.DataFrame() for k in ("effects", "null", "summary", "moved_genes", "map",
                                             "synergy")}
        view = {"tables": empty, "messages": [], "background": None, "genes": []}
        if not s["genes"]:
            view["messages"].append("Choose at least one gene to perturb (type a symbol).")
            return self._remember(key, view)
        tokens = [int(t) for t in self.vocab.tokens(s["genes"])]
        if s["goal_state"] is not None and s["cells"] == "all":
            view["messages"].append(
                f"Choose which cells to perturb (a state other than {s['goal_state']!r}) to "
                "measure shifts towards the goal; showing the embedding change instead.")
        if s["goal_state"] is not None and s["cells"] == s["goal_state"]:
            view["messages"].append(
                f"The perturbed cells are already in the goal state {s['goal_state']!r}; "
                "showing the embedding change instead. Choose another state to perturb.")
        rows, msgs = self._eligible(tokens)
        view["messages"] += msgs
        if rows.size == 0:
            return self._remember(key, view)
        rng = np.random.default_rng(s["seed"])
        if rows.size > s["n_cells"]:
            rows = np.sort(rng.choice(rows, s["n_cells"], replace=False))
        elif rows.size < s["n_cells"]:
            view["messages"].append(f"Only {rows.size} cell(s) are eligible (n_cells="
                                    f"{s['n_cells']}).")
        rows = [int(r) for r in rows]
        cs = self._cell_states()
        common = {"cells": rows, "emb_layer": self.emb_layer, "batch_size": self.batch_size,
                      "progress": False}
        if cs is not None:
            common["state_embs"] = self._state_embs()
        tables = dict(empty)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            long = _pert.in_silico_perturb(self.model, self.cells.dataset, s["perturb_type"],
                                           genes=tokens, cell_states=cs,
                                           emb_mode="cell_and_gene", **common)
            res = long.cell_results
            null = None
            if s["n_random"] > 0:
                try:
                    null = _pert.random_gene_null(self.model, self.cells.dataset,
                                                  n_genes=s["n_random"], seed=s["seed"],
                                                  perturb_type=s["perturb_type"],
                                                  cell_states=cs, exclude=tokens, **common)
                except CourseInputError as err:
                    view["messages"].append(f"No random-gene comparison: {err}")
            synergy = None
            if len(tokens) == 2:
                try:
                    synergy = _pert.perturb_pairs(self.model, self.cells.dataset,
                                                  [tuple(tokens)], s["perturb_type"],
                                                  cell_states=cs, **common)
                except CourseInputError as err:
                    view["messages"].append(f"No synergy view: {err}")
        for w in caught:
            if "expressed in none" in str(w.message) or "genes are available" in str(w.message):
                view["messages"].append(str(w.message))
        goal = None if cs is None else cs["goal_state"]
        if cs is not None:
            res = res[res["state"] == goal]
            if null is not None:
                null = null[null["state"] == goal]
        eff = res.assign(effect=self._effect(res, goal).to_numpy())
        tables["effects"] = eff.reset_index(drop=True)
        sym_of = dict(zip(tokens, s["genes"]))
        if "perturbed_gene" not in eff:
            eff["perturbed_gene"] = eff["perturbed_token"].map(sym_of)
        # per-gene summary vs the random genes
        summ = eff.groupby("perturbed_gene", sort=False)["effect"].agg(
            n_cells="size", mean_effect="mean", sem=lambda v: float(v.std(ddof=1) /
                                                                    np.sqrt(len(v)))
            if len(v) > 1 else np.nan).reset_index().rename(columns={"perturbed_gene": "gene"})
        if null is not None and not null.empty:
            null = null.assign(effect=self._effect(null, goal).to_numpy())
            tables["null"] = null.reset_index(drop=True)
            per_gene_null = null.groupby("perturbed_token")["effect"].mean()
            summ["null_mean_effect"] = float(null["effect"].mean())
            summ["random_genes_beaten"] = [float((per_gene_null < m).mean())
                                           for m in summ["mean_effect"]]
            try:
                st = _pert.perturbation_stats(res, null=null.drop(columns=["effect"]))
                pmap = dict(zip(st["perturbed_token"], st["p_value"]))
                tok_of = dict(zip(eff["perturbed_gene"], eff["perturbed_token"]))
                summ["p_value_vs_random"] = [pmap.get(tok_of.get(g), np.nan)
                                             for g in summ["gene"]]
            except CourseInputError as err:  # pragma: no cover - defensive
                view["messages"].append(f"No statistics: {err}")
        tables["summary"] = summ
        # genes whose embeddings move most (1 - cos over cells and perturbed genes)
        mv = long.assign(change=1.0 - long["cos_sim"])
        gcol = "affected_gene" if "affected_gene" in mv else "affected_token"
        moved = (mv.groupby(gcol)["change"].agg(["mean", "size"]).rename(
            columns={"mean": "mean_change", "size": "n"}).sort_values("mean_change",
                                                                     ascending=False))
        moved.index.name = "gene"
        moved = moved.reset_index()
        # genes seen in few perturbed cells are noisy: the chart keeps those in >= half of them
        moved.attrs["min_cells"] = max(1, eff["cell_id"].nunique() // 2)
        tables["moved_genes"] = moved
        # synergy (two genes)
        if synergy is not None and not synergy.empty:
            if cs is not None:
                synergy = synergy[synergy["state"] == goal]
                ea, eb, eab = synergy["shift_a"], synergy["shift_b"], synergy["shift_ab"]
            else:
                ea, eb, eab = (1 - synergy["cos_sim_a"], 1 - synergy["cos_sim_b"],
                               1 - synergy["cos_sim_ab"])
            a, b = s["genes"][0], s["genes"][1]
            vals = {a: ea, b: eb, f"{a} + {b} together": eab,
                    "expected (additive)": ea.to_numpy() + eb.to_numpy()}
            tables["synergy"] = pd.DataFrame({
                "condition": list(vals),
                "mean": [float(np.mean(v)) for v in vals.values()],
                "sem": [float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan
                        for v in vals.values()],
                "n_cells": [len(v) for v in vals.values()],
            })
            tables["synergy"].attrs["per_cell"] = synergy.reset_index(drop=True)
            tables["synergy"].attrs["synergy_mean"] = float(np.mean(eab.to_numpy() -
                                                                    (ea.to_numpy() +
                                                                     eb.to_numpy())))
        # map: before / after (all chosen genes together)
        bg_rows, bg_xy, pca = self._background()
        orig = [list(map(int, self.cells.ids(r))) for r in rows]
        pert = [list(map(int, _perturbed_ids(np.asarray(x), tokens, s["perturb_type"],
                                             self.vocab, self._max_len))) for x in orig]
        keep = [i for i, p in enumerate(pert) if len(p) > 0]
        if keep:
            emb = embed_cells(self.model, [orig[i] for i in keep] + [pert[i] for i in keep],
                              layer=self.emb_layer, batch_size=self.batch_size, progress=False)
            k = len(keep)
            xy = pca.transform(emb)
            ids = self.cells.meta["cell_id"].tolist() if "cell_id" in self.cells.meta else None
            m = pd.DataFrame({
                "row": [rows[i] for i in keep],
                "cell_id": [ids[rows[i]] if ids else str(rows[i]) for i in keep],
                "pc1_before": xy[:k, 0], "pc2_before": xy[:k, 1],
                "pc1_after": xy[k:, 0], "pc2_after": xy[k:, 1],
            })
            if cs is not None:
                g = np.asarray(self._state_embs()[goal], dtype=np.float64)

                def cos(a):
                    a = np.asarray(a, dtype=np.float64)
                    return a @ g / (np.linalg.norm(a, axis=1) * np.linalg.norm(g))

                m["cos_goal_before"] = cos(emb[:k])
                m["cos_goal_after"] = cos(emb[k:])
            tables["map"] = m
        view.update(tables=tables, background=(bg_rows, bg_xy), genes=list(s["genes"]),
                    rows=rows)
        return self._remember(key, view)

    def _remember(self, key: str, view: dict) -> dict:
        self._views[key] = view
        while len(self._views) > 8:
            self._views.popitem(last=False)
        return view

    def _view_messages(self) -> list[str]:
        try:
            return self._compute()["messages"]
        except CourseInputError as err:
            return [str(err)]

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
            ``synergy`` (two genes: each alone, together and the additive expectation).
            Empty DataFrames where there is nothing to show (see :attr:`message`).
        """
        try:
            v = self._compute()
        except CourseInputError as err:
            self._messages = [str(err)]
            return {k: pd.DataFrame() for k in ("effects", "null", "summary", "moved_genes",
                                                "map", "synergy")}
        return {k: t.copy() for k, t in v["tables"].items()}

    # -- figures ---------------------------------------------------------------------------
    def figure(self, **controls):
        """Static rendering of the current view as a matplotlib Figure (2 x 2 panels).

        Keyword arguments are passed to :meth:`set` first.
        """
        if controls:
            self.set(**controls)
        try:
            v = self._compute()
        except CourseInputError as err:
            return plotting.message_figure(str(err), title="PerturbationExplorer")
        t = v["tables"]
        if t["effects"].empty:
            return plotting.message_figure(self.message or "Nothing to show.",
                                           title="PerturbationExplorer")
        s = self._state
        fig, axes = plotting.new_figure(2, 2, figsize=(11.5, 8.4))
        label = self._effect_label()
        eff = t["effects"]
        null = t["null"]["effect"] if not t["null"].empty else None
        ax = axes[0, 0]
        genes = list(dict.fromkeys(eff["perturbed_gene"]))
        by_gene = {f"{g} ({s['perturb_type']})": eff.loc[eff["perturbed_gene"] == g, "effect"]
                   for g in genes}
        plotting.shift_histogram(by_gene, null, ax=ax, xlabel=label)
        ax.set_title(f"{label}: chosen gene(s) vs random genes, same cells", fontsize=10)
        mv = t["moved_genes"]
        k = int(mv.attrs.get("min_cells", 1))
        mv = mv[mv["n"] >= k]
        plotting.top_genes_bar(mv.set_index("gene")["mean_change"], ax=axes[0, 1],
                               n=15, xlabel="mean embedding change (1 − cos)",
                               title="genes whose embeddings move most"
                               + (f" (in ≥ {k} cells)" if k > 1 else ""),
                               color="#009E73")
        bg_rows, bg_xy = v["background"]
        m = t["map"]
        groups = self._states_col[bg_rows]
        together = " + ".join(genes) if len(genes) > 1 else genes[0]
        plotting.embedding_map(
            bg_xy, groups,
            before=m[["pc1_before", "pc2_before"]].to_numpy() if not m.empty else None,
            after=m[["pc1_after", "pc2_after"]].to_numpy() if not m.empty else None,
            ax=axes[1, 0],
            title=f"cells before → after ({together}, {s['perturb_type']}) on a PCA map")
        ax = axes[1, 1]
        if not t["synergy"].empty:
            plotting.synergy_bars(t["synergy"], ax=ax, ylabel=f"mean {label}",
                                  title=f"synergy: {together} together vs each alone")
        else:
            summ = t["summary"]
            ax.axis("off")
            ax.set_title("summary (per gene)", fontsize=10)
            cols = [c for c in ("gene", "n_cells", "mean_effect", "null_mean_effect",
                                "random_genes_beaten", "p_value_vs_random") if c in summ]
            cell_text = [[f"{x:.3g}" if isinstance(x, float) else str(x) for x in row]
                         for row in summ[cols].head(8).itertuples(index=False)]
            if cell_text:
                tab = ax.table(cellText=cell_text, colLabels=[c.replace("_", " ") for c in cols],
                               loc="center", fontsize=7)
                tab.auto_set_font_size(False)
                tab.set_fontsize(7)
                tab.scale(1, 1.3)
            ax.text(0.5, 0.05, "pick exactly two genes to see the synergy view",
                    ha="center", fontsize=8, color="#555555", transform=ax.transAxes)
        title = (f"{s['perturb_type']} {', '.join(genes)} in {len(v['rows'])} cell(s) of "
                 f"{'all states' if s['cells'] == 'all' else repr(s['cells'])}")
        if s["goal_state"]:
            title += f"; goal state {s['goal_state']!r}"
        fig.suptitle(title, fontsize=11)
        return fig

    # -- widget ----------------------------------------------------------------------------
    def _build_widget(self):
        import ipywidgets as W

        s = self._state
        lay = W.Layout
        self._w = w = {}
        w["gene_box"] = W.Combobox(placeholder="type a gene symbol, Enter to add",
                                   options=tuple(self.gene_options()), ensure_option=False,
                                   description="add gene", continuous_update=False,
                                   layout=lay(width="300px")).add_class("ch-gene")
        w["genes"] = W.TagsInput(value=list(s["genes"]), allow_duplicates=False,
                                 layout=lay(width="420px")).add_class("ch-genes")
        w["perturb_type"] = W.ToggleButtons(options=["delete", "overexpress"],
                                            value=s["perturb_type"], description="perturb",
                                            style={"button_width": "100px",
                                                   "description_width": "initial"})
        w["cells"] = W.Dropdown(options=["all"] + self.states, value=s["cells"],
                                description="cells", layout=lay(width="260px"))
        w["goal_state"] = W.Dropdown(options=["(none)"] + self.states,
                                     value=s["goal_state"] or "(none)", description="goal",
                                     layout=lay(width="260px"))
        w["n_cells"] = W.IntSlider(value=s["n_cells"], min=1, max=max(1, min(200, self.cells.n)),
                                   description="n cells", continuous_update=False)
        w["n_random"] = W.IntSlider(value=s["n_random"], min=0, max=100,
                                    description="random genes", continuous_update=False,
                                    style={"description_width": "initial"})
        run = W.Button(description="Run", button_style="primary", icon="play")
        run.add_class("ch-run")
        self._status_w = W.HTML().add_class("ch-status")
        self._msg_w = W.HTML(layout=lay(width="100%")).add_class("ch-message")
        self._fig_w = W.Image(format="png", layout=lay(max_width="100%")).add_class("ch-figure")
        self._table_w = W.HTML().add_class("ch-summary")

        def add_gene(change):
            g = str(change["new"]).strip()
            if not g or self._syncing:
                return
            self._safe(self.set, genes=[*self._state["genes"], g])
            self._syncing = True
            try:
                w["genes"].value = list(self._state["genes"])
                w["gene_box"].value = ""
            finally:
                self._syncing = False
            self._msg_w.value = _message_html("\n".join(self._messages)) if self._messages \
                else _message_html("Genes changed: press Run.")

        w["gene_box"].observe(add_gene, names="value")

        def on_change(name):
            def handler(change):
                if self._syncing:
                    return
                val = change["new"]
                if name == "goal_state" and val == "(none)":
                    val = None
                self._safe(self.set, **{name: val})
                self._msg_w.value = _message_html("\n".join(self._messages)
                                                  or "Controls changed: press Run.")
            return handler

        for name in ("genes", "perturb_type", "cells", "goal_state", "n_cells", "n_random"):
            w[name].observe(on_change(name), names="value")
        run.on_click(lambda _: self._safe(self._refresh_widget))
        root = W.VBox([
            W.HTML("<b>PerturbationExplorer</b>"),
            W.HBox([w["gene_box"], w["genes"]]),
            W.HBox([w["perturb_type"], w["cells"], w["goal_state"]]),
            W.HBox([w["n_cells"], w["n_random"], run, self._status_w]),
            self._msg_w, self._fig_w, self._table_w,
        ])
        root.add_class("ch-explorer")
        return root

    def _refresh_widget(self):
        if self._widget is None:
            return
        t0 = time.perf_counter()
        self._status_w.value = "<i>running…</i>"
        fig = self._safe(self.figure)
        if fig is not None:
            self._fig_w.value = plotting.figure_to_png(fig, dpi=75)
        summ = self.data()["summary"] if self._state["genes"] else pd.DataFrame()
        self._table_w.value = _html_table(summ) if not summ.empty else ""
        self._msg_w.value = _message_html(self.message)
        self.last_redraw_s = time.perf_counter() - t0
        self._status_w.value = f"<small>done in {self.last_redraw_s:.1f} s</small>"
