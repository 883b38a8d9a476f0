"""Matplotlib helpers shared by the chapters and the widgets.

Every function draws into a given ``ax`` (or makes a new figure when ``ax`` is None) and returns
the ``Axes``, so figures compose freely. Figures are ``matplotlib.figure.Figure`` objects made
without ``pyplot``: nothing is shown twice in a notebook, nothing leaks between calls, and they
display as PNG under any backend (also ``Agg`` in the headless book build).

Functions
---------
* :func:`figure` / :func:`new_figure` - a figure (with a grid of axes) that notebooks show as PNG
  under any backend.
* :func:`attention_heatmap` - gene x gene attention among a few genes, labelled by symbol.
* :func:`layer_head_grid` - one number per (layer, head), e.g. attention entropy.
* :func:`shift_histogram` - distribution of perturbation effects, optionally against a null.
* :func:`top_genes_bar` - horizontal bar chart of the genes with the largest values.
* :func:`embedding_map` - cells on a 2-D map, with before -> after arrows for perturbed cells.
* :func:`synergy_bars` - effect of gene A, gene B, A + B together and the additive expectation.
* :func:`message_figure` - a figure that only says something (empty selections in static pages).
* :func:`figure_to_png` - PNG bytes of a figure (for ``ipywidgets.Image``).
* :func:`glue` / :func:`verdict` - computed numbers and verdict sentences for the chapter prose
  (MyST-NB glue; the book never types a result by hand).

This module imports only :mod:`course_helpers._utils` (layer rule in CONTRIBUTING.md).

Examples
--------
>>> import numpy as np
>>> from course_helpers.plotting import attention_heatmap
>>> ax = attention_heatmap(np.eye(3), ["GATA4", "TBX5", "NKX2-5"], title="toy")
>>> [t.get_text() for t in ax.get_xticklabels()]
['GATA4', 'TBX5', 'NKX2-5']
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ._utils import CourseInputError

__all__ = [
    "STATE_COLORS",
    "attention_heatmap",
    "embedding_map",
    "figure",
    "figure_to_png",
    "glue",
    "layer_head_grid",
    "message_figure",
    "new_figure",
    "shift_histogram",
    "synergy_bars",
    "top_genes_bar",
    "verdict",
]

#: Colour cycle used for cell states / cell types (colour-blind friendly, Okabe-Ito + extras).
STATE_COLORS = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#999999", "#882255", "#44AA99", "#117733",
)


_FIGURE_CLASS = None


def figure(figsize=(6.0, 4.0), layout: str | None = "constrained", **kwargs):
    """A new figure, not registered with pyplot, that notebooks show as a PNG.

    It is a ``matplotlib.figure.Figure`` subclass with ``_repr_png_``, so it displays as the
    value of a cell (or with ``display(fig)``) under any matplotlib backend, including ``Agg``
    in headless book builds, and never twice.

    Examples
    --------
    >>> fig = figure(figsize=(2, 1))
    >>> isinstance(fig, __import__("matplotlib.figure").figure.Figure), fig._repr_png_()[:4]
    (True, b'\x89PNG')
    """
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        from matplotlib.figure import Figure

        class CourseFigure(Figure):
            """A Figure that IPython displays as PNG without pyplot."""

            def _repr_png_(self):
                return figure_to_png(self, dpi=100)

        _FIGURE_CLASS = CourseFigure
    return _FIGURE_CLASS(figsize=figsize, layout=layout, **kwargs)


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=None, squeeze: bool = True, **kwargs):
    """A new figure (see :func:`figure`) and its axes, like ``plt.subplots``.

    Returns
    -------
    fig, axes
        As ``plt.subplots`` returns them.

    Examples
    --------
    >>> fig, ax = new_figure(figsize=(3, 2))
    >>> type(fig).__name__
    'CourseFigure'
    """
    if figsize is None:
        figsize = (4.2 * ncols, 3.6 * nrows)
    fig = figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    return fig, axes


def _ax(ax, figsize=(4.5, 4.0)):
    if ax is not None:
        return ax
    _, ax = new_figure(figsize=figsize)
    return ax


def _labels(ax, title=None, xlabel=None, ylabel=None):
    """Axis labels and a small title (the course's figure style); ``None`` leaves one unset."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def attention_heatmap(
    matrix,
    labels: Sequence[str] | None = None,
    *,
    col_labels: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    highlight: Sequence[str] = (),
    marks=None,
    cmap: str = "viridis",
    vmin: float | None = 0.0,
    vmax: float | None = None,
    colorbar: bool = True,
    cbar_label: str = "attention",
):
    """Heatmap of attention among genes: row = query (attending gene), column = key.

    Parameters
    ----------
    matrix
        ``(n, m)`` array or DataFrame (its index/columns give the labels when ``labels`` is None).
    labels, col_labels
        Row labels (gene symbols) and column labels (default: the row labels).
    ax
        Axes to draw into; a new figure when None.
    title
        Axes title.
    highlight
        Labels to print in bold red (e.g. a searched gene).
    marks
        Optional boolean ``(n, m)`` array; marked cells get a small white dot (e.g. planted
        edges of the ground truth).
    cmap, vmin, vmax
        Colour map and limits (``vmax=None``: the largest value).
    colorbar, cbar_label
        Draw a colour bar with this label.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = attention_heatmap([[0.9, 0.1], [0.4, 0.6]], ["SPI1", "CEBPA"], highlight=["SPI1"])
    >>> ax.get_ylabel()
    'query (attending gene)'
    """
    if isinstance(matrix, pd.DataFrame):
        if labels is None:
            labels = [str(x) for x in matrix.index]
        if col_labels is None:
            col_labels = [str(x) for x in matrix.columns]
        matrix = matrix.to_numpy()
    mat = np.asarray(matrix, dtype=float)
    if mat.ndim != 2:
        raise CourseInputError(f"attention_heatmap needs a 2-D matrix, got shape {mat.shape}.")
    n, m = mat.shape
    labels = [str(x) for x in (labels if labels is not None else range(n))]
    col_labels = [str(x) for x in (col_labels if col_labels is not None else labels)]
    if len(labels) != n or len(col_labels) != m:
        raise CourseInputError(
            f"attention_heatmap: {len(labels)} row / {len(col_labels)} column labels for a "
            f"{n} x {m} matrix. Fix: pass one label per row and column."
        )
    ax = _ax(ax, figsize=(0.28 * m + 2.5, 0.28 * n + 1.8))
    finite = mat[np.isfinite(mat)]
    top = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    im = ax.imshow(mat, cmap=cmap, vmin=vmin, vmax=top if top > (vmin or 0) else None,
                   aspect="auto", interpolation="nearest")
    fontsize = 8 if max(n, m) <= 25 else 6 if max(n, m) <= 45 else 4
    ax.set_xticks(np.arange(m), labels=col_labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(np.arange(n), labels=labels, fontsize=fontsize)
    hl = {str(h) for h in highlight}
    for tick in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        if tick.get_text() in hl:
            tick.set_color("#C00000")
            tick.set_fontweight("bold")
    if marks is not None:
        mk = np.asarray(marks, dtype=bool)
        if mk.shape == mat.shape and mk.any():
            rr, cc = np.nonzero(mk)
            ax.scatter(cc, rr, s=10, c="white", edgecolors="black", linewidths=0.4,
                       label="planted edge")
    _labels(ax, title, "key (gene attended to)", "query (attending gene)")
    if colorbar:
        _plain_ticks(ax.figure.colorbar(im, ax=ax, shrink=0.8, label=cbar_label))
    return ax


def layer_head_grid(
    values,
    *,
    ax=None,
    title: str | None = None,
    cbar_label: str = "",
    cmap: str = "magma",
    selected: tuple | None = None,
    fmt: str = "{:.3g}",
):
    """One value per (layer, head) as an annotated grid.

    Parameters
    ----------
    values
        DataFrame with layers as rows and heads as columns (or a 2-D array).
    selected
        ``(layer, head)`` to outline (``head`` may be None to outline the whole layer row,
        ``layer`` None for a whole head column).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = layer_head_grid(np.arange(6).reshape(2, 3), title="entropy")
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('head', 'layer')
    """
    if isinstance(values, pd.DataFrame):
        rows = [str(x) for x in values.index]
        cols = [str(x) for x in values.columns]
        mat = values.to_numpy(dtype=float)
    else:
        mat = np.asarray(values, dtype=float)
        rows = [str(i) for i in range(mat.shape[0])]
        cols = [str(j) for j in range(mat.shape[1])]
    ax = _ax(ax, figsize=(0.6 * len(cols) + 2.2, 0.45 * len(rows) + 1.5))
    finite = mat[np.isfinite(mat)]
    im = ax.imshow(mat, cmap=cmap, aspect="auto", interpolation="nearest",
                   vmin=float(finite.min()) if finite.size else None,
                   vmax=float(finite.max()) if finite.size else None)
    ax.set_xticks(np.arange(len(cols)), labels=cols, fontsize=8)
    ax.set_yticks(np.arange(len(rows)), labels=rows, fontsize=8)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if mat.size <= 64 and finite.size:
        mid = (float(finite.min()) + float(finite.max())) / 2
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                v = mat[i, j]
                if np.isfinite(v):
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                            color="white" if v < mid else "black")
    if selected is not None:
        from matplotlib.patches import Rectangle

        li, hi = selected
        n_rows, n_cols = mat.shape
        x0, w = (-0.5, n_cols) if hi is None else (hi - 0.5, 1)
        y0, h = (-0.5, n_rows) if li is None else (li - 0.5, 1)
        ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor="#00C0FF", linewidth=2.2))
    _labels(ax, title)
    cb = ax.figure.colorbar(im, ax=ax, shrink=0.8, label=cbar_label)
    _plain_ticks(cb)
    return ax


