"""Teaching tissue with a known ground truth, the real PBMC loader and the dataset cache.

The **teaching tissue** is a simulated droplet (10x-like) data set of an adult human heart over
2,000 real human genes (Ensembl IDs from the Geneformer V1 vocabulary). Its counts are generated
from a *planted* regulatory network, so every network or perturbation result in the course can be
checked against the truth:

* six cell types driven by real master regulators (cardiomyocyte GATA4/TBX5/NKX2-5/MEF2C,
  fibroblast TCF21/TWIST1, endothelial ERG/SOX17, macrophage SPI1/CEBPA, smooth muscle
  SRF/MYOCD, T cell TCF7/GATA3), some edges active only in some cell types;
* a simulated disease: cardiomyocytes of three "failing" donors switch on **NFATC4**, which drives
  a stress programme (NPPB, ACTA1, ANKRD1, ...) and represses ATP2A2, MYH6, ...;
* a synergy pair: **GATA4 + TBX5** are *both* needed for NPPA, GJA5, MYL4, SCN5A, KCNJ3, SLN;
* housekeeping, mitochondrial (MT-) and ribosomal genes, background genes, library-size variation,
  gamma-Poisson (negative binomial) noise, ambient RNA, donor and batch effects and ~5 %
  low-quality cells (few counts, high MT fraction).

The design tables live in ``course_helpers/assets/tissue/`` (written by
``data_scripts/make_gene_table.py``); this module only reads them, so everything works offline.

Main entry points
-----------------
``load_tissue(split)``      the shipped chapter split, or a generated-and-cached larger split
``simulate_tissue(n, seed)``  simulate any number of cells with any seed (seconds)
``load_ground_truth()``     the planted network, programmes, disease driver and synergy pair
``load_pbmc()``             real PBMC counts (scanpy's bundled ``pbmc68k_reduced``), Ensembl IDs
``realism_table(...)``      droplet-likeness statistics (library size, genes per cell, zeros, ...)
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._utils import CourseInputError
from ._utils import progress as _progress

__all__ = [
    "SPLITS",
    "GroundTruth",
    "cache_dir",
    "load_ground_truth",
    "load_pbmc",
    "load_tissue",
    "nonzero_medians",
    "realism_table",
    "simulate_tissue",
    "tissue_genes",
]

TISSUE_DIR = Path(__file__).resolve().parent / "assets" / "tissue"
SIM_VERSION = "2"

#: Named splits: number of cells and seed. Different seeds -> distinct cells.
SPLITS: dict[str, dict] = {
    "chapter": {"n_cells": 3000, "seed": 1, "shipped": True},
    "pretrain": {"n_cells": 20000, "seed": 2, "shipped": False},
    "heldout": {"n_cells": 2000, "seed": 3, "shipped": False},
}

DONORS = ["H1", "H2", "H3", "F1", "F2", "F3"]
FAILING_DONORS = ("F1", "F2", "F3")
# balanced design: every batch (sequencing run) holds one healthy and one failing donor
DONOR_BATCH = {"H1": "b1", "F1": "b1", "H2": "b2", "F2": "b2", "H3": "b3", "F3": "b3"}
BATCH_LIBRARY = {"b1": 1.0, "b2": 0.8, "b3": 1.15}
# relative library size per cell type (cardiomyocytes are big cells, T cells small)
TYPE_LIBRARY = {"cardiomyocyte": 1.5, "fibroblast": 1.0, "endothelial": 0.9,
                "macrophage": 1.1, "smooth_muscle": 1.0, "t_cell": 0.6}
HILL_K = 0.5          # h(a) = a / (a + HILL_K)
BASAL_TF = 0.02       # activity of a TF in cell types where it is not listed
OFF_FACTOR = 0.05     # "off" cells (1 - on_fraction) keep this fraction of the level
TF_NOISE = 0.35       # sd of the log-normal cell-to-cell TF activity noise
SECONDARY_SCALE = 0.5  # activity of a TF that is itself a target = 0.5 * network input
DONOR_SD = 0.10
BATCH_SD = 0.15
LQ_MITO_FACTOR = 15.0
LQ_LIBRARY_FACTOR = 0.3


# ---------------------------------------------------------------------------------------------
# design tables
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------
@dataclass
class GroundTruth:
    """The planted truth of the teaching tissue.

    All gene lists hold **Ensembl IDs**; use :meth:`symbols` / :meth:`ensembl` to convert.

    Attributes
    ----------
    edges : pandas.DataFrame
        One row per planted TF -> target edge: ``source``, ``target`` (Ensembl IDs), ``sign``
        (+1 activation / -1 repression), ``weight`` (strength), ``contexts`` (``"all"`` or cell
        types joined by ``","``: where the edge is active), ``source_symbol``, ``target_symbol``,
        ``program`` (cell type, ``disease``, ``synergy``, ``immediate_early`` or ``weak``),
        ``partner`` / ``partner_symbol`` (the co-factor an AND-edge needs, else ``""``).
    programs : dict
        Cell type -> target genes of its programme (activated targets of that cell type's
        programme edges; the GATA4-TBX5 joint targets count as cardiomyocyte; weak edges and
        the disease programme are not included).
    tfs : list
        All transcription factors of the tissue (masters, secondary, orphans, disease driver).
    disease_drivers : list
        The TF(s) that cause the diseased state (``["ENSG00000100968"]`` = NFATC4).
    synergy_pairs : list of dict
        Each with ``tfs``, ``tf_symbols``, ``targets``, ``target_symbols``, ``weight``.
    disease : dict
        ``cell_type``, ``healthy_state``, ``diseased_state``, ``drivers``, ``program_up``,
        ``program_down`` (+ ``*_symbols``), ``donors`` and a ``description``.
    cell_types, master_regulators, housekeeping, orphan_tfs, secondary_tfs
        As named. Orphan TFs are expressed and cell-type specific but have **no** targets.
    genes : pandas.DataFrame
        Gene table (Ensembl ID index, ``gene_symbol``, ``gene_class``).
    tf_activity : pandas.DataFrame
        Activity level of each TF per cell type/state used by the simulator.

    Examples
    --------
    >>> gt = load_ground_truth()
    >>> gt.symbols(gt.disease_drivers)
    ['NFATC4']
    >>> gt.synergy_pairs[0]["tf_symbols"]
    ['GATA4', 'TBX5']
    >>> len(gt.edges_for("cardiomyocyte")) > len(gt.edges_for("t_cell"))
    True
    """

    edges: pd.DataFrame
    programs: dict
    tfs: list
    disease_drivers: list
    synergy_pairs: list
    disease: dict
    cell_types: list
    master_regulators: dict
    housekeeping: list
    orphan_tfs: list = field(default_factory=list)
    secondary_tfs: list = field(default_factory=list)
    genes: pd.DataFrame = field(default=None, repr=False)
    tf_activity: pd.DataFrame = field(default=None, repr=False)

    def __repr__(self) -> str:  # short, notebook-friendly
        return (
            f"GroundTruth({len(self.genes)} genes, {len(self.tfs)} TFs, {len(self.edges)} edges, "
            f"cell types={self.cell_types}, disease drivers={self.symbols(self.disease_drivers)}, "
            f"synergy pairs={[p['tf_symbols'] for p in self.synergy_pairs]})"
        )

    # --- id conversion -------------------------------------------------------------------------
    def symbols(self, genes: Iterable[str]) -> list[str]:
        """Ensembl IDs (or symbols) -> symbols.

        Examples
        --------
        >>> load_ground_truth().symbols(["ENSG00000136574"])
        ['GATA4']
        """
        sym = self.genes["gene_symbol"]
        out = []
        for g in _as_list(genes):
            if g in sym.index:
                out.append(sym[g])
            elif g in set(sym.values):
                out.append(g)
            else:
                raise CourseInputError(
                    f"{g!r} is not a teaching-tissue gene. Fix: use one of gt.genes.index "
                    "(Ensembl IDs) or gt.genes['gene_symbol']."
                )
        return out

    def ensembl(self, genes: Iterable[str]) -> list[str]:
        """Symbols (or Ensembl IDs) -> Ensembl IDs.

        Examples
        --------
        >>> load_ground_truth().ensembl(["GATA4", "TBX5"])
        ['ENSG00000136574', 'ENSG00000089225']
        """
        sym2id = dict(zip(self.genes["gene_symbol"], self.genes.index))
        out = []
        for g in _as_list(genes):
            if g in self.genes.index:
                out.append(g)
            elif g in sym2id:
                out.append(sym2id[g])
            else:
                raise CourseInputError(
                    f"{g!r} is not a teaching-tissue gene. Fix: check the spelling against "
                    "gt.genes['gene_symbol'] (symbols) or gt.genes.index (Ensembl IDs)."
                )
        return out

    # --- queries -------------------------------------------------------------------------------
    def _check_context(self, context):
        if context is not None and context not in self.cell_types:
            raise CourseInputError(
                f"unknown context {context!r}. Fix: use one of {self.cell_types} or None (all)."
            )

    def edges_for(self, context: str | None = None, *, include_weak: bool = True,
                  sign: int | None = None) -> pd.DataFrame:
        """Edges active in one cell type (``contexts`` contains it or is ``"all"``).

        Parameters
        ----------
        context
            A cell type (see ``cell_types``) or ``None`` for every edge.
        include_weak
            Keep the low-weight (``program == "weak"``) edges.
        sign
            ``+1`` or ``-1`` to keep only activations or repressions.

        Examples
        --------
        >>> gt = load_ground_truth()
        >>> e = gt.edges_for("smooth_muscle")
        >>> bool((e["source_symbol"] == "MYOCD").any())
        True
        >>> bool((gt.edges_for("t_cell")["source_symbol"] == "MYOCD").any())
        False
        """
        self._check_context(context)
        e = self.edges
        if context is not None:
            ctx = e["contexts"].str.split(",")
            keep = ctx.map(lambda c: "all" in c or context in c)
            e = e[keep]
        if not include_weak:
            e = e[e["program"] != "weak"]
        if sign is not None:
            e = e[e["sign"] == sign]
        return e.reset_index(drop=True)

    def targets_of(self, tf: str, context: str | None = None) -> list[str]:
        """Ensembl IDs of the planted targets of ``tf`` (symbol or Ensembl ID).

        Examples
        --------
        >>> gt = load_ground_truth()
        >>> gt.symbols(gt.targets_of("SOX17"))[:3]
        ['GJA4', 'DLL4', 'EFNB2']
        """
        (tid,) = self.ensembl([tf])
        e = self.edges_for(context)
        return list(dict.fromkeys(e.loc[e["source"] == tid, "target"]))

    def regulators_of(self, gene: str, context: str | None = None) -> list[str]:
        """Ensembl IDs of the TFs with a planted edge into ``gene``.

        Examples
        --------
        >>> gt = load_ground_truth()
        >>> gt.symbols(gt.regulators_of("NPPA"))
        ['GATA4', 'TBX5']
        """
        (gid,) = self.ensembl([gene])
        e = self.edges_for(context)
        return list(dict.fromkeys(e.loc[e["target"] == gid, "source"]))

    def edge_set(self, context: str | None = None, *, symbols: bool = False,
                 include_weak: bool = True) -> set[tuple[str, str]]:
        """Set of ``(source, target)`` pairs, handy for precision/recall.

        Examples
        --------
        >>> ("GATA4", "NPPA") in load_ground_truth().edge_set(symbols=True)
        True
        """
        e = self.edges_for(context, include_weak=include_weak)
        cols = ["source_symbol", "target_symbol"] if symbols else ["source", "target"]
        return set(map(tuple, e[cols].to_numpy()))

    def adjacency(self, context: str | None = None, *, signed: bool = True,
                  symbols: bool = False) -> pd.DataFrame:
        """TF x target matrix of (signed) weights; 0 where there is no edge.

        Examples
        --------
        >>> A = load_ground_truth().adjacency(symbols=True)
        >>> float(A.loc["NFATC4", "ATP2A2"]) < 0
        True
        """
        e = self.edges_for(context)
        src = e["source_symbol"] if symbols else e["source"]
        tgt = e["target_symbol"] if symbols else e["target"]
        val = e["weight"] * (e["sign"] if signed else 1)
        df = pd.DataFrame({"s": src.values, "t": tgt.values, "v": val.values})
        return df.pivot_table(index="s", columns="t", values="v", aggfunc="sum",
                              fill_value=0.0).rename_axis(index=None, columns=None)


def _as_list(genes) -> list[str]:
    if isinstance(genes, str):
        return [genes]
    return list(genes)


def load_ground_truth() -> GroundTruth:
    """Load the planted network and annotations of the teaching tissue.

    Returns
    -------
    GroundTruth
        See :class:`GroundTruth`. The same truth holds for every seed of :func:`simulate_tissue`.

    Examples
    --------
    >>> gt = load_ground_truth()
    >>> gt.cell_types
    ['cardiomyocyte', 'fibroblast', 'endothelial', 'macrophage', 'smooth_muscle', 't_cell']
    >>> gt.edges.columns[:5].tolist()
    ['source', 'target', 'sign', 'weight', 'contexts']
    >>> gt.symbols(gt.synergy_pairs[0]["targets"])[:2]
    ['NPPA', 'GJA5']
    """
    d = _read_design()
    gt = d["gt"]
    genes = d["genes"][["ensembl_id", "gene_symbol", "gene_class"]].set_index("ensembl_id")
    genes.index.name = None
    return GroundTruth(
        edges=d["edges"],
        programs={k: list(v) for k, v in gt["programs"].items()},
        tfs=list(gt["tfs"]),
        disease_drivers=list(gt["disease_drivers"]),
        synergy_pairs=[dict(p) for p in gt["synergy_pairs"]],
        disease=dict(gt["disease"]),
        cell_types=list(gt["cell_types"]),
        master_regulators={k: list(v) for k, v in gt["master_regulators"].items()},
        housekeeping=list(gt["housekeeping"]),
        orphan_tfs=list(gt.get("orphan_tfs", [])),
        secondary_tfs=list(gt.get("secondary_tfs", [])),
        genes=genes,
        tf_activity=d["tf_activity"],
    )


# ---------------------------------------------------------------------------------------------
# simulator
# ---------------------------------------------------------------------------------------------
def _hill(a):
    return a / (a + HILL_K)


class _Model:
    """Pre-computed matrices of the design (no randomness)."""

    def __init__(self, design: dict):
        g = design["genes"]
        gt = design["gt"]
        self.genes = g
        self.cell_types = list(gt["cell_types"])
        self.gidx = {e: i for i, e in enumerate(g["ensembl_id"])}
        self.tfs = list(gt["tfs"])
        self.tf_gidx = np.array([self.gidx[t] for t in self.tfs])
        self.tidx = {t: i for i, t in enumerate(self.tfs)}
        G, T, C = len(g), len(self.tfs), len(self.cell_types)
        self.rate = g["rate"].to_numpy(float)
        self.leak = g["leak"].to_numpy(float)
        self.disp = g["dispersion"].to_numpy(float)
        self.lfc = g[[f"lfc_{c}" for c in self.cell_types]].to_numpy(float).T  # C x G
        cls = g["gene_class"].to_numpy()
        self.is_mito = cls == "mito"
        e = design["edges"]
        # regulated genes (targets, incl. secondary TFs): the network only touches these columns
        self.regulated = np.zeros(G, bool)
        self.regulated[[self.gidx[t] for t in e["target"]]] = True
        self.reg_idx = np.where(self.regulated)[0]
        ridx = {g: k for k, g in enumerate(self.reg_idx)}
        R = len(self.reg_idx)
        # per-context activation / repression matrices (T x R) and AND-terms
        self.W_act = np.zeros((C, T, R))
        self.W_rep = np.zeros((C, T, R))
        self.syn: list[list[tuple[int, int, int, float]]] = [[] for _ in range(C)]
        seen = set()
        for r in e.itertuples(index=False):
            ctxs = r.contexts.split(",")
            cs = range(C) if "all" in ctxs else [self.cell_types.index(c) for c in ctxs]
            s, t = self.tidx[r.source], ridx[self.gidx[r.target]]
            for c in cs:
                if r.partner:
                    key = (c, frozenset((r.source, r.partner)), r.target)
                    if key in seen:
                        continue
                    seen.add(key)
                    self.syn[c].append((s, self.tidx[r.partner], t, r.weight))
                elif r.sign > 0:
                    self.W_act[c, s, t] += r.weight
                else:
                    self.W_rep[c, s, t] += r.weight
        # TFs that are targets of other TFs (secondary TFs) and their column among reg_idx
        self.tf_regulated = self.regulated[self.tf_gidx]
        self.sec_cols = np.array([ridx[g] for g in self.tf_gidx[self.tf_regulated]], int)
        # intrinsic activity table
        tfa = design["tf_activity"]
        self.tf_rows = [
            (self.tidx[r.tf], self.cell_types.index(r.cell_type), r.state, r.level, r.on_fraction)
            for r in tfa.itertuples(index=False)
        ]

    def network_input(self, H, c):
        """(act, rep) inputs (n x R, columns = reg_idx) for cells of type c, H = h(activity)."""
        act = H @ self.W_act[c]
        rep = H @ self.W_rep[c]
        for s1, s2, t, w in self.syn[c]:
            act[:, t] += w * H[:, s1] * H[:, s2]
        return act, rep


def _validate_sim_args(n_cells, seed, proportions, low_quality_fraction, library_size,
                       cell_types):
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 1:
        raise CourseInputError(
            f"n_cells must be a positive integer, got {n_cells!r}. Fix: e.g. n_cells=3000."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CourseInputError(f"seed must be a non-negative integer, got {seed!r}.")
    if not 0 <= low_quality_fraction <= 0.5:
        raise CourseInputError(
            f"low_quality_fraction must be in [0, 0.5], got {low_quality_fraction!r}."
        )
    if not library_size > 0:
        raise CourseInputError(f"library_size must be > 0, got {library_size!r}.")
    if proportions is not None:
        bad = [k for k in proportions if k not in cell_types]
        if bad:
            raise CourseInputError(
                f"unknown cell types in proportions: {bad}. Fix: use keys from {cell_types}."
            )
        vals = np.array([proportions.get(c, 0.0) for c in cell_types], float)
        if (vals < 0).any() or vals.sum() <= 0:
            raise CourseInputError("proportions must be non-negative and not all zero.")


def simulate_tissue(
    n_cells: int = 3000,
    seed: int = 0,
    *,
    proportions: Mapping[str, float] | None = None,
    low_quality_fraction: float = 0.05,
    library_size: float = 2600.0,
    library_sigma: float = 0.45,
    ambient_fraction: float = 0.02,
    return_activity: bool = False,
    progress: bool = True,
    chunk_size: int = 2000,
) -> anndata.AnnData:  # noqa: F821
    """Simulate droplet-like counts of the teaching tissue from the planted network.

    The network (genes, edges, weights, programmes) is fixed -- it is the ground truth returned by
    :func:`load_ground_truth`. ``seed`` only changes the cells: their types, donors, TF levels,
    library sizes and count noise.

    Generative model, per cell ``i`` and gene ``g``:

    1. cell type ~ ``proportions``; donor uniform over H1-H3 (healthy) and F1-F3 (failing);
       batches b1 = {H1, F1}, b2 = {H2, F2}, b3 = {H3, F3}. Cardiomyocytes of failing donors have
       ``state = "diseased"``; every other cell is ``"healthy"``.
    2. TF activity ``a`` from the ``tf_activity`` table (some cells of a type have a TF "off"),
       times log-normal cell-to-cell noise; TFs that are targets get ``0.5 x`` their network input.
    3. target rate = ``rate * (leak + sum_act w h(a) + sum_syn w h(a1) h(a2)) / (1 + sum_rep w
       h(a))`` with ``h(a) = a / (a + 0.5)``, using only edges active in the cell's type;
       TF rate = ``rate * a``; other genes ``rate * exp(lfc[cell type])``.
    4. donor and batch log-normal gene effects; low-quality cells get 15x mitochondrial rates and
       0.3x library size; 2 % (low quality: 15 %) ambient RNA mixed in.
    5. counts ~ Poisson(library size x proportion x Gamma(1/dispersion, dispersion)).

    Parameters
    ----------
    n_cells
        Number of cells.
    seed
        Random seed; same seed -> identical data.
    proportions
        Cell type -> relative abundance (default: the design's proportions).
    low_quality_fraction
        Fraction of low-quality cells (``obs["low_quality"]``).
    library_size, library_sigma
        Median and log-sd of the (log-normal) library size before cell-type and batch factors.
    ambient_fraction
        Typical fraction of ambient ("soup") RNA per droplet.
    return_activity
        Also store the latent TF activities in ``adata.obsm["tf_activity"]`` (a DataFrame with
        one column per TF symbol) -- the per-cell truth, for checking predictions.
    progress
        Show a progress bar while sampling.
    chunk_size
        Cells sampled at a time (memory ~ chunk_size x 2,000 x 8 bytes).

    Returns
    -------
    anndata.AnnData
        ``X``: CSR float32 integer counts; ``var_names`` Ensembl IDs with ``ensembl_id``,
        ``gene_symbol``, ``gene_class``; ``obs``: ``cell_id``, ``cell_type``, ``state``,
        ``n_counts``, ``donor``, ``batch``, ``low_quality``.

    Examples
    --------
    >>> adata = simulate_tissue(500, seed=7, progress=False)
    >>> adata.shape
    (500, 2000)
    >>> sorted(adata.obs["state"].unique())
    ['diseased', 'healthy']
    >>> bool((adata.X.data == adata.X.data.round()).all())
    True
    """
    import anndata as ad

    design = _read_design()
    m = _Model(design)
    gt = design["gt"]
    cts = m.cell_types
    _validate_sim_args(n_cells, seed, proportions, low_quality_fraction, library_size, cts)
    n_cells = int(n_cells)
    props = proportions if proportions is not None else gt["cell_type_proportions"]
    p = np.array([props.get(c, 0.0) for c in cts], float)
    p = p / p.sum()

    rng = np.random.default_rng(int(seed))
    G, T = len(m.genes), len(m.tfs)
    ctype = rng.choice(len(cts), size=n_cells, p=p)
    donor_i = rng.integers(0, len(DONORS), size=n_cells)
    donor = np.array(DONORS)[donor_i]
    failing = np.isin(donor, FAILING_DONORS)
    diseased = failing & (ctype == cts.index(gt["disease"]["cell_type"]))
    batch = np.array([DONOR_BATCH[d] for d in donor])
    lowq = rng.random(n_cells) < low_quality_fraction

    # --- TF activities ---
    base = np.full((n_cells, T), BASAL_TF)
    for t, c, state, level, on_frac in m.tf_rows:
        sel = ctype == c
        if state == "healthy":
            sel &= ~diseased
        elif state == "diseased":
            sel &= diseased
        k = int(sel.sum())
        if k == 0:
            continue
        on = rng.random(k) < on_frac
        base[sel, t] = np.where(on, level, level * OFF_FACTOR)
    act = base * np.exp(rng.normal(0.0, TF_NOISE, size=(n_cells, T)))
    intrinsic = act.copy()
    sec = np.where(m.tf_regulated)[0]
    sec_noise = np.exp(rng.normal(0.0, TF_NOISE, size=(n_cells, len(sec))))
    for _ in range(3):  # secondary TFs: depth of the TF->TF graph is <= 2
        H = _hill(act)
        drive = np.zeros((n_cells, len(sec)))
        for c in range(len(cts)):
            sel = ctype == c
            if sel.any():
                a_in, r_in = m.network_input(H[sel], c)
                drive[sel] = a_in[:, m.sec_cols] / (1.0 + r_in[:, m.sec_cols])
        act[:, sec] = intrinsic[:, sec] + SECONDARY_SCALE * drive * sec_noise
    H = _hill(act)
    # regulated genes: rate multiplier (leak + activation) / (1 + repression), n x R
    reg_mult = np.empty((n_cells, len(m.reg_idx)))
    for c in range(len(cts)):
        sel = ctype == c
        if sel.any():
            a_in, r_in = m.network_input(H[sel], c)
            reg_mult[sel] = (m.leak[m.reg_idx] + a_in) / (1.0 + r_in)

    # --- gene effects of donors / batches, libraries, ambient ---
    donor_eff = np.exp(rng.normal(0.0, DONOR_SD, size=(len(DONORS), G)))
    batches = sorted(BATCH_LIBRARY)
    batch_eff = np.exp(rng.normal(0.0, BATCH_SD, size=(len(batches), G)))
    batch_i = np.array([batches.index(b) for b in batch])
    lib = np.exp(rng.normal(np.log(library_size), library_sigma, size=n_cells))
    lib *= np.array([TYPE_LIBRARY.get(c, 1.0) for c in cts])[ctype]
    lib *= np.array([BATCH_LIBRARY[b] for b in batch])
    lib *= np.where(lowq, LQ_LIBRARY_FACTOR, 1.0)
    amb = ambient_fraction * np.exp(rng.normal(0.0, 0.5, size=n_cells))
    amb = np.clip(np.where(lowq, 0.15, amb), 0.0, 0.5)

    base_rates = m.rate * np.exp(m.lfc)  # C x G, unregulated genes
    tf_rate = m.rate[m.tf_gidx]
    reg_rate = m.rate[m.reg_idx]

    def rates(idx):
        """Relative expression (rows sum to 1) of cells idx, without ambient RNA."""
        R = base_rates[ctype[idx]]
        R[:, m.reg_idx] = reg_rate * reg_mult[idx]
        R[:, m.tf_gidx] = tf_rate * act[idx]
        R *= donor_eff[donor_i[idx]] * batch_eff[batch_i[idx]]
        R[np.ix_(lowq[idx], m.is_mito)] *= LQ_MITO_FACTOR
        R /= R.sum(1, keepdims=True)
        return R

    chunks = [np.arange(s, min(s + chunk_size, n_cells)) for s in range(0, n_cells, chunk_size)]
    # ambient profile = average composition of the (good) cells in this sample
    soup = np.zeros(G)
    for idx in chunks:
        soup += rates(idx)[~lowq[idx]].sum(0)
    soup /= soup.sum()

    shape = 1.0 / m.disp
    blocks = []
    for idx in _progress(chunks, enabled=progress and len(chunks) > 1,
                        desc="simulating tissue", unit="chunk"):
        P = rates(idx)
        P = (1.0 - amb[idx, None]) * P + amb[idx, None] * soup
        lam = lib[idx, None] * P * rng.gamma(shape, m.disp, size=(len(idx), G))
        counts = rng.poisson(lam).astype(np.float32)
        blocks.append(sp.csr_matrix(counts))
    X = sp.vstack(blocks, format="csr", dtype=np.float32)

    cell_id = [f"s{int(seed)}_{i:06d}" for i in range(n_cells)]
    n_counts = np.asarray(X.sum(1)).ravel()
    obs = pd.DataFrame(
        {
            "cell_id": cell_id,
            "cell_type": pd.Categorical(np.array(cts)[ctype], categories=cts),
            "state": pd.Categorical(np.where(diseased, "diseased", "healthy"),
                                    categories=["healthy", "diseased"]),
            "n_counts": n_counts.astype(np.float32),
            "donor": pd.Categorical(donor, categories=DONORS),
            "batch": pd.Categorical(batch, categories=batches),
            "low_quality": lowq,
        },
        index=pd.Index(cell_id, name=None),
    )
    var = pd.DataFrame(
        {
            "ensembl_id": m.genes["ensembl_id"].to_numpy(),
            "gene_symbol": m.genes["gene_symbol"].to_numpy(),
            "gene_class": pd.Categorical(
                m.genes["gene_class"],
                categories=["tf", "target", "housekeeping", "mito", "ribo", "background"]),
        },
        index=pd.Index(m.genes["ensembl_id"].to_numpy(), name=None),
    )
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["teaching_tissue"] = {
        "seed": int(seed), "n_cells": n_cells, "sim_version": SIM_VERSION,
        "design_fingerprint": design["fingerprint"], "numpy_version": np.__version__,
    }
    if return_activity:
        sym = m.genes.set_index("ensembl_id")["gene_symbol"]
        adata.obsm["tf_activity"] = pd.DataFrame(
            act, index=adata.obs_names, columns=[sym[t] for t in m.tfs]
        )
    return adata


# ---------------------------------------------------------------------------------------------
# splits and cache
# ---------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Folder for generated data: ``$COURSE_HELPERS_CACHE`` or ``~/.cache/course_helpers``.

    Examples
    --------
    >>> cache_dir().name in {"course_helpers"} or True
    True
    """
    env = os.environ.get("COURSE_HELPERS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "course_helpers"


def _write_h5ad(adata, path: Path, compression="gzip"):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    adata.write_h5ad(tmp, compression=compression)
    os.replace(tmp, path)


def load_tissue(split: str = "chapter", *, regenerate: bool = False,
                progress: bool = True) -> anndata.AnnData:  # noqa: F821
    """Load a split of the teaching tissue.

    Parameters
    ----------
    split
        ``"chapter"`` (3,000 cells, seed 1, shipped with the package), ``"pretrain"``
        (20,000 cells, seed 2) or ``"heldout"`` (2,000 cells, seed 3). Non-shipped splits are
        simulated on first use (a few seconds) and cached in :func:`cache_dir`.
    regenerate
        Simulate again even if a file exists.
    progress
        Show a progress bar while simulating.

    Returns
    -------
    anndata.AnnData
        Raw integer counts; schema as in :func:`simulate_tissue`.

    Examples
    --------
    >>> adata = load_tissue("chapter")
    >>> adata.n_obs, adata.n_vars
    (3000, 2000)
    >>> adata.obs.columns.tolist()
    ['cell_id', 'cell_type', 'state', 'n_counts', 'donor', 'batch', 'low_quality']
    """
    import anndata as ad

    if split not in SPLITS:
        raise CourseInputError(
            f"unknown split {split!r}. Fix: use one of {sorted(SPLITS)} (or simulate_tissue())."
        )
    spec = SPLITS[split]
    fp = _read_design()["fingerprint"]
    shipped = TISSUE_DIR / f"tissue_{split}.h5ad"
    if spec["shipped"] and shipped.is_file() and not regenerate:
        adata = ad.read_h5ad(shipped)
        if adata.uns.get("teaching_tissue", {}).get("design_fingerprint") == fp:
            return adata
        warnings.warn(
            f"{shipped.name} was made from an older tissue design; simulating it again "
            "(run `python data_scripts/simulate_tissue.py --split chapter` to refresh it)."
        )
    path = cache_dir() / f"tissue_{split}_n{spec['n_cells']}_s{spec['seed']}_{fp}.h5ad"
    if path.is_file() and not regenerate:
        try:
            return ad.read_h5ad(path)
        except (OSError, KeyError, ValueError) as e:  # a broken cache file: simulate again
            warnings.warn(f"cached {split} split at {path} is unreadable ({e}); simulating again.")
    adata = simulate_tissue(spec["n_cells"], spec["seed"], progress=progress)
    try:
        _write_h5ad(adata, path, compression="gzip")
    except OSError as e:  # read-only home: still return the data
        warnings.warn(f"could not cache {split} split at {path}: {e}")
    return adata


# ---------------------------------------------------------------------------------------------
# real PBMC counts
# ---------------------------------------------------------------------------------------------
def load_pbmc(*, map_to_ensembl: bool = True) -> anndata.AnnData:  # noqa: F821
    """Real PBMC raw counts from scanpy's bundled ``pbmc68k_reduced`` (no download).

    ``pbmc68k_reduced`` stores log-normalised values of 765 genes in ``.raw``; the integer
    counts are recovered exactly as ``round(expm1(raw.X) * n_counts / 1e4)`` (the stored values
    are rounded to 3 decimals, so the recovery is checked to be within 0.5 of an integer).

    Parameters
    ----------
    map_to_ensembl
        Use Ensembl IDs as ``var_names`` (needed by Geneformer). Symbols are mapped with a
        committed table derived from the Geneformer V1 gene-name dictionary, including renamed
        symbols (e.g. ``IGJ`` -> ``JCHAIN``); genes that cannot be mapped are dropped and listed
        in ``adata.uns["unmapped_symbols"]``. With ``False`` the symbols stay as ``var_names``.

    Returns
    -------
    anndata.AnnData
        700 cells; ``X`` CSR float32 integer counts; ``var``: ``gene_symbol``, ``ensembl_id``,
        ``mapping``; ``obs``: ``cell_id``, ``cell_type`` (= ``bulk_labels``), ``n_counts`` (total
        counts of the *whole* transcriptome, as the tokenizer needs), ``n_genes``,
        ``percent_mito``; ``obsm["X_umap"]``.

    Examples
    --------
    >>> pbmc = load_pbmc()
    >>> pbmc.n_obs
    700
    >>> pbmc.var_names[0].startswith("ENSG")
    True
    >>> bool((pbmc.X.data == pbmc.X.data.round()).all())
    True
    """
    import anndata as ad
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    raw = src.raw
    L = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    n_counts = src.obs["n_counts"].to_numpy(float)
    c = np.expm1(L.astype(np.float64)) * n_counts[:, None] / 1e4
    counts = np.rint(c)
    dev = float(np.abs(c - counts).max())
    if dev >= 0.25:  # pragma: no cover - guards against a changed scanpy file
        raise CourseInputError(
            f"pbmc68k_reduced counts do not recover to integers (max deviation {dev:.3f}). "
            "Fix: check your scanpy version's bundled dataset."
        )
    symbols = pd.Index(raw.var_names.astype(str))
    table = pd.read_csv(TISSUE_DIR / "pbmc68k_genes.tsv", sep="\t", keep_default_na=False)
    table = table.set_index("gene_symbol").reindex(symbols)
    var = pd.DataFrame(
        {
            "gene_symbol": symbols.to_numpy(),
            "ensembl_id": table["ensembl_id"].fillna("").to_numpy(),
            "mapping": table["mapping"].fillna("unmapped").to_numpy(),
        },
        index=symbols.to_numpy(),
    )
    obs = pd.DataFrame(
        {
            "cell_id": src.obs_names.astype(str),
            "cell_type": src.obs["bulk_labels"].astype("category").to_numpy(),
            "n_counts": n_counts.astype(np.float32),
            "n_genes": src.obs["n_genes"].to_numpy(),
            "percent_mito": src.obs["percent_mito"].to_numpy(),
        },
        index=src.obs_names.astype(str),
    )
    adata = ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
    adata.obsm["X_umap"] = np.asarray(src.obsm["X_umap"])
    adata.uns["source"] = (
        "scanpy.datasets.pbmc68k_reduced(): 700 PBMCs (10x, Zheng et al. 2017), 765 genes; "
        "counts = round(expm1(raw.X) * n_counts / 1e4)"
    )
    if map_to_ensembl:
        ok = var["ensembl_id"].to_numpy() != ""
        adata.uns["unmapped_symbols"] = list(var.index[~ok])
        adata = adata[:, ok].copy()
        adata.var_names = adata.var["ensembl_id"].to_numpy()
        if not adata.var_names.is_unique:  # pragma: no cover
            adata.var_names_make_unique()
    else:
        adata.uns["unmapped_symbols"] = list(var.index[var["ensembl_id"] == ""])
    return adata


# ---------------------------------------------------------------------------------------------
# realism statistics
# ---------------------------------------------------------------------------------------------
def nonzero_medians(adata, *, target_sum: float = 1e4) -> pd.Series:
    """Geneformer-style gene medians: the non-zero median of ``count / n_counts * 10,000``.

    Parameters
    ----------
    adata
        AnnData with raw counts in ``X`` and (optionally) ``obs["n_counts"]``; without it the
        row sums are used.
    target_sum
        Normalisation target (Geneformer uses 10,000).

    Returns
    -------
    pandas.Series
        One value per gene (``NaN`` for genes never detected), indexed like ``var_names``.

    Examples
    --------
    >>> a = simulate_tissue(300, seed=0, progress=False)
    >>> med = nonzero_medians(a)
    >>> bool(med[a.var["gene_class"] == "housekeeping"].median() > med.median())
    True
    """
    X = sp.csr_matrix(adata.X, dtype=np.float64)
    n = (adata.obs["n_counts"].to_numpy(float) if "n_counts" in adata.obs
         else np.asarray(X.sum(1)).ravel())
    if (n <= 0).any():
        raise CourseInputError("some cells have n_counts <= 0. Fix: remove empty cells first.")
    Xn = sp.diags(target_sum / n) @ X
    Xn = Xn.tocsc()
    out = np.full(Xn.shape[1], np.nan)
    for j in range(Xn.shape[1]):
        d = Xn.data[Xn.indptr[j]:Xn.indptr[j + 1]]
        d = d[d > 0]
        if d.size:
            out[j] = np.median(d)
    return pd.Series(out, index=adata.var_names)


def _one_realism_row(adata) -> dict:
    X = sp.csr_matrix(adata.X)
    n_cells, n_genes = X.shape
    tot = np.asarray(X.sum(1)).ravel()
    lib = adata.obs["n_counts"].to_numpy(float) if "n_counts" in adata.obs else tot
    det = np.diff(X.indptr)
    if "gene_symbol" in adata.var:
        sym = adata.var["gene_symbol"].astype(str)
    else:
        sym = pd.Series(adata.var_names.astype(str), index=adata.var_names)
    mito = sym.str.upper().str.startswith("MT-").to_numpy()
    if "percent_mito" in adata.obs:  # e.g. pbmc68k_reduced: its X lacks most MT- genes
        mt_frac = adata.obs["percent_mito"].to_numpy(float)
    elif mito.any():
        mt_frac = np.asarray(X[:, mito].sum(1)).ravel() / np.maximum(tot, 1)
    else:
        mt_frac = np.full(n_cells, np.nan)
    mean = np.asarray(X.mean(0)).ravel()
    sq = np.asarray(X.multiply(X).mean(0)).ravel()
    var = sq - mean ** 2
    keep = mean > 0.05
    phi = (var[keep] - mean[keep]) / mean[keep] ** 2
    lm, lv = np.log10(mean[mean > 0]), np.log10(np.maximum(var[mean > 0], 1e-12))
    slope = float(np.polyfit(lm, lv, 1)[0]) if lm.size > 2 else np.nan
    return {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "library_size_median": float(np.median(lib)),
        "library_size_q05": float(np.quantile(lib, 0.05)),
        "library_size_q95": float(np.quantile(lib, 0.95)),
        "counts_in_X_median": float(np.median(tot)),
        "genes_per_cell_median": float(np.median(det)),
        "genes_per_cell_q05": float(np.quantile(det, 0.05)),
        "genes_per_cell_q95": float(np.quantile(det, 0.95)),
        "genes_per_cell_obs_median": float(np.median(adata.obs["n_genes"]))
        if "n_genes" in adata.obs else float(np.median(det)),
        "zero_fraction": float(1.0 - X.nnz / (n_cells * n_genes)),
        "mito_fraction_median": float(np.nanmedian(mt_frac)),
        "frac_genes_overdispersed": float(np.mean(var[keep] > mean[keep])) if keep.any()
        else np.nan,
        "nb_dispersion_median": float(np.median(phi)) if keep.any() else np.nan,
        "log_var_vs_log_mean_slope": slope,
    }


def realism_table(adata, *, name: str | None = None) -> pd.DataFrame:
    """Droplet-likeness summary of one or several count matrices.

    Parameters
    ----------
    adata
        An AnnData with raw counts, or a ``{name: AnnData}`` mapping to compare several
        (e.g. the tissue and real PBMCs).
    name
        Row label when a single AnnData is given.

    Returns
    -------
    pandas.DataFrame
        One row per data set: library size (``obs["n_counts"]``) median and 5-95 % range,
        detected genes per cell (in ``X``; ``genes_per_cell_obs_median`` uses ``obs["n_genes"]``
        when present, e.g. the whole-transcriptome PBMC value), zero fraction, median
        mitochondrial fraction (``obs["percent_mito"]`` when present, else MT- genes of ``X``),
        fraction of genes with variance > mean (overdispersion), median method-of-moments NB dispersion
        (genes with mean > 0.05) and the slope of log variance on log mean.
        Note: PBMC ``n_counts`` counts the whole transcriptome while ``X`` holds 765 genes.

    Examples
    --------
    >>> t = realism_table({"tissue": load_tissue("chapter")})
    >>> bool(0.80 <= t.loc["tissue", "zero_fraction"] <= 0.95)
    True
    """
    if isinstance(adata, Mapping):
        rows = {k: _one_realism_row(v) for k, v in adata.items()}
    else:
        rows = {name or "data": _one_realism_row(adata)}
    return pd.DataFrame.from_dict(rows, orient="index")
