"""course_helpers.data.pbmc: the real PBMC loader."""
from __future__ import annotations

import numpy as np

from course_helpers import data


def test_pbmc_counts_are_integers():
    p = data.load_pbmc()
    assert p.n_obs == 700 and p.n_vars >= 700
    d = p.X.data
    assert (d == np.round(d)).all() and (d > 0).all()
    assert p.var_names.str.startswith("ENSG").all() and p.var_names.is_unique
    assert {"gene_symbol", "ensembl_id"} <= set(p.var.columns)
    assert {"cell_type", "n_counts"} <= set(p.obs.columns)
    assert "CD14+ Monocyte" in set(p.obs["cell_type"])
    # n_counts is the whole-transcriptome library; X holds a subset of genes
    assert (p.obs["n_counts"].to_numpy() >= np.asarray(p.X.sum(1)).ravel()).all()
    assert p.var.loc[p.var["gene_symbol"] == "IGJ", "ensembl_id"].tolist() == ["ENSG00000132465"]
    assert len(p.uns["unmapped_symbols"]) < 30
    s = data.load_pbmc(map_to_ensembl=False)
    assert s.n_vars == 765 and "CD3E" in s.var_names
