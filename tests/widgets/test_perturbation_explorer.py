"""PerturbationExplorer, driven through its Python API.

A tiny random model over 30 real genes (tests/widgets/browser/tiny_model.py) keeps this fast.
Redraw latency is printed (run with ``-s`` to see it), not asserted.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from course_helpers import perturb as pert
from course_helpers._utils import CourseInputError
from course_helpers.perturb import perturb_ids
from course_helpers.widgets import PerturbationExplorer


# --------------------------------------------------------------------------------------------
# PerturbationExplorer
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pex(setup):
    return PerturbationExplorer(setup.model, setup.dataset, "state", start_state="diseased",
                                goal_state="healthy", genes=["GATA4"], n_cells=4, n_random=6,
                                max_cells_per_state=8)


def test_perturbation_effects_match_perturb_module(setup, pex):
    d = pex.set(genes=["GATA4"], perturb_type="delete", cells="diseased",
                goal_state="healthy").data()
    eff = d["effects"]
    assert len(eff) > 0 and set(eff["perturbed_gene"]) == {"GATA4"}
    rows = [int(r) for r in d["map"]["row"]]
    assert all(setup.dataset[r]["state"] == "diseased" for r in rows)
    ref = pert.in_silico_perturb(
        setup.model, setup.dataset, "delete", genes=["GATA4"], cells=rows, progress=False,
        cell_states={"state_key": "state", "start_state": "diseased", "goal_state": "healthy",
                     "alt_states": []})
    ref = ref[ref["state"] == "healthy"].reset_index(drop=True)
    np.testing.assert_allclose(eff["effect"].to_numpy(), ref["shift"].to_numpy(), atol=1e-6)
    assert list(eff["cell_id"]) == list(ref["cell_id"])
    # random genes: same cells, never the chosen gene
    null = d["null"]
    assert len(null) > 0 and "GATA4" not in set(null["perturbed_gene"])
    assert set(null["cell_id"]) <= set(eff["cell_id"]) | set(d["map"]["cell_id"])
    summ = d["summary"]
    assert list(summ["gene"]) == ["GATA4"]
    assert summ.loc[0, "mean_effect"] == pytest.approx(eff["effect"].mean())
    assert {"null_mean_effect", "random_genes_beaten", "p_value_vs_random"} <= set(summ)


def test_perturbation_map_and_moved_genes(setup, pex):
    from course_helpers.embed import embed_cells

    d = pex.set(genes=["GATA4"], perturb_type="delete").data()
    m = d["map"]
    assert len(m) == len(set(d["effects"]["cell_id"]))
    assert not np.allclose(m[["pc1_before", "pc2_before"]].to_numpy(),
                           m[["pc1_after", "pc2_after"]].to_numpy())
    # "after" = the cell without GATA4, embedded and projected on the same PCA
    r = int(m["row"].iloc[0])
    ids = setup.dataset[r]["input_ids"]
    tok = setup.vocab.tokens(["GATA4"])[0]
    e = embed_cells(setup.model, [[t for t in ids if t != tok]], progress=False)
    xy = pex._background()[2].transform(e)[0]
    np.testing.assert_allclose(xy, m[["pc1_after", "pc2_after"]].iloc[0], atol=1e-5)
    moved = d["moved_genes"]
    assert moved["mean_change"].is_monotonic_decreasing and "GATA4" not in set(moved["gene"])


def test_perturbation_synergy_two_genes(pex, tiny):
    d = pex.set(genes=["GATA4", "TBX5"]).data()
    syn = d["synergy"]
    assert list(syn["condition"]) == ["GATA4", "TBX5", "GATA4 + TBX5 together",
                                      "expected (additive)"]
    assert syn.loc[3, "mean"] == pytest.approx(syn.loc[0, "mean"] + syn.loc[1, "mean"])
    res = pex.effect_summary()
    per_cell = res.synergy_per_cell
    assert res.synergy_mean == pytest.approx(per_cell["synergy"].mean())
    assert set(d["summary"]["gene"]) == {"GATA4", "TBX5"}
    fig = pex.figure()
    titles = [a.get_title() for a in fig.axes]
    assert any("synergy" in t for t in titles) and any("PCA" in t for t in titles)
    assert any("shift towards 'healthy'" in t for t in titles)
    bar_ax = next(a for a in fig.axes if "move most" in a.get_title())
    assert {t.get_text() for t in bar_ax.get_yticklabels()} <= set(tiny.GENES.values())
    assert "delete GATA4, TBX5" in fig._suptitle.get_text()


def test_perturbation_tables_carry_no_side_data_in_attrs(pex):
    """Regression: the synergy table held a DataFrame in ``attrs`` (``pd.concat`` raised)."""
    import copy

    import pandas as pd

    d = pex.set(genes=["GATA4", "TBX5"]).data()
    for name, table in d.items():
        bad = {k for k, v in table.attrs.items()  # scalars (emb_mode) may stay
               if isinstance(v, (pd.Series, pd.DataFrame, np.ndarray))}
        assert not bad, (name, bad)
    syn = d["synergy"]
    assert syn.set_index("condition")["mean"].nlargest(3).size == 3
    pd.testing.assert_frame_equal(pd.concat([syn.iloc[:2], syn.iloc[2:]]), syn)
    pd.testing.assert_frame_equal(copy.deepcopy(syn), syn)
    res = pex.effect_summary()  # the side data the attrs held, as fields
    pd.testing.assert_frame_equal(res.synergy, syn)
    assert len(res.synergy_per_cell) == syn.loc[0, "n_cells"]
    assert res.synergy_mean == pytest.approx(res.synergy_per_cell["synergy"].mean())
    assert pex.set(genes=[]).effect_summary() is None


def test_perturbation_messages_not_exceptions(pex):
    pex.set(genes=["NOTAGENE1"])
    assert "NOTAGENE1" in pex.message and "vocabulary" in pex.message
    d = pex.data()
    assert all(t.empty for t in d.values())
    assert "at least one gene" in pex.message
    assert pex.figure().axes  # a message figure, not an error
    pex.set(genes=["GATA4", "NOTAGENE1"])
    assert pex.state["genes"] == ["GATA4"] and "NOTAGENE1" in pex.message
    pex.set(genes=[])
    assert "Choose at least one gene" in pex.message
    before = pex.state
    pex.set(n_cells=0)
    assert "empty selection" in pex.message and pex.state == before
    pex.set(cells="nowhere")
    assert "No cells with state == 'nowhere'" in pex.message
    pex.set(perturb_type="knockdown")
    assert "perturb_type" in pex.message
    # a gene that no chosen cell expresses cannot be deleted
    pex.set(genes=["VWF"], cells="diseased", perturb_type="delete")
    in_diseased = any("VWF" in pex.vocab.symbols(pex.cells.ids_of(i))
                      for i in range(pex.cells.n) if pex._states_col[i] == "diseased")
    if not in_diseased:
        assert "nothing can be deleted" in pex.message
    with pytest.raises(CourseInputError):
        PerturbationExplorer(pex.model, pex.cells.dataset, "state", start_state="zombie")
    with pytest.raises(CourseInputError, match="no column"):
        PerturbationExplorer(pex.model, pex.cells.dataset, "condition")


def test_perturbation_overexpress_without_goal(setup):
    ex = PerturbationExplorer(setup.model, setup.dataset, "cell_type", start_state="fibroblast",
                              genes="CDH5", perturb_type="overexpress", n_cells=3, n_random=3,
                              max_cells_per_state=8)
    d = ex.data()
    assert set(d["effects"]["cell_id"]) <= {setup.dataset[i]["cell_id"]
                                            for i in range(len(setup.dataset))
                                            if setup.dataset[i]["cell_type"] == "fibroblast"}
    np.testing.assert_allclose(d["effects"]["effect"], 1 - d["effects"]["cos_sim"])
    assert "embedding change" in ex._effect_label()
    fig = ex.figure()
    assert any("summary" in a.get_title() for a in fig.axes)


def _perturbed_ids(ids, tokens, perturb_type, vocab, max_len):
    """The widget's former private copy of the rule, now :func:`course_helpers.perturb.perturb_ids`."""
    return perturb_ids(ids, tokens, perturb_type, cls_id=vocab.cls_token_id,
                       eos_id=vocab.eos_token_id, max_len=max_len)


