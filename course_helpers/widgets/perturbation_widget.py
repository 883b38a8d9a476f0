"""The live ipywidgets view of the PerturbationExplorer (gene tags, controls, Run button).

``_PerturbationWidget`` is a mixin of :class:`~course_helpers.widgets.PerturbationExplorer`:
controls change the state without computing; **Run** computes and redraws the figure and the
summary table.
"""
from __future__ import annotations

import time

import pandas as pd

from .. import plotting
from . import drawing


class _PerturbationWidget:
    """Widget methods of PerturbationExplorer (needs its state, ``figure`` and ``data``)."""

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
            self._msg_w.value = drawing._message_html("\n".join(self._messages)) if self._messages \
                else drawing._message_html("Genes changed: press Run.")

        w["gene_box"].observe(add_gene, names="value")

        def on_change(name):
            def handler(change):
                if self._syncing:
                    return
                val = change["new"]
                if name == "goal_state" and val == "(none)":
                    val = None
                self._safe(self.set, **{name: val})
                self._msg_w.value = drawing._message_html("\n".join(self._messages)
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
        self._table_w.value = drawing._html_table(summ) if not summ.empty else ""
        self._msg_w.value = drawing._message_html(self.message)
        self.last_redraw_s = time.perf_counter() - t0
        self._status_w.value = f"<small>done in {self.last_redraw_s:.1f} s</small>"
