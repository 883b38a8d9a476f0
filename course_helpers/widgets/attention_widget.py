"""The live ipywidgets view of the AttentionExplorer (controls, redraws, bertviz button).

``_AttentionWidget`` is a mixin of :class:`~course_helpers.widgets.AttentionExplorer`: it builds
the controls, keeps them in sync with the explorer's state and redraws the heatmap, pairs table
and layer x head panels (PNG images, cached per cell) when a control changes.
"""
from __future__ import annotations

import html
import time
from collections import OrderedDict

from .. import plotting
from .._utils import CourseInputError
from . import drawing


class _AttentionWidget:
    """Widget methods of AttentionExplorer (needs its state, caches and ``_compute``)."""

    # -- widget ----------------------------------------------------------------------------
    def _cell_options(self):
        ct = self._state.get("cell_type")
        types = self.cells.meta[self.cell_type_key].tolist() if self.cell_type_key else None
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
        w["attn_layer"] = W.Dropdown(options=["all"] + list(range(self.n_layers)),
                                     value=s["attn_layer"], description="layer",
                                     layout=lay(width="160px"))
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
        for name, cls in (("attn_layer", "ch-layer"), ("head", "ch-head"), ("cell", "ch-cell"),
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
        for name in ("cell_type", "cell", "gene", "attn_layer", "head", "method", "top_n",
                     "select"):
            w[name].observe(self._on_control(name), names="value")
        wrap = lay(flex_flow="row wrap")
        controls = W.VBox([
            W.HBox([w["cell_type"], w["cell"], w["gene"]], layout=wrap),
            W.HBox([w["attn_layer"], w["head"], w["top_n"]], layout=wrap),
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
            w["attn_layer"].value = s["attn_layer"]
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
            self._msg_w.value = drawing._message_html(self.message)
            return
        self._w["gene"].options = tuple(sorted(set(v["symbols"])))[:3000]
        self._title_w.value = f"<b>{html.escape(v['title'])}</b>"
        self._heat_w.value = plotting.figure_to_png(self.heatmap_figure(title=False), dpi=90)
        self._pairs_w.value = drawing._html_table(
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
        self._msg_w.value = drawing._message_html(self.message)
        self.last_redraw_s = time.perf_counter() - t0
        self._timing_w.value = f"<small>redrawn in {self.last_redraw_s:.2f} s</small>"

    def _summary_figure(self):
        return drawing._attention_summary_figure(self._grids(), self._share_col(), self.n_layers)