def _plain_ticks(colorbar) -> None:
    """No '1e-5 + 2.89' offset on a colour bar: print the values themselves."""
    fmt = colorbar.ax.yaxis.get_major_formatter()
    if hasattr(fmt, "set_useOffset"):
        fmt.set_useOffset(False)


def shift_histogram(
    values,
    null=None,
    *,
    ax=None,
    title: str | None = None,
    xlabel: str = "effect",
    label: str = "selected gene(s)",
    null_label: str = "random genes",
    bins: int = 20,
):
    """Histogram of per-cell perturbation effects, optionally over a null distribution.

    ``values`` is one array, or a dict ``{label: array}`` for several genes (one colour each).
    Dashed vertical lines mark the means.

    Examples
    --------
    >>> ax = shift_histogram([0.1, 0.2, 0.15], null=[0.0, 0.01, -0.02], xlabel="shift")
    >>> ax.get_xlabel()
    'shift'
    >>> ax = shift_histogram({"GATA4": [0.1, 0.2], "TBX5": [0.0, 0.05]})
    >>> sorted(t.get_text().split(" (")[0] for t in ax.get_legend().get_texts())
    ['GATA4', 'TBX5']
    """
    ax = _ax(ax)
    groups = dict(values) if isinstance(values, Mapping) else {label: values}
    clean = {}
    for k, v in groups.items():
        a = np.asarray(v, dtype=float).reshape(-1)
        clean[str(k)] = a[np.isfinite(a)]
    nv = None if null is None else np.asarray(null, dtype=float).reshape(-1)
    if nv is not None:
        nv = nv[np.isfinite(nv)]
    parts = [a for a in clean.values() if a.size] + ([nv] if nv is not None and nv.size else [])
    if not parts:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    else:
        both = np.concatenate(parts)
        lo, hi = float(both.min()), float(both.max())
        if hi <= lo:
            lo, hi = lo - 1e-6, hi + 1e-6
        edges = np.linspace(lo, hi, bins + 1)
        if nv is not None and nv.size:
            ax.hist(nv, bins=edges, color="#999999", alpha=0.6, density=True,
                    label=f"{null_label} (n={nv.size})")
            ax.axvline(float(nv.mean()), color="#555555", linestyle="--", linewidth=1)
        colors = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
        for i, (k, a) in enumerate(clean.items()):
            if not a.size:
                continue
            col = colors[i % len(colors)]
            ax.hist(a, bins=edges, color=col, alpha=0.6, density=True,
                    label=f"{k} (n={a.size})")
            ax.axvline(float(a.mean()), color=col, linestyle="--", linewidth=1.2)
        ax.legend(fontsize=7, loc="best")
    return _labels(ax, title, xlabel, "density")


