"""course_helpers.data.tissue: the named splits (shipped and generated-and-cached)."""
from __future__ import annotations

import numpy as np

from course_helpers import data
from course_helpers.data.design import _read_design

OBS_COLUMNS = ["cell_id", "cell_type", "state", "n_counts", "donor", "batch", "low_quality"]


def test_shipped_chapter_split_is_current():
    a = data.load_tissue("chapter")
    spec = data.SPLITS["chapter"]
    assert a.shape == (spec["n_cells"], 2000)
    assert a.obs.columns.tolist() == OBS_COLUMNS
    info = a.uns["teaching_tissue"]
    assert info["seed"] == spec["seed"]
    assert info["design_fingerprint"] == _read_design()["fingerprint"]
    b = data.simulate_tissue(spec["n_cells"], spec["seed"], progress=False)
    if info.get("numpy_version", "").split(".")[:2] == np.__version__.split(".")[:2]:
        assert (a.X != b.X).nnz == 0
    else:  # another numpy may draw other random streams; statistics must still agree
        assert abs(a.X.nnz / b.X.nnz - 1) < 0.05


def test_generated_split_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_HELPERS_CACHE", str(tmp_path))
    a = data.load_tissue("heldout", progress=False)
    files = list(tmp_path.glob("tissue_heldout_*.h5ad"))
    assert len(files) == 1
    b = data.load_tissue("heldout")
    assert (a.X != b.X).nnz == 0
    assert a.n_obs == data.SPLITS["heldout"]["n_cells"]
    assert not set(a.obs["cell_id"]) & set(data.load_tissue("chapter").obs["cell_id"])
