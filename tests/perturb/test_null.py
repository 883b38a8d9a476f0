"""random_gene_null: random expressed genes perturbed like the chosen ones."""
from __future__ import annotations

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from course_helpers.perturb import random_gene_null

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_random_gene_null(plain_model, dataset, cells, state_embs, states):
    a = random_gene_null(plain_model, dataset, n_genes=4, seed=3, cell_states=states,
                         state_embs=state_embs, cells=[0], progress=False)
    b = random_gene_null(plain_model, dataset, n_genes=4, seed=3, cell_states=states,
                         state_embs=state_embs, cells=[0], progress=False)
    assert a.attrs["null_genes"] == b.attrs["null_genes"]
    assert set(a.attrs["null_genes"]) <= set(cells["input_ids"][0])
    assert len(a) == 4 * 3
    pd.testing.assert_frame_equal(a, b)
