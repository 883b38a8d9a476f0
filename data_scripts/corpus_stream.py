"""Fresh simulated cells for pretraining: a stream of chunks, no cell ever repeated.

Simulation is cheap (about 1 s per 2,000 cells on one core), so instead of repeating a fixed
corpus for several epochs, ``pretrain_teaching_model.py --corpus stream`` asks this module for
chunk ``k`` = ``course_helpers.data.simulate_tissue(chunk_cells, seed=base_seed + k)``. The
planted network, the truth files and the chapter split are untouched; only the pretraining cells
differ.

Optionally the stream varies TF activity more widely *within* a cell type than the chapter split
does (Genecorpus-30M likewise spans many conditions and donors): ``tf_noise`` replaces the
simulator's log-normal cell-to-cell TF noise (0.35 in the chapter split) and ``master_on_max``
caps the fraction of cells of a type in which each of its master regulators is "on" (the others
keep 5 % of the level, as the simulator's "off" state). Both apply only while the chunk is
simulated (module settings are restored afterwards).

Examples
--------
>>> from corpus_stream import stream_chunk                    # doctest: +SKIP
>>> ad = stream_chunk(0, chunk_cells=200, base_seed=1000)      # doctest: +SKIP
>>> ad.n_obs                                                   # doctest: +SKIP
200
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: seeds used elsewhere (chapter 1, pretrain 2, heldout 3; the check tissue 2027): the stream
#: starts far from them.
DEFAULT_BASE_SEED = 100_000


@contextlib.contextmanager
def _activity_settings(tf_noise: float | None, master_on_max: float | None):
    import course_helpers.data.simulate as d  # the file whose simulate_tissue reads both

    old_noise, old_read = d.TF_NOISE, d._read_design
    if tf_noise is not None:
        d.TF_NOISE = float(tf_noise)
    if master_on_max is not None:
        def read(*a, **k):
            design = old_read(*a, **k)
            tfa = design["tf_activity"].copy()
            masters = {t for ts in design["gt"]["master_regulators"].values() for t in ts}
            own = tfa["tf"].isin(masters) & (tfa["level"] >= 1.0)
            tfa.loc[own, "on_fraction"] = tfa.loc[own, "on_fraction"].clip(upper=master_on_max)
            design = dict(design)
            design["tf_activity"] = tfa
            return design

        d._read_design = read
    try:
        yield
    finally:
        d.TF_NOISE, d._read_design = old_noise, old_read


def stream_chunk(k: int, chunk_cells: int = 2000, base_seed: int = DEFAULT_BASE_SEED,
                 tf_noise: float | None = None, master_on_max: float | None = None):
    """Chunk ``k`` of the stream: ``simulate_tissue(chunk_cells, base_seed + k)``, low-quality
    cells removed (as the corpus is quality-filtered)."""
    from course_helpers.data import simulate_tissue

    with _activity_settings(tf_noise, master_on_max):
        ad = simulate_tissue(chunk_cells, base_seed + int(k), progress=False)
    return ad[~ad.obs["low_quality"].to_numpy().astype(bool)].copy()