def top_genes_bar(
    values,
    *,
    ax=None,
    title: str | None = None,
    xlabel: str = "value",
    n: int = 15,
    highlight: Sequence[str] = (),
    color: str = "#0072B2",
):
    """Horizontal bars for the ``n`` largest values of a Series indexed by gene symbol.

    Examples
    --------
    >>> s = pd.Series([0.3, 0.1, 0.2], index=["GATA4", "ACTB", "TBX5"])
    >>> ax = top_genes_bar(s, n=2)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['GATA4', 'TBX5']
    """
    ax = _ax(ax)
    s = pd.Series(values).dropna().sort_values(ascending=False).head(int(n))
    if s.empty:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    else:
        y = np.arange(len(s))
        hl = {str(h) for h in highlight}
        colors = ["#C00000" if str(g) in hl else color for g in s.index]
        ax.barh(y, s.to_numpy(dtype=float), color=colors)
        ax.set_yticks(y, labels=[str(g) for g in s.index], fontsize=8)
        ax.invert_yaxis()
    return _labels(ax, title, xlabel)


def embedding_map(
    coords,
    groups=None,
    *,
    before=None,
    after=None,
    ax=None,
    title: str | None = None,
    xlabel: str = "PC1",
    ylabel: str = "PC2",
    palette: Mapping[str, str] | None = None,
):
    """Cells on a 2-D map coloured by group, with arrows from ``before`` to ``after``.

    Parameters
    ----------
    coords
        ``(n_cells, 2)`` background cells.
    groups
        Group (state / cell type) of each background cell, for colours and the legend.
    before, after
        ``(k, 2)`` positions of perturbed cells before and after the perturbation.

    Examples
    --------
    >>> ax = embedding_map(np.random.default_rng(0).normal(size=(10, 2)), ["a"] * 5 + ["b"] * 5,
    ...                    before=[[0, 0]], after=[[1, 1]])
    >>> ax.get_xlabel()
    'PC1'
    """
    ax = _ax(ax)
    xy = np.asarray(coords, dtype=float).reshape(-1, 2)
    if groups is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=8, c="#BBBBBB", linewidths=0)
    else:
        g = np.asarray([str(x) for x in groups], dtype=object)
        names = list(dict.fromkeys(g.tolist()))
        palette = dict(palette or {})
        for i, name in enumerate(names):
            col = palette.get(name, STATE_COLORS[i % len(STATE_COLORS)])
            sel = g == name
            ax.scatter(xy[sel, 0], xy[sel, 1], s=8, c=col, alpha=0.45, linewidths=0, label=name)
    if before is not None and after is not None:
        b = np.asarray(before, dtype=float).reshape(-1, 2)
        a = np.asarray(after, dtype=float).reshape(-1, 2)
        ax.scatter(b[:, 0], b[:, 1], s=22, facecolors="none", edgecolors="black",
                   linewidths=0.8, label="before")
        ax.scatter(a[:, 0], a[:, 1], s=22, c="#C00000", marker="x", linewidths=1.0,
                   label="after")
        for (x0, y0), (x1, y1) in zip(b, a):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": "#C00000", "lw": 0.7, "alpha": 0.8})
    ax.legend(fontsize=7, loc="best", markerscale=1.5)
    return _labels(ax, title, xlabel, ylabel)


