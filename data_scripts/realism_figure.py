#!/usr/bin/env python
"""Draw ``book/figures/tissue_realism.png``: is the teaching tissue droplet-like?

Compares the shipped chapter split of the teaching tissue with real PBMC counts (scanpy's bundled
``pbmc68k_reduced``, raw counts recovered as ``round(expm1(raw.X) * n_counts / 1e4)``):
library size, detected genes per cell, per-gene zero fraction vs mean, mean-variance relation,
mitochondrial fraction vs library size (QC) and the share of counts per gene class.

Usage::

    python data_scripts/realism_figure.py [--out book/figures/tissue_realism.png]

Caveat shown on the figure: ``pbmc68k_reduced`` keeps only 765 (mostly variable) genes in
``.raw``; its ``n_counts``/``n_genes`` in ``obs`` describe the whole transcriptome.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from course_helpers.data import load_pbmc, load_tissue, realism_table

TISSUE_C, PBMC_C = "#c0392b", "#2471a3"


def _gene_stats(X):
    X = sp.csr_matrix(X)
    mean = np.asarray(X.mean(0)).ravel()
    var = np.asarray(X.multiply(X).mean(0)).ravel() - mean ** 2
    zero = 1 - np.diff(X.tocsc().indptr) / X.shape[0]
    return mean, var, zero


def make_figure(out: Path) -> None:
    tissue = load_tissue("chapter")
    pbmc = load_pbmc()
    tab = realism_table({"tissue": tissue, "PBMC": pbmc})
    good = ~tissue.obs["low_quality"].to_numpy()

    fig, axes = plt.subplots(2, 3, figsize=(14, 8.2))
    ax = axes[0, 0]
    bins = np.linspace(2.3, 4.3, 45)
    ax.hist(np.log10(tissue.obs["n_counts"]), bins=bins, density=True, alpha=0.6, color=TISSUE_C,
            label="tissue (2,000 genes)")
    ax.hist(np.log10(pbmc.obs["n_counts"]), bins=bins, density=True, alpha=0.6, color=PBMC_C,
            label="PBMC (whole transcriptome)")
    ax.set(xlabel="log10 library size (n_counts)", ylabel="density", title="Library size")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    det_t = np.diff(sp.csr_matrix(tissue.X).indptr)
    det_p = np.diff(sp.csr_matrix(pbmc.X).indptr)
    bins = np.linspace(0, 1600, 50)
    ax.hist(det_t, bins=bins, density=True, alpha=0.6, color=TISSUE_C, label="tissue, of 2,000")
    ax.hist(det_p, bins=bins, density=True, alpha=0.6, color=PBMC_C, label="PBMC, of 750 in X")
    ax.hist(pbmc.obs["n_genes"], bins=bins, density=True, histtype="step", lw=2, color=PBMC_C,
            label="PBMC, whole transcriptome")
    ax.set(xlabel="detected genes per cell", ylabel="density", title="Genes per cell")
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    for ad_, c, lab in ((tissue, TISSUE_C, "tissue"), (pbmc, PBMC_C, "PBMC")):
        m, v, z = _gene_stats(ad_.X)
        ok = m > 0
        ax.scatter(m[ok], z[ok], s=4, alpha=0.4, color=c, label=lab, rasterized=True)
    xs = np.logspace(-3, 3, 100)
    ax.plot(xs, np.exp(-xs), "k--", lw=1, label="Poisson exp(-mean)")
    ax.set(xscale="log", xlabel="gene mean count", ylabel="fraction of cells with 0",
           title=f"Zeros: tissue {tab.loc['tissue', 'zero_fraction']:.0%}, "
                 f"PBMC X {tab.loc['PBMC', 'zero_fraction']:.0%}")
    ax.legend(fontsize=8, markerscale=3)

    ax = axes[1, 0]
    for ad_, c, lab in ((tissue, TISSUE_C, "tissue"), (pbmc, PBMC_C, "PBMC")):
        m, v, _ = _gene_stats(ad_.X)
        ok = (m > 0) & (v > 0)
        ax.scatter(m[ok], v[ok], s=4, alpha=0.4, color=c, label=lab, rasterized=True)
    xs = np.logspace(-3, 3, 100)
    ax.plot(xs, xs, "k--", lw=1, label="Poisson (var = mean)")
    ax.set(xscale="log", yscale="log", xlabel="gene mean count", ylabel="gene variance",
           title="Mean-variance (overdispersion)")
    ax.legend(fontsize=8, markerscale=3)

    ax = axes[1, 1]
    sym = tissue.var["gene_symbol"].astype(str)
    mt = sym.str.startswith("MT-").to_numpy()
    X = sp.csr_matrix(tissue.X)
    mtf = np.asarray(X[:, mt].sum(1)).ravel() / tissue.obs["n_counts"].to_numpy()
    ax.scatter(tissue.obs["n_counts"][good], mtf[good], s=4, alpha=0.4, color=TISSUE_C,
               label="tissue", rasterized=True)
    ax.scatter(tissue.obs["n_counts"][~good], mtf[~good], s=8, color="k",
               label="tissue, low_quality", rasterized=True)
    ax.scatter(pbmc.obs["n_counts"], pbmc.obs["percent_mito"], s=4, alpha=0.5, color=PBMC_C,
               label="PBMC (obs percent_mito)", rasterized=True)
    ax.set(xscale="log", xlabel="library size", ylabel="mitochondrial fraction",
           title="QC: MT fraction vs library size")
    ax.legend(fontsize=8, markerscale=2)

    ax = axes[1, 2]
    tot = np.asarray(X.sum(0)).ravel()
    share = (
        tissue.var.assign(c=tot).groupby("gene_class", observed=True)["c"].sum() / tot.sum()
    ).sort_values()
    ax.barh(share.index.astype(str), share.values, color=TISSUE_C, alpha=0.8)
    for i, v in enumerate(share.values):
        ax.text(v + 0.005, i, f"{v:.0%}", va="center", fontsize=8)
    ax.set(xlabel="share of all tissue counts", title="Counts per gene class (tissue)",
           xlim=(0, max(share.values) * 1.25))

    fig.suptitle(
        "Teaching tissue (chapter split, 3,000 cells) vs real PBMC (pbmc68k_reduced, 700 cells)\n"
        "PBMC X holds only 765 variable genes (hence fewer zeros) and its cells were pre-filtered "
        "to > 1,000 genes (hence a narrower library range).",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(tab.T.to_string())
    print(f"wrote {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "book" / "figures" / "tissue_realism.png")
    make_figure(ap.parse_args(argv).out)


if __name__ == "__main__":
    main()
