"""Drawing the explorers' views: matplotlib figures and the small HTML pieces of the widgets.

Each function takes the tables an explorer has already computed and only lays them out, using
the plot primitives of :mod:`course_helpers.plotting`; nothing here computes an analysis.

Examples
--------
>>> import pandas as pd
>>> "<table" in _html_table(pd.DataFrame({"gene": ["GATA4"], "effect": [0.123456]}))
True
>>> _html_table(pd.DataFrame())
'<i>nothing to show</i>'
>>> "ok" in _message_html(""), "&#9888;" in _message_html("careful")
(True, True)
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .. import plotting


# --------------------------------------------------------------------------------------------
# HTML pieces of the live widgets
# --------------------------------------------------------------------------------------------
def _html_table(df: pd.DataFrame, *, max_rows: int = 30, css_class: str = "ch-table") -> str:
    """A compact HTML table (floats to 4 significant digits, ``True`` as a star)."""
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
    """The widget's message line: a green tick when ``text`` is empty, else a warning box."""
    if not text:
        return "<span style='color:#2e7d32'>&#10003; ok</span>"
    return ("<div style='color:#8a5300;background:#fff4e0;border-left:4px solid #e69f00;"
            f"padding:4px 8px;white-space:pre-wrap'>&#9888; {html.escape(text)}</div>")


def _warning_title(fig, message: str) -> None:
    if message:
        fig.suptitle("⚠ " + message.splitlines()[0][:160], fontsize=8, color="#8A5300")


# --------------------------------------------------------------------------------------------
# AttentionExplorer
# --------------------------------------------------------------------------------------------
def _draw_heatmap(view: dict, method: str, ax, title) -> None:
    focus = view["focus"]
    plotting.attention_heatmap(view["heatmap"], ax=ax, title=title,
                               highlight=[view["symbols"][focus]] if focus is not None else (),
                               marks=view["marks"], vmin=None,
                               cbar_label=f"attention ({method}-based)")


def _attention_heatmap_figure(view: dict, method: str, *, title: bool = True):
    """Only the heatmap of an AttentionExplorer view, with fixed margins (fast redraws)."""
    n = len(view["sel"])
    # fixed margins (no layout engine): redraws stay fast in the live widget
    chars = max((len(x) for x in view["heatmap"].index), default=4)
    fs = 8 if n <= 25 else 6 if n <= 45 else 4
    lab = 0.1 + 0.0085 * fs * chars  # tick-label room (inches)
    cell = 0.26 if n <= 25 else 0.19 if n <= 45 else 0.12
    w_in = lab + 0.35 + cell * n + 1.3
    h_in = lab + 0.35 + cell * n + 0.35
    fig = plotting.figure(figsize=(w_in, h_in), layout=None)
    fig.subplots_adjust(left=(lab + 0.35) / w_in, right=1 - 1.3 / w_in,
                        bottom=(lab + 0.35) / h_in, top=1 - 0.35 / h_in)
    ax = fig.add_subplot()
    _draw_heatmap(view, method, ax, None)
    if title:
        ax.set_title(view["title"], fontsize=9)
    return fig


def _share_panel(share_col: str) -> tuple[str, str]:
    """Title and colour-bar label of the second layer x head panel."""
    if share_col == "tf_attention":
        return "share of attention on TFs (this cell)", "TF share"
    return "attention to itself (no TF list)", "self share"


def _attention_overview_figure(view: dict, state: dict, grids: dict, share_col: str,
                              message: str = ""):
    """Heatmap + layer x head grids (entropy and TF/self share) of an AttentionExplorer view.

    ``grids`` maps a summary column (``entropy``, ``share_col``) to a layer x head DataFrame.
    """
    n = len(view["sel"])
    side = min(3.2 + 0.24 * n, 10)
    fig = plotting.figure(figsize=(side + 4.6, max(side, 6.2)))
    gs = fig.add_gridspec(2, 2, width_ratios=[side, 4.2])
    _draw_heatmap(view, state["method"], fig.add_subplot(gs[:, 0]), view["title"])
    sel = (None if state["attn_layer"] == "all" else state["attn_layer"],
           None if state["head"] == "mean" else state["head"])
    plotting.layer_head_grid(grids["entropy"], ax=fig.add_subplot(gs[0, 1]), selected=sel,
                             title="entropy of attention (nats; this cell)",
                             cbar_label="entropy", cmap="viridis")
    title, label = _share_panel(share_col)
    plotting.layer_head_grid(grids[share_col], ax=fig.add_subplot(gs[1, 1]), selected=sel,
                             title=title, cbar_label=label, cmap="magma")
    _warning_title(fig, message)
    return fig