def synergy_bars(table: pd.DataFrame, *, ax=None, title: str | None = None,
                 ylabel: str = "mean effect"):
    """Bars for the effect of each gene alone, both together and the additive expectation.

    Parameters
    ----------
    table
        DataFrame with columns ``condition`` and ``mean`` (optional ``sem`` for error bars),
        e.g. rows ``GATA4``, ``TBX5``, ``GATA4 + TBX5``, ``expected (additive)``.

    Examples
    --------
    >>> t = pd.DataFrame({"condition": ["A", "B", "A + B", "expected (additive)"],
    ...                   "mean": [0.1, 0.2, 0.5, 0.3]})
    >>> ax = synergy_bars(t)
    >>> [x.get_text() for x in ax.get_xticklabels()]
    ['A', 'B', 'A + B', 'expected (additive)']
    """
    ax = _ax(ax)
    x = np.arange(len(table))
    colors = ["#0072B2", "#56B4E9", "#D55E00", "#999999", "#009E73"]
    err = table["sem"].to_numpy(dtype=float) if "sem" in table else None
    ax.bar(x, table["mean"].to_numpy(dtype=float), yerr=err, capsize=3,
           color=[colors[i % len(colors)] for i in range(len(table))])
    ax.set_xticks(x, labels=[str(c) for c in table["condition"]], rotation=20, ha="right",
                  fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)
    return _labels(ax, title, ylabel=ylabel)


