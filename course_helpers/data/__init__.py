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

Files
-----
- ``tissue.py``: load_tissue (named splits, cached), cache_dir, SPLITS
- ``simulate.py``: simulate_tissue, the simulator and its constants (donors, batches, noise)
- ``ground_truth.py``: GroundTruth and load_ground_truth (the planted network and annotations)
- ``design.py``: the design tables in assets/tissue/ and tissue_genes
- ``pbmc.py``: load_pbmc (real PBMC counts with Ensembl IDs)
- ``realism.py``: nonzero_medians and realism_table (droplet-likeness statistics)
"""

from __future__ import annotations

from .design import SIM_VERSION as SIM_VERSION
from .design import TISSUE_DIR as TISSUE_DIR
from .design import tissue_genes
from .ground_truth import GroundTruth, load_ground_truth
from .pbmc import load_pbmc
from .realism import nonzero_medians, realism_table
from .simulate import BASAL_TF as BASAL_TF
from .simulate import BATCH_LIBRARY as BATCH_LIBRARY
from .simulate import BATCH_SD as BATCH_SD
from .simulate import DONOR_BATCH as DONOR_BATCH
from .simulate import DONOR_SD as DONOR_SD
from .simulate import DONORS as DONORS
from .simulate import FAILING_DONORS as FAILING_DONORS
from .simulate import HILL_K as HILL_K
from .simulate import LQ_LIBRARY_FACTOR as LQ_LIBRARY_FACTOR
from .simulate import LQ_MITO_FACTOR as LQ_MITO_FACTOR
from .simulate import OFF_FACTOR as OFF_FACTOR
from .simulate import SECONDARY_SCALE as SECONDARY_SCALE
from .simulate import TF_NOISE as TF_NOISE
from .simulate import TYPE_LIBRARY as TYPE_LIBRARY
from .simulate import simulate_tissue
from .tissue import SPLITS, cache_dir, load_tissue

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
