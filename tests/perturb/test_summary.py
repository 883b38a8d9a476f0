"""summarize_effects: the tables an explorer shows, computed from the public perturbation functions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from course_helpers._utils import CourseInputError
from course_helpers.perturb import (
    EffectSummary,
    FewCellsWarning,
    GenesNotExpressedWarning,
    in_silico_perturb,
    perturb_pairs,
    summarize_effects,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STATES = {"state_key": "cell_type", "start_state": "CD14+ Monocyte", "goal_state": "CD19+ B",
          "alt_states": []}


@pytest.fixture(scope="module")
def model(vocab_model):
    return vocab_model


@pytest.fixture(scope="module")
def pair(cells):
    x = cells["input_ids"][0]
    return [int(x[3]), int(x[9])]


@pytest.fixture(scope="module")
def plain(model, dataset, pair):
    return summarize_effects(model, dataset, pair, "delete", cells=[0, 1, 2, 3], n_random=3)


def test_effects_are_in_silico_perturb_values(model, dataset, pair, plain):
    assert isinstance(plain, EffectSummary)
    assert plain.effect == "1 - cos_sim" and plain.goal_state is None
    ref = in_silico_perturb(model, dataset, "delete", genes=pair, cells=plain.rows,
                            progress=False)
    got = plain.effects.sort_values(["cell_id", "rank_index"]).reset_index(drop=True)
    ref = ref.sort_values(["cell_id", "rank_index"]).reset_index(drop=True)
    np.testing.assert_allclose(got["effect"], 1 - ref["cos_sim"], atol=1e-9)
    means = got.groupby("perturbed_token")["effect"].mean()
    summ = plain.summary.set_index("gene")
    for tok, label in zip(plain.tokens, plain.genes):
        assert summ.loc[label, "mean_effect"] == pytest.approx(means[tok])
    assert list(plain.summary.columns) == ["gene", "n_cells", "mean_effect", "sem",
                                           "null_mean_effect", "random_genes_beaten",
                                           "p_value_vs_random"]
    assert plain.null["perturbed_token"].nunique() == 3
    assert not set(plain.null["perturbed_token"]) & set(pair)
    assert plain.summary["p_value_vs_random"].between(0, 1).all()


def test_moved_genes_and_min_cells(plain):
    mv = plain.moved_genes
    assert list(mv.columns) == ["gene", "mean_change", "n"]
    assert mv["mean_change"].is_monotonic_decreasing
    ge = plain.gene_effects
    col = "affected_gene" if "affected_gene" in ge else "affected_token"
    top = mv.iloc[0]
    assert top["mean_change"] == pytest.approx((1 - ge.loc[ge[col] == top["gene"], "cos_sim"]).mean())
    assert plain.min_cells == max(1, plain.effects["cell_id"].nunique() // 2)


def test_synergy_of_two_genes(model, dataset, pair, plain):
    syn = plain.synergy
    a, b = plain.genes
    assert syn["condition"].tolist() == [a, b, f"{a} + {b} together", "expected (additive)"]
    ref = perturb_pairs(model, dataset, [tuple(pair)], "delete", cells=plain.rows,
                        progress=False)
    pd.testing.assert_frame_equal(plain.synergy_per_cell, ref)
    assert plain.synergy_mean == pytest.approx(ref["synergy"].mean())
    expected = ((1 - ref["cos_sim_a"]) + (1 - ref["cos_sim_b"])).mean()
    assert syn.set_index("condition").loc["expected (additive)", "mean"] == pytest.approx(expected)
    assert plain.messages == [] and plain.warnings == []
    assert set(plain.tables()) == {"effects", "null", "summary", "moved_genes", "synergy"}


def test_tables_carry_no_side_data_in_attrs(plain):
    """Regression: pandas objects in ``DataFrame.attrs`` break ``pd.concat`` / ``.nlargest``."""
    import copy

    for name, table in plain.tables().items():
        bad = {k for k, v in table.attrs.items()  # scalars (emb_mode) may stay
               if isinstance(v, (pd.Series, pd.DataFrame, np.ndarray))}
        assert not bad, (name, bad)
    syn = plain.synergy
    assert syn.set_index("condition").loc[:, "mean"].nlargest(2).size == 2
    row = syn.set_index("condition").iloc[0]
    assert row[["mean", "sem"]].astype(float).nlargest(1).size == 1
    pd.testing.assert_frame_equal(pd.concat([syn.iloc[:2], syn.iloc[2:]]), syn)
    pd.testing.assert_frame_equal(copy.deepcopy(syn), syn)
    per_cell = plain.synergy_per_cell  # the per-cell rows live in the dataclass field
    pd.testing.assert_frame_equal(pd.concat([per_cell.iloc[:2], per_cell.iloc[2:]]), per_cell)
    assert plain.synergy_mean == pytest.approx(per_cell["synergy"].mean())


def test_with_states_effect_is_shift_to_goal(model, dataset, cells, pair):
    s = summarize_effects(model, dataset, pair[:1], "delete", cell_states=STATES, n_random=0,
                          n_cells=2, seed=1)
    assert s.effect == "shift" and s.goal_state == "CD19+ B"
    assert (s.effects["state"] == "CD19+ B").all()
    np.testing.assert_allclose(s.effects["effect"], s.effects["shift"])
    assert len(s.rows) == 2
    assert (cells["cell_type"].iloc[s.rows] == "CD14+ Monocyte").all()
    assert s.null.empty and s.synergy.empty and s.synergy_mean is None


def test_notes_are_structured(model, dataset, cells, pair):
    x0 = set(cells["input_ids"][0])
    absent = next(int(t) for t in cells["input_ids"][5] if int(t) not in x0)
    s = summarize_effects(model, dataset, [pair[0], absent], "delete", cells=[0], n_cells=3,
                          n_random=5000)
    assert s.n_eligible == 1 and s.n_requested == 3
    assert s.genes_not_expressed and len(s.genes_not_expressed) == 1
    assert s.null_genes_available is not None and s.null_genes_available < 5000
    assert isinstance(s.warnings[0], FewCellsWarning)
    assert any(isinstance(w, GenesNotExpressedWarning) for w in s.warnings)
    assert s.messages[0] == "Only 1 cell(s) are eligible (n_cells=3)."
    assert any("expressed in none" in m for m in s.messages)
    assert any("genes are available" in m for m in s.messages)
    assert s.synergy_error is not None  # the pair is not expressed together in cell 0
    assert "No synergy view: " + s.synergy_error in s.messages


def test_bad_input(model, dataset, cells):
    with pytest.raises(CourseInputError, match="'delete' or 'overexpress'"):
        summarize_effects(model, dataset, ["X"], "mask")
    with pytest.raises(CourseInputError, match="genes is empty"):
        summarize_effects(model, dataset, [], "delete")
    with pytest.raises(CourseInputError, match="did you mean|Unknown gene"):
        summarize_effects(model, dataset, ["CD79AX"], "delete")
    x0 = set(cells["input_ids"][0])
    absent = next(int(t) for t in cells["input_ids"][5] if int(t) not in x0)
    with pytest.raises(CourseInputError, match="nothing can be deleted"):
        summarize_effects(model, dataset, [absent], "delete", cells=[0])