def message_figure(text: str, *, title: str | None = None, figsize=(6.0, 1.6)):
    """A figure that shows only a message (used when a selection is empty or invalid).

    Examples
    --------
    >>> fig = message_figure("Gene 'FOO' is not in the vocabulary.")
    >>> fig.axes[0].texts[0].get_text().startswith("Gene")
    True
    """
    fig, ax = new_figure(figsize=figsize)
    ax.axis("off")
    wrapped = "\n".join(textwrap.wrap(str(text), 90)) or " "
    ax.text(0.5, 0.5, wrapped, ha="center", va="center", fontsize=10, color="#8A5300",
            transform=ax.transAxes, wrap=True)
    _labels(ax, title)
    return fig


def figure_to_png(fig, dpi: int = 90) -> bytes:
    """PNG bytes of a figure (for ``ipywidgets.Image`` or ``IPython.display.Image``).

    Examples
    --------
    >>> fig, ax = new_figure(figsize=(1, 1))
    >>> figure_to_png(fig)[:4]
    b'\\x89PNG'
    """
    buf = io.BytesIO()
    # fast zlib level: these PNGs are redrawn on every control change in the widgets
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Prose helpers: the book's text quotes the computation, never a typed number
# --------------------------------------------------------------------------------------------

def _as_text(value, fmt: str = "") -> str:
    if isinstance(value, np.generic):  # np.float64(0.5) -> 0.5 (MyST-NB reads the text form)
        value = value.item()
    if fmt:
        return format(value, fmt)
    if isinstance(value, float):
        return format(value, ".3g")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1_000:
        return format(value, ",")
    return str(value)


def glue(name: str, value, fmt: str = "") -> str:
    """Format ``value`` and store it under ``name`` for the chapter's markdown.

    The markdown quotes it with ``{glue:text}`name``` (MyST-NB), so the page shows what this run
    computed; nothing is displayed in the notebook itself. Outside a Jupyter kernel, or where
    MyST-NB is not installed (e.g. Colab), nothing is stored and the text is only returned.

    Parameters
    ----------
    name : str
        Key used in the markdown (letters, digits, ``_``; unique within the chapter).
    value : object
        A number, a string or anything with a ``format``; numpy scalars are converted first.
    fmt : str, optional
        Python format spec (``".2f"``, ``".1%"``, ``",d"`` ...). Default: ``str`` for strings
        and integers (with thousands separators), 3 significant digits for floats.

    Returns
    -------
    str
        The text that the page shows, so a hidden check can assert on exactly that.

    Examples
    --------
    >>> glue("gap_closed", np.float64(0.123456), ".1%")
    '12.3%'
    >>> glue("n_genes", 2000)
    '2,000'
    """
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise CourseInputError(
            f"glue name {name!r} must be a non-empty string of letters, digits and '_' "
            "(it is written inside {glue:text}`...` in the markdown)."
        )
    text = _as_text(value, fmt)
    try:
        from IPython import get_ipython
        from myst_nb import glue as _myst_glue
    except ImportError:  # no book tooling here (e.g. Colab): the prose is not rendered
        return text
    if get_ipython() is None:  # plain Python: IPython.display would print the raw bundle
        return text
    _myst_glue(name, text, display=False)
    return text


def verdict(name: str, condition, if_true: str, if_false: str) -> bool:
    """Glue the sentence that matches ``condition`` and return the condition.

    Use it where a result could come out either way with another model or seed: the prose
    quotes the verdict instead of assuming one outcome.

    Examples
    --------
    >>> verdict("driver_found", 3 <= 10, "recovers the driver", "misses the driver")
    True
    """
    cond = bool(condition)
    glue(name, if_true if cond else if_false)
    return cond
