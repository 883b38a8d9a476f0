"""perturb_pairs: single and combined perturbations of gene pairs, synergy."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from course_helpers.perturb import in_silico_perturb, perturb_pairs

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_perturb_pairs_synergy_definition(plain_model, dataset, cells, state_embs, states, layer5, cos_rows):
    x = cells["input_ids"][0]
    pair = (x[2], x[9])
    res = perturb_pairs(plain_model, dataset, [pair], cells=[0, 1], progress=False)
    assert len(res) == 2 - sum(not ({x[2], x[9]} <= set(c)) for c in cells["input_ids"][:2])
    single = in_silico_perturb(plain_model, dataset, "delete", genes=list(pair), cells=[0],
                               progress=False).set_index("perturbed_token")["cos_sim"]
    r = res.iloc[0]
    assert abs(r["cos_sim_a"] - single[pair[0]]) <= TOL
    assert abs(r["cos_sim_b"] - single[pair[1]]) <= TOL
    assert r["synergy"] == pytest.approx(
        (1 - r["cos_sim_ab"]) - ((1 - r["cos_sim_a"]) + (1 - r["cos_sim_b"])), abs=1e-12)
    h = layer5(plain_model, x)
    keep = [i for i in range(len(x)) if i not in (2, 9)]
    p = layer5(plain_model, [x[i] for i in keep])
    assert abs(r["cos_sim_ab"] - cos_rows(p, h[keep]).mean()) <= TOL
    with_states = perturb_pairs(plain_model, dataset, [pair], cell_states=states, cells=[0],
                                state_embs=state_embs, progress=False)
    assert len(with_states) == 3
    np.testing.assert_allclose(
        with_states["synergy"],
        with_states["shift_ab"] - with_states["shift_a"] - with_states["shift_b"], atol=1e-15)
