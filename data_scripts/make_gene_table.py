#!/usr/bin/env python
"""Write the design of the known-truth teaching tissue as small committed tables.

This script is run by maintainers, not learners. It reads the Geneformer V1 vocabulary export
(``../shared/geneformer-v1/vocab_gc30M.tsv`` and ``gene_name_id_gc30M.tsv``; override with
``--shared``) **once**, picks the tissue's genes, plants the regulatory network and writes

``course_helpers/assets/tissue/``
    ``genes.tsv``        one row per simulated gene: Ensembl ID, symbol, class, expression
                         parameters (rate, leak, dispersion, per-cell-type log fold changes)
    ``edges.tsv``        the planted TF -> target network (sign, weight, contexts, partner TF)
    ``tf_activity.tsv``  how active each TF is in each cell type / state
    ``ground_truth.json`` cell types, master regulators, programs, disease, synergy pairs
    ``pbmc68k_genes.tsv`` symbol -> Ensembl ID table for scanpy's ``pbmc68k_reduced`` genes

The package (``course_helpers.data``) only reads these files; it never touches ``../shared``.

Usage::

    python data_scripts/make_gene_table.py            # writes the tables
    python data_scripts/simulate_tissue.py --split chapter   # then re-simulate the shipped split

The scenario is a *simulated* adult human heart: six cell types driven by real master regulators,
"failing" cardiomyocytes driven by NFATC4 (calcineurin-NFAT signalling is a classic driver of
pathological cardiac hypertrophy) and GATA4-TBX5 cooperativity. It is a teaching device with real gene
names, not a model of real cardiac biology: every number here is invented.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "course_helpers" / "assets" / "tissue"
PARAM_SEED = 20240611  # fixes the gene-level parameters (never the cells)

N_GENES_TOTAL = 2000

CELL_TYPES = ["cardiomyocyte", "fibroblast", "endothelial", "macrophage", "smooth_muscle", "t_cell"]
CELL_TYPE_PROPORTIONS = {
    "cardiomyocyte": 0.30,
    "fibroblast": 0.22,
    "endothelial": 0.22,
    "macrophage": 0.10,
    "smooth_muscle": 0.08,
    "t_cell": 0.08,
}
MASTER_REGULATORS = {
    "cardiomyocyte": ["GATA4", "TBX5", "NKX2-5", "MEF2C"],
    "fibroblast": ["TCF21", "TWIST1"],
    "endothelial": ["ERG", "SOX17"],
    "macrophage": ["SPI1", "CEBPA"],
    "smooth_muscle": ["SRF", "MYOCD"],
    "t_cell": ["TCF7", "GATA3"],
}
# TFs downstream of the masters (their level is set by the network, plus any intrinsic level)
SECONDARY_TFS = ["HAND2", "PRRX1", "FLI1", "MAFB", "BCL11B"]
# Expressed, cell-type-restricted TFs with NO planted targets (decoys for network inference)
ORPHAN_TFS = ["KLF2", "NR2F2", "ZEB2"]
DISEASE_DRIVER = "NFATC4"

# --- TF activity table -------------------------------------------------------------------------
# (tf, cell_type, state, level, on_fraction). level = mean activity of the TF in "on" cells
# (arbitrary units; 1 = fully on). With probability 1 - on_fraction a cell of that type has the TF
# "off" (level x 0.05) -- cell-to-cell heterogeneity that creates TBX5-low / GATA4-low
# cardiomyocytes (needed to *see* the GATA4-TBX5 synergy) and arterial (SOX17+) endothelium.
# Any TF not listed for a cell type has a basal activity of 0.02 there (sporadic detection).
TF_ACTIVITY = [
    ("GATA4", "cardiomyocyte", "any", 1.0, 0.85),
    ("GATA4", "fibroblast", "any", 0.6, 1.0),
    ("TBX5", "cardiomyocyte", "any", 1.0, 0.70),
    ("NKX2-5", "cardiomyocyte", "any", 1.0, 1.0),
    ("MEF2C", "cardiomyocyte", "any", 1.0, 1.0),
    ("MEF2C", "macrophage", "any", 0.5, 1.0),
    ("MEF2C", "smooth_muscle", "any", 0.4, 1.0),
    ("TCF21", "fibroblast", "any", 1.0, 1.0),
    ("TWIST1", "fibroblast", "any", 1.0, 1.0),
    ("TWIST1", "smooth_muscle", "any", 0.1, 1.0),
    ("ERG", "endothelial", "any", 1.0, 1.0),
    ("SOX17", "endothelial", "any", 1.0, 0.40),
    ("FLI1", "macrophage", "any", 0.5, 1.0),
    ("FLI1", "t_cell", "any", 0.5, 1.0),
    ("SPI1", "macrophage", "any", 1.0, 1.0),
    ("CEBPA", "macrophage", "any", 1.0, 1.0),
    ("SRF", "smooth_muscle", "any", 1.0, 1.0),
    ("SRF", "cardiomyocyte", "any", 0.6, 1.0),
    ("SRF", "fibroblast", "any", 0.3, 1.0),
    ("SRF", "endothelial", "any", 0.2, 1.0),
    ("SRF", "macrophage", "any", 0.2, 1.0),
    ("SRF", "t_cell", "any", 0.2, 1.0),
    ("MYOCD", "smooth_muscle", "any", 1.0, 1.0),
    ("MYOCD", "cardiomyocyte", "any", 0.3, 1.0),
    ("TCF7", "t_cell", "any", 1.0, 1.0),
    ("GATA3", "t_cell", "any", 1.0, 1.0),
    ("KLF2", "endothelial", "any", 0.8, 1.0),
    ("KLF2", "t_cell", "any", 0.4, 1.0),
    ("NR2F2", "fibroblast", "any", 0.6, 1.0),
    ("NR2F2", "endothelial", "any", 0.4, 0.6),
    ("ZEB2", "macrophage", "any", 0.6, 1.0),
    ("ZEB2", "fibroblast", "any", 0.3, 1.0),
    # the disease driver: switched on in failing cardiomyocytes only; low "leak" elsewhere so that
    # its corpus non-zero median is low (one count) and it ranks high where it is really expressed
    ("NFATC4", "cardiomyocyte", "healthy", 0.02, 1.0),
    ("NFATC4", "cardiomyocyte", "diseased", 1.8, 1.0),
    ("NFATC4", "fibroblast", "any", 0.12, 1.0),
    ("NFATC4", "smooth_muscle", "any", 0.12, 1.0),
    ("NFATC4", "endothelial", "any", 0.08, 1.0),
]

# --- planted edges -------------------------------------------------------------------------------
# (source, targets, sign, weight, contexts, program). contexts: "all" or cell types joined by ",".
CM = "cardiomyocyte"
EDGES = [
    # cardiomyocyte programme
    ("GATA4", "MYH6 TNNT2 MYBPC3 TNNI3 ATP2A2 HAND2 CSRP3", +1, 1.5, CM, CM),
    ("NKX2-5", "ACTN2 TNNC1 MYL3 GJA1 KCNJ2 HAND2 CORIN HSPB7 SMPX LMOD2 RBM20 CASQ2 KCNIP2 MYL2",
     +1, 1.5, CM, CM),
    ("MEF2C", "MB CKMT2 MYOM1 FHL2 TCAP COX6A2 FABP3 LDB3 PPARGC1A MYH7 ATP2A2", +1, 1.2, CM, CM),
    ("TBX5", "SORBS2 CMYA5", +1, 0.8, CM, CM),
    ("HAND2", "TTN RYR2 TRDN NEBL XIRP1 CMYA5 SLC8A1 PLN", +1, 1.2, CM, CM),
    ("SRF", "ACTC1 FHL2 MYH7", +1, 1.0, CM, CM),
    # fibroblast programme
    ("TCF21", "DCN LUM PDGFRA SCARA5 C7 ABCA8 DPT MFAP5 FBLN1 GSN", +1, 1.5, "fibroblast",
     "fibroblast"),
    ("TCF21", "ACTA2 CNN1", -1, 1.5, "fibroblast", "fibroblast"),
    ("TWIST1", "COL1A1 COL1A2 COL3A1 COL5A1 FBN1 ELN CDH11 PRRX1 SFRP2 FAP", +1, 1.5,
     "fibroblast", "fibroblast"),
    ("PRRX1", "COL1A1 MMP2 LOX THY1 FBLN2 PDGFRB COL6A1 TIMP2", +1, 1.2, "fibroblast",
     "fibroblast"),
    # endothelial programme
    ("ERG", "PECAM1 CDH5 VWF KDR TEK TIE1 CLDN5 EMCN FLT1 ESAM EGFL7 PLVAP RAMP2 ROBO4 FLI1",
     +1, 1.5, "endothelial", "endothelial"),
    ("FLI1", "CDH5 TIE1 AQP1 NOS3 ENG CD34", +1, 1.0, "endothelial", "endothelial"),
    ("SOX17", "GJA4 DLL4 EFNB2 SEMA3G CXCL12", +1, 1.8, "endothelial", "endothelial"),
    # macrophage programme
    ("SPI1", "CD68 CSF1R LYZ TYROBP FCER1G AIF1 CTSS CYBB ITGAM MAFB", +1, 1.5, "macrophage",
     "macrophage"),
    ("CEBPA", "CD14 LYZ MS4A7 FCGR3A MS4A6A", +1, 1.5, "macrophage", "macrophage"),
    ("MAFB", "C1QA C1QB C1QC CD163 MRC1 LYVE1 F13A1 TREM2", +1, 1.5, "macrophage", "macrophage"),
    ("MEF2C", "F13A1 MS4A6A", +1, 0.8, "macrophage", "macrophage"),
    ("FLI1", "FCGR3A", +1, 0.6, "macrophage", "macrophage"),
    # smooth-muscle programme (SRF needs its SMC partner chromatin; MYOCD is SMC-restricted here)
    ("SRF", "ACTA2 TAGLN MYL9 CNN1 CALD1 TPM2", +1, 1.5, "smooth_muscle", "smooth_muscle"),
    ("MYOCD", "MYH11 CNN1 LMOD1 SMTN KCNMB1 DES ACTG2", +1, 1.5, "smooth_muscle", "smooth_muscle"),
    ("MEF2C", "MYLK SYNPO2", +1, 1.0, "smooth_muscle", "smooth_muscle"),
    # T-cell programme
    ("TCF7", "CD3E CD3D CD3G IL7R CCR7 CD28 LCK BCL11B", +1, 1.5, "t_cell", "t_cell"),
    ("GATA3", "CD3E CD4 CD5 CD6 ITK IL7R BCL11B", +1, 1.3, "t_cell", "t_cell"),
    ("BCL11B", "CD2 CD247 ZAP70 IL2RG", +1, 1.2, "t_cell", "t_cell"),
    ("FLI1", "CD247", +1, 0.5, "t_cell", "t_cell"),
    # immediate-early genes: SRF acts in every context
    ("SRF", "FOS EGR1 JUNB IER2", +1, 1.2, "all", "immediate_early"),
]
# GATA4-TBX5 cooperativity: these targets need BOTH TFs (contribution w * h(GATA4) * h(TBX5))
SYNERGY = [("GATA4", "TBX5", "NPPA GJA5 MYL4 SCN5A KCNJ3 SLN", 2.5, "all")]
# disease programme of NFATC4 in cardiomyocytes (simulated "failing" state)
# "SYMBOL:weight"
DISEASE_UP = ("NPPB:3.0 RCAN1:2.0 ACTA1:2.0 ANKRD1:2.5 XIRP2:1.5 CCN2:1.5 FHL1:1.0 TRPC6:1.5 "
              "MYH7:0.8 CRYAB:1.0 UCHL1:1.5")
DISEASE_DOWN = "ATP2A2:2.0 MYH6:2.0 KCNIP2:2.5 PPARGC1A:1.5 CKMT2:1.0"

HOUSEKEEPING = [
    "ACTB", "GAPDH", "B2M", "EEF1A1", "TPT1", "FTL", "FTH1", "TMSB4X", "UBB", "UBC", "PPIA",
    "HSP90AB1", "TMSB10", "MYL6", "EEF2", "PFN1", "CFL1", "ACTG1", "HNRNPA1", "NACA", "EEF1G",
    "PABPC1", "H3-3B", "SRSF3", "RACK1", "YBX1", "NPM1", "HSPA8", "CALM2", "SERF2", "ATP5F1E",
    "COX4I1", "UQCRH", "NDUFA4", "PTMA", "ENO1", "LDHB", "ALDOA", "TUBA1B", "SH3BGRL3",
    "ARPC2", "OAZ1", "EIF1", "SAT1", "DDX5", "VIM", "S100A6", "HLA-B", "HLA-A",
]
# the top of the housekeeping distribution (rates per 10k UMIs)
HK_HIGH = {"TMSB4X": 180, "EEF1A1": 200, "ACTB": 150, "FTL": 150, "B2M": 120, "TPT1": 120,
           "FTH1": 120, "GAPDH": 90, "MYL6": 90, "TMSB10": 90}
MARKER_HIGH = {"MYH7": 300, "MB": 250, "TTN": 120, "TNNT2": 150, "ACTC1": 150, "MYL2": 200,
               "MYL3": 150, "DCN": 150, "COL1A2": 120, "COL3A1": 150, "COL1A1": 100, "LUM": 80,
               "VWF": 80, "PECAM1": 60, "CD74": 60, "LYZ": 200, "C1QA": 100, "C1QB": 100,
               "TYROBP": 80, "ACTA2": 250, "TAGLN": 200, "MYH11": 100, "MYL9": 120,
               "CD3E": 40, "IL7R": 40, "NPPA": 150, "NPPB": 120, "ANKRD1": 60, "ACTA1": 60,
               "FOS": 40, "EGR1": 30, "JUNB": 30, "CCN2": 40}
N_WEAK_PER_MASTER = 6
BG_RATE, BG_SD, BG_DISP = 0.12, 1.3, 0.4
WEAK_MASTERS = ["GATA4", "NKX2-5", "MEF2C", "TCF21", "TWIST1", "ERG", "SOX17", "SPI1", "CEBPA",
                "SRF", "MYOCD", "TCF7", "GATA3"]

RIBO_EXCLUDE = {"RPL10L", "RPL39L", "RPL3L", "RPS4Y2", "RPL7L1", "RPL26L1", "RPL22L1", "RPS27L"}

# pbmc68k_reduced symbols renamed since (old -> current HGNC symbol)
PBMC_ALIASES = {
    "ATPIF1": "ATP5IF1", "H1FX": "H1-10", "SELT": "SELENOT", "ATP5I": "ATP5ME", "IGJ": "JCHAIN",
    "FYB": "FYB1", "H2AFY": "MACROH2A1", "HIST1H4C": "H4C3", "HIST1H1E": "H1-4", "SEPT7": "SEPTIN7",
    "ATP5J2": "ATP5MF", "NGFRAP1": "BEX3", "CARS": "CARS1", "ADRBK1": "GRK2", "AMICA1": "JAML",
    "WBSCR22": "BUD23", "C10orf54": "VSIR", "FAM65B": "RIPOR2", "CCDC109B": "MCUB",
    "C9orf142": "PAXX", "ZNRD1": "POLR1H", "C6orf48": "SNHG32", "CCBL2": "KYAT3",
    "HIATL1": "MFSD14B", "PTPLAD2": "HACD4", "PPAPDC1B": "PLPP5", "C1orf228": "ARMH1",
    "C7orf55": "FMC1", "CCDC132": "VPS50", "FAM175B": "ABRAXAS2", "C10orf118": "CCDC186",
    "H2AFJ": "H2AJ", "WIBG": "PYM1", "ATP5B": "ATP5F1B", "KIAA0125": "FAM30A", "NDNL2": "NSMCE3",
    "VIMP": "SELENOS", "C16orf13": "METTL26", "TCEB2": "ELOB", "LSMD1": "NAA38", "PHB": "PHB1",
    "SEPT9": "SEPTIN9", "HMHA1": "ARHGAP45", "C19orf24": "FAM174C", "AES": "TLE5",
    "C19orf77": "SMIM24", "C19orf43": "TRIR", "UFD1L": "UFD1", "ATP5O": "ATP5PO",
}


def _split(s: str) -> list[str]:
    return [x.split(":")[0] for x in s.split()]


def _weighted(s: str) -> list[tuple[str, float]]:
    return [(x.split(":")[0], float(x.split(":")[1])) for x in s.split()]


def build(shared: Path) -> dict:
    """Build all design tables (returns a dict of DataFrames / JSON-able objects)."""
    rng = np.random.default_rng(PARAM_SEED)
    vocab = pd.read_csv(shared / "vocab_gc30M.tsv", sep="\t", dtype=str)
    vocab = vocab[vocab["gene_median"].notna() & vocab["gene_symbols"].notna()]
    sym2id = dict(zip(vocab["gene_symbols"], vocab["ensembl_id"]))

    tfs = []
    for ms in MASTER_REGULATORS.values():
        tfs += [t for t in ms if t not in tfs]
    tfs += SECONDARY_TFS + ORPHAN_TFS + [DISEASE_DRIVER]

    # ---- edges (symbols first) ----
    rows = []
    for src, tgts, sign, w, ctx, prog in EDGES:
        for t in _split(tgts):
            rows.append((src, t, sign, w, ctx, prog, ""))
    for a, b, tgts, w, ctx in SYNERGY:
        for t in _split(tgts):
            rows.append((a, t, +1, w, ctx, "synergy", b))
            rows.append((b, t, +1, w, ctx, "synergy", a))
    for sign, spec in ((+1, DISEASE_UP), (-1, DISEASE_DOWN)):
        for t, w in _weighted(spec):
            rows.append((DISEASE_DRIVER, t, sign, w, CM, "disease", ""))
    named_targets = {r[1] for r in rows}

    hk = list(HOUSEKEEPING)
    mito = sorted(s for s in sym2id if s.startswith("MT-"))
    ribo = sorted(
        s for s in sym2id
        if s.startswith(("RPL", "RPS")) and "-" not in s and "K" not in s[3:] and "P" not in s[3:]
        and s not in RIBO_EXCLUDE
    )
    named = set(tfs) | named_targets | set(hk) | set(mito) | set(ribo)
    missing = sorted(s for s in named if s not in sym2id)
    if missing:
        raise SystemExit(f"design genes missing from the V1 vocabulary: {missing}")

    # ---- background pool: ordinary-looking symbols from the vocabulary ----
    pool = vocab["gene_symbols"]
    ok = (
        pool.str.fullmatch(r"[A-Z][A-Z0-9]{1,7}")
        & ~pool.str.startswith(("MT", "RPL", "RPS", "LINC", "MIR", "SNOR", "OR", "LOC", "HIST",
                                "ZNF", "KRTAP", "FAM", "TMEM", "CCDC", "KIAA"))
        & ~pool.str.contains("ORF")
        & ~pool.isin(named)
    )
    pool = sorted(pool[ok].unique())
    n_bg = N_GENES_TOTAL - len(named)
    bg = sorted(rng.choice(pool, size=n_bg, replace=False).tolist())

    # weak edges: each master regulator gets a few low-weight targets among the background genes,
    # active in the cell types where the master is on
    on_types: dict[str, list[str]] = {}
    for tf, ct, _st, lvl, _f in TF_ACTIVITY:
        if lvl >= 0.3:
            on_types.setdefault(tf, [])
            if ct not in on_types[tf]:
                on_types[tf].append(ct)
    weak_pool = list(rng.permutation(bg))
    for tf in WEAK_MASTERS:
        for _ in range(N_WEAK_PER_MASTER):
            t = weak_pool.pop()
            w = float(np.round(rng.uniform(0.3, 0.8), 2))
            ctx = ",".join(on_types[tf])
            rows.append((tf, t, +1, w, ctx, "weak", ""))
    edges = pd.DataFrame(rows, columns=["source_symbol", "target_symbol", "sign", "weight",
                                        "contexts", "program", "partner_symbol"])
    edges = edges.drop_duplicates(["source_symbol", "target_symbol", "contexts", "program"])
    edges["source"] = edges["source_symbol"].map(sym2id)
    edges["target"] = edges["target_symbol"].map(sym2id)
    edges["partner"] = edges["partner_symbol"].map(lambda s: sym2id.get(s, "") if s else "")
    edges = edges[["source", "target", "sign", "weight", "contexts", "source_symbol",
                   "target_symbol", "program", "partner", "partner_symbol"]].reset_index(drop=True)

    targets = set(edges["target_symbol"])

    # ---- gene table ----
    def cls(s):
        if s in tfs:
            return "tf"
        if s in hk:
            return "housekeeping"
        if s.startswith("MT-"):
            return "mito"
        if s in ribo:
            return "ribo"
        if s in targets:
            return "target"
        return "background"

    symbols = tfs + sorted(targets - set(tfs)) + hk + mito + ribo
    symbols += [b for b in bg if b not in targets]
    genes = pd.DataFrame({"gene_symbol": symbols})
    genes["ensembl_id"] = genes["gene_symbol"].map(sym2id)
    genes["gene_class"] = genes["gene_symbol"].map(cls)
    n = len(genes)
    rate = np.zeros(n)
    leak = np.zeros(n)
    disp = np.zeros(n)
    lfc = np.zeros((n, len(CELL_TYPES)))
    for i, (s, c) in enumerate(zip(genes["gene_symbol"], genes["gene_class"])):
        if c == "tf":  # rate per 10k UMIs at activity 1
            rate[i] = np.exp(rng.normal(np.log(14), 0.3))
            disp[i] = 0.15
        elif c == "target":  # rate per 10k at full activation
            rate[i] = MARKER_HIGH.get(s, np.exp(rng.normal(np.log(22), 0.7)))
            leak[i] = np.exp(rng.normal(np.log(0.01), 0.5))
            disp[i] = np.exp(rng.normal(np.log(0.25), 0.3))
        elif c == "housekeeping":
            rate[i] = HK_HIGH.get(s, max(35.0, np.exp(rng.normal(np.log(35), 0.5))))
            disp[i] = np.exp(rng.normal(np.log(0.08), 0.3))
            lfc[i] = rng.normal(0, 0.15, len(CELL_TYPES))
        elif c == "mito":
            rate[i] = np.exp(rng.normal(np.log(22), 0.5))
            disp[i] = 0.15
            lfc[i] = np.log([2.0, 1, 1, 1.2, 1.2, 0.8]) + rng.normal(0, 0.05, len(CELL_TYPES))
        elif c == "ribo":
            rate[i] = np.exp(rng.normal(np.log(50), 0.5))
            disp[i] = np.exp(rng.normal(np.log(0.06), 0.3))
            lfc[i] = np.log([0.5, 1, 1, 1, 0.9, 1.5]) + rng.normal(0, 0.1, len(CELL_TYPES))
        else:  # background: heavy-tailed levels, mild cell-type structure
            rate[i] = np.exp(rng.normal(np.log(BG_RATE), BG_SD))
            disp[i] = np.exp(rng.normal(np.log(BG_DISP), 0.5))
            lfc[i] = rng.normal(0, 0.5, len(CELL_TYPES))
    genes["rate"] = np.round(rate, 5)
    genes["leak"] = np.round(leak, 5)
    genes["dispersion"] = np.round(disp, 4)
    for j, ct in enumerate(CELL_TYPES):
        genes[f"lfc_{ct}"] = np.round(lfc[:, j], 4)
    genes = genes[["ensembl_id", "gene_symbol", "gene_class", "rate", "leak", "dispersion"]
                  + [f"lfc_{ct}" for ct in CELL_TYPES]]
    assert genes["ensembl_id"].is_unique and len(genes) == N_GENES_TOTAL, len(genes)

    tfa = pd.DataFrame(TF_ACTIVITY, columns=["tf_symbol", "cell_type", "state", "level",
                                             "on_fraction"])
    tfa.insert(0, "tf", tfa["tf_symbol"].map(sym2id))

    # ---- ground truth JSON ----
    def ids(symbols):
        return [sym2id[s] for s in symbols]

    # programme of a cell type = activated targets of its (strong) programme edges; the GATA4-TBX5
    # joint targets belong to the cardiomyocyte programme; weak edges are not part of programmes
    programs = {}
    for ct in CELL_TYPES:
        sel = (edges["program"] == ct) | ((edges["program"] == "synergy") & (ct == CM))
        sub = edges[sel & (edges["sign"] > 0)]
        programs[ct] = sorted(set(sub["target"]))
    syn = []
    for a, b, tgts, w, ctx in SYNERGY:
        syn.append({"tfs": ids([a, b]), "tf_symbols": [a, b], "targets": ids(_split(tgts)),
                    "target_symbols": _split(tgts), "weight": w, "cell_type": CM,
                    "logic": "AND: contribution = weight * h(GATA4) * h(TBX5); "
                             "either TF alone adds nothing"})
    gt = {
        "name": "teaching tissue (simulated adult human heart)",
        "version": 1,
        "cell_types": CELL_TYPES,
        "cell_type_proportions": CELL_TYPE_PROPORTIONS,
        "master_regulators": {ct: ids(v) for ct, v in MASTER_REGULATORS.items()},
        "master_regulator_symbols": MASTER_REGULATORS,
        "tfs": ids(tfs),
        "tf_symbols": tfs,
        "secondary_tfs": ids(SECONDARY_TFS),
        "orphan_tfs": ids(ORPHAN_TFS),
        "programs": programs,
        "housekeeping": ids(hk),
        "disease_drivers": ids([DISEASE_DRIVER]),
        "disease": {
            "name": "failing cardiomyocytes (simulated)",
            "cell_type": CM,
            "healthy_state": "healthy",
            "diseased_state": "diseased",
            "drivers": ids([DISEASE_DRIVER]),
            "driver_symbols": [DISEASE_DRIVER],
            "program_up": ids(_split(DISEASE_UP)),
            "program_up_symbols": _split(DISEASE_UP),
            "program_down": ids(_split(DISEASE_DOWN)),
            "program_down_symbols": _split(DISEASE_DOWN),
            "donors": {"healthy": ["H1", "H2", "H3"], "failing": ["F1", "F2", "F3"]},
            "description": (
                "Simulated scenario. Cardiomyocytes from the three 'failing' donors switch on "
                "NFATC4 (NFAT3; calcineurin-NFAT signalling drives pathological hypertrophy in "
                "real hearts), which activates a fetal/stress programme (NPPB, ACTA1, ANKRD1, "
                "RCAN1, ...) and represses calcium-handling and metabolic genes (ATP2A2, MYH6, "
                "KCNIP2, PPARGC1A, CKMT2). NFATC4 is the only cause of the diseased state: "
                "removing it would make a diseased cardiomyocyte healthy."
            ),
        },
        "synergy_pairs": syn,
        "activation": "h(a) = a / (a + 0.5); target rate = rate * lfc * (leak + sum_act w h(a) "
                      "+ sum_syn w h(a1) h(a2)) / (1 + sum_rep w h(a))",
        "source": f"data_scripts/make_gene_table.py (PARAM_SEED={PARAM_SEED})",
    }

    # ---- pbmc68k_reduced symbol table ----
    names = pd.read_csv(shared / "gene_name_id_gc30M.tsv", sep="\t", dtype=str)
    name2id = dict(zip(names["gene_symbol"], names["ensembl_id"]))
    try:
        import scanpy as sc

        pbmc_syms = list(sc.datasets.pbmc68k_reduced().raw.var_names)
    except (ImportError, OSError) as e:  # pragma: no cover
        raise SystemExit(f"scanpy's pbmc68k_reduced is needed for the PBMC table: {e}")
    prow = []
    for s in pbmc_syms:
        if s in name2id:
            prow.append((s, name2id[s], "symbol", s))
        elif s in PBMC_ALIASES and PBMC_ALIASES[s] in name2id:
            prow.append((s, name2id[PBMC_ALIASES[s]], "renamed", PBMC_ALIASES[s]))
        else:
            prow.append((s, "", "unmapped", ""))
    pbmc = pd.DataFrame(prow, columns=["gene_symbol", "ensembl_id", "mapping", "current_symbol"])
    return {"genes": genes, "edges": edges, "tf_activity": tfa, "ground_truth": gt, "pbmc": pbmc}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "geneformer-v1",
                    help="folder with vocab_gc30M.tsv and gene_name_id_gc30M.tsv")
    ap.add_argument("--out", type=Path, default=ASSETS)
    args = ap.parse_args(argv)
    t = build(args.shared)
    args.out.mkdir(parents=True, exist_ok=True)
    t["genes"].to_csv(args.out / "genes.tsv", sep="\t", index=False)
    t["edges"].to_csv(args.out / "edges.tsv", sep="\t", index=False)
    t["tf_activity"].to_csv(args.out / "tf_activity.tsv", sep="\t", index=False)
    t["pbmc"].to_csv(args.out / "pbmc68k_genes.tsv", sep="\t", index=False)
    (args.out / "ground_truth.json").write_text(json.dumps(t["ground_truth"], indent=1) + "\n")
    g = t["genes"]
    print(f"{len(g)} genes: {g['gene_class'].value_counts().to_dict()}")
    print(f"{len(t['edges'])} edges: {t['edges']['program'].value_counts().to_dict()}")
    print(f"pbmc68k: {t['pbmc']['mapping'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
