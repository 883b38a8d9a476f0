"""The simulator of the teaching tissue: :func:`simulate_tissue` turns the planted network into
droplet-like counts (cell types, donors, batches, disease, noise, low-quality cells).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._utils import CourseInputError
from .._utils import progress as _progress
from .design import SIM_VERSION, _read_design

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