def test_perturbed_ids_rules(setup):
    v = setup.vocab
    ids = np.array([5, 6, 7, 8])
    assert _perturbed_ids(ids, [7], "delete", v, None).tolist() == [5, 6, 8]
    assert _perturbed_ids(ids, [8, 6], "overexpress", v, None).tolist() == [6, 8, 5, 7]
    assert _perturbed_ids(ids, [9, 7], "overexpress", v, 4).tolist() == [7, 9, 5, 6]


def test_perturbation_widget(pex):
    ex = pex.set(genes=["GATA4"], perturb_type="delete", cells="diseased", goal_state="healthy")
    t0 = time.perf_counter()
    w = ex.widget
    print(f"\n[bench] PerturbationExplorer widget build + draw (tiny model, results cached): "
          f"{time.perf_counter() - t0:.2f} s")
    assert "ch-explorer" in w._dom_classes
    assert ex._fig_w.value[:4] == b"\x89PNG" and "GATA4" in ex._table_w.value
    ex._w["gene_box"].value = "TBX5"
    assert ex._w["genes"].value == ["GATA4", "TBX5"] and ex.state["genes"] == ["GATA4", "TBX5"]
    assert "press Run" in ex._msg_w.value
    ex._w["gene_box"].value = "NOTAGENE1"
    assert "NOTAGENE1" in ex._msg_w.value and ex.state["genes"] == ["GATA4", "TBX5"]
    ex._w["goal_state"].value = "(none)"
    assert ex.state["goal_state"] is None


def test_perturbation_with_precomputed_embeddings(setup):
    from course_helpers.embed import embed_cells, state_embeddings

    emb = embed_cells(setup.model, setup.dataset, progress=False)
    ex = PerturbationExplorer(setup.model, setup.dataset, "state", start_state="diseased",
                              goal_state="healthy", genes=["GATA4"], n_cells=2, n_random=0,
                              embeddings=emb)
    ref = state_embeddings(setup.model, setup.dataset, "state", progress=False)
    got = ex._state_embs()
    for st in ("diseased", "healthy"):
        np.testing.assert_allclose(got[st], ref[st], atol=1e-5)
    d = ex.data()
    assert d["null"].empty and "null_mean_effect" not in d["summary"]
    assert len(d["effects"]) > 0
    with pytest.raises(CourseInputError, match="embeddings has shape"):
        PerturbationExplorer(setup.model, setup.dataset, "state", embeddings=emb[:3])
    bad = PerturbationExplorer(setup.model, setup.dataset, "state", start_state="diseased",
                               goal_state="healthy", genes=["GATA4"], n_cells=2, n_random=0,
                               state_embs={"healthy": ref["healthy"]})
    assert bad.data()["effects"].empty and "state_embs has no vector" in bad.message


def test_goal_state_is_keyword_only(setup):
    with pytest.raises(TypeError):
        PerturbationExplorer(setup.model, setup.dataset, "state", "diseased", "healthy")
