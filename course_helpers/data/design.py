"""The teaching tissue's design tables (``course_helpers/assets/tissue/``, written by
``data_scripts/make_gene_table.py``): reading and checking them, and :func:`tissue_genes`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from .._utils import CourseInputError

TISSUE_DIR = Path(__file__).resolve().parent.parent / "assets" / "tissue"
SIM_VERSION = "2"


def _read_design(tissue_dir: Path = TISSUE_DIR) -> dict:
    tissue_dir = Path(tissue_dir)
    need = ["genes.tsv", "edges.tsv", "tf_activity.tsv", "ground_truth.json"]
    missing = [f for f in need if not (tissue_dir / f).is_file()]
    if missing:
        raise CourseInputError(
            f"teaching-tissue design files missing in {tissue_dir}: {missing}. "
            "Fix: reinstall course_helpers, or run `python data_scripts/make_gene_table.py`."
        )
    genes = pd.read_csv(tissue_dir / "genes.tsv", sep="\t")
    edges = pd.read_csv(tissue_dir / "edges.tsv", sep="\t", keep_default_na=False)
    edges["sign"] = edges["sign"].astype(int)
    edges["weight"] = edges["weight"].astype(float)
    tfa = pd.read_csv(tissue_dir / "tf_activity.tsv", sep="\t")
    gt = json.loads((tissue_dir / "ground_truth.json").read_text())
    h = hashlib.sha1(SIM_VERSION.encode())
    for f in need:
        h.update((tissue_dir / f).read_bytes())
    return {"genes": genes, "edges": edges, "tf_activity": tfa, "gt": gt,
            "fingerprint": h.hexdigest()[:12]}


def tissue_genes() -> pd.DataFrame:
    """The 2,000 genes of the teaching tissue with their class and simulation parameters.

    Returns
    -------
    pandas.DataFrame
        Indexed by Ensembl ID; columns ``gene_symbol``, ``gene_class`` (tf / target /
        housekeeping / mito / ribo / background), ``rate`` (expected UMIs per 10,000 at full
        activity), ``leak``, ``dispersion`` and ``lfc_<cell type>``.

    Examples
    --------
    >>> g = tissue_genes()
    >>> int((g["gene_class"] == "tf").sum())
    23
    """
    g = _read_design()["genes"].set_index("ensembl_id", drop=False)
    g.index.name = None
    return g