def _attention_summary_figure(grids: dict, share_col: str, n_layers: int):
    """The widget's small layer x head panel pair (entropy, TF/self share) of one cell."""
    fig = plotting.figure(figsize=(7.5, 2.2 + 0.35 * n_layers), layout=None)  # fast
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.2, top=0.86, wspace=0.35)
    axes = fig.subplots(1, 2)
    plotting.layer_head_grid(grids["entropy"], ax=axes[0], title="entropy (nats)",
                             cbar_label="", cmap="viridis")
    plotting.layer_head_grid(grids[share_col], ax=axes[1],
                             title="share on TFs" if share_col == "tf_attention" else
                             "attention to self", cbar_label="", cmap="magma")
    return fig


# --------------------------------------------------------------------------------------------
# PerturbationExplorer
# --------------------------------------------------------------------------------------------
def _summary_table(ax, summ: pd.DataFrame) -> None:
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


def _perturbation_figure(tables: dict, background, state: dict, *, effect_label: str,
                        background_groups: np.ndarray, n_rows: int, min_cells: int = 1):
    """The PerturbationExplorer's 2 x 2 panels.

    Effects of the chosen genes vs random genes, genes whose embeddings move most (seen in at
    least ``min_cells`` cells), the cells before -> after on the PCA map (``background`` =
    ``(rows, xy)``, coloured by ``background_groups``) and the synergy bars (two genes) or the
    per-gene summary table.
    """
    fig, axes = plotting.new_figure(2, 2, figsize=(11.5, 8.4))
    eff = tables["effects"]
    null = tables["null"]["effect"] if not tables["null"].empty else None
    genes = list(dict.fromkeys(eff["perturbed_gene"]))
    ptype = state["perturb_type"]
    by_gene = {f"{g} ({ptype})": eff.loc[eff["perturbed_gene"] == g, "effect"] for g in genes}
    plotting.shift_histogram(by_gene, null, ax=axes[0, 0], xlabel=effect_label)
    axes[0, 0].set_title(f"{effect_label}: chosen gene(s) vs random genes, same cells",
                         fontsize=10)
    mv = tables["moved_genes"]
    mv = mv[mv["n"] >= min_cells]
    plotting.top_genes_bar(mv.set_index("gene")["mean_change"], ax=axes[0, 1],
                           n=15, xlabel="mean embedding change (1 − cos)",
                           title="genes whose embeddings move most"
                           + (f" (in ≥ {min_cells} cells)" if min_cells > 1 else ""),
                           color="#009E73")
    _bg_rows, bg_xy = background
    m = tables["map"]
    together = " + ".join(genes) if len(genes) > 1 else genes[0]
    plotting.embedding_map(
        bg_xy, background_groups,
        before=m[["pc1_before", "pc2_before"]].to_numpy() if not m.empty else None,
        after=m[["pc1_after", "pc2_after"]].to_numpy() if not m.empty else None,
        ax=axes[1, 0], title=f"cells before → after ({together}, {ptype}) on a PCA map")
    if not tables["synergy"].empty:
        plotting.synergy_bars(tables["synergy"], ax=axes[1, 1], ylabel=f"mean {effect_label}",
                              title=f"synergy: {together} together vs each alone")
    else:
        _summary_table(axes[1, 1], tables["summary"])
    title = (f"{ptype} {', '.join(genes)} in {n_rows} cell(s) of "
             f"{'all states' if state['cells'] == 'all' else repr(state['cells'])}")
    if state["goal_state"]:
        title += f"; goal state {state['goal_state']!r}"
    fig.suptitle(title, fontsize=11)
    return fig
