"""A tiny random Geneformer-like model, vocabulary, cells and ground truth for widget tests.

Builds in well under a second with no files: a 2-layer, 2-head ``BertForMaskedLM`` over 30 real
human genes (real Ensembl IDs and symbols), 16 cells of 3 cell types and 2 states, and a small
planted "ground truth" (TF -> target edges). The browser-test notebook imports it too.

Examples
--------
>>> model, dataset, truth = make_tiny()
>>> model.config.num_hidden_layers, len(dataset), "ENSG00000136574" in truth.tfs  # GATA4
(2, 16, True)
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

GENES = {
    "ENSG00000136574": "GATA4", "ENSG00000089225": "TBX5", "ENSG00000183072": "NKX2-5",
    "ENSG00000081189": "MEF2C", "ENSG00000118526": "TCF21", "ENSG00000122691": "TWIST1",
    "ENSG00000157554": "ERG", "ENSG00000164736": "SOX17", "ENSG00000066336": "SPI1",
    "ENSG00000245848": "CEBPA", "ENSG00000112658": "SRF", "ENSG00000141052": "MYOCD",
    "ENSG00000075624": "ACTB", "ENSG00000111640": "GAPDH", "ENSG00000198804": "MT-CO1",
    "ENSG00000167526": "RPL13", "ENSG00000197616": "MYH6", "ENSG00000118194": "TNNT2",
    "ENSG00000108821": "COL1A1", "ENSG00000261371": "PECAM1", "ENSG00000129226": "CD68",
    "ENSG00000107796": "ACTA2", "ENSG00000175206": "NPPA", "ENSG00000149591": "TAGLN",
    "ENSG00000110799": "VWF", "ENSG00000090382": "LYZ", "ENSG00000011465": "DCN",
    "ENSG00000179776": "CDH5", "ENSG00000106631": "MYL7", "ENSG00000177954": "RPS27",
}
TFS = ["GATA4", "TBX5", "NKX2-5", "MEF2C", "TCF21", "TWIST1", "ERG", "SOX17", "SPI1", "CEBPA",
       "SRF", "MYOCD"]
EDGES = [("GATA4", "MYH6"), ("GATA4", "NPPA"), ("TBX5", "NPPA"), ("NKX2-5", "MYL7"),
         ("MEF2C", "TNNT2"), ("TCF21", "COL1A1"), ("TWIST1", "DCN"), ("ERG", "CDH5"),
         ("SOX17", "PECAM1"), ("SPI1", "CD68"), ("CEBPA", "LYZ"), ("SRF", "ACTA2"),
         ("MYOCD", "TAGLN")]


def make_vocab():
    from course_helpers.vocab import GeneVocab

    tok = {"<pad>": 0, "<mask>": 1}
    tok.update({e: i + 2 for i, e in enumerate(GENES)})
    medians = {e: 1.0 + 0.1 * i for i, e in enumerate(GENES)}
    return GeneVocab.from_dicts(tok, medians, {s: e for e, s in GENES.items()}, name="tiny")


def make_model(vocab=None, seed: int = 0, layers: int = 2, heads: int = 2, hidden: int = 32):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    vocab = vocab or make_vocab()
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=2 * hidden,
                     max_position_embeddings=64, hidden_act="relu", pad_token_id=0)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = BertForMaskedLM(cfg).eval()
    model.gene_vocab = vocab
    model.model_version = "V1"
    return model


def make_cells(vocab=None, n_cells: int = 16, seed: int = 0):
    import datasets

    vocab = vocab or make_vocab()
    rng = np.random.default_rng(seed)
    sym2tok = {s: vocab.token_to_id[e] for e, s in GENES.items()}
    programs = {
        "cardiomyocyte": ["GATA4", "TBX5", "NKX2-5", "MEF2C", "MYH6", "NPPA", "MYL7", "TNNT2"],
        "fibroblast": ["TCF21", "TWIST1", "COL1A1", "DCN", "ACTA2", "SRF"],
        "endothelial": ["ERG", "SOX17", "CDH5", "PECAM1", "VWF"],
    }
    common = ["ACTB", "GAPDH", "MT-CO1", "RPL13", "RPS27", "SPI1", "CEBPA", "CD68", "LYZ",
              "MYOCD", "TAGLN"]
    rows = {"cell_id": [], "cell_type": [], "state": [], "input_ids": [], "length": []}
    types = list(programs)
    for i in range(n_cells):
        ct = types[i % len(types)]
        extra = list(rng.choice(common, size=int(rng.integers(5, len(common))), replace=False))
        genes = list(programs[ct]) + extra
        rng.shuffle(genes)
        genes = sorted(genes, key=lambda g: (g not in programs[ct], rng.random()))
        ids = [sym2tok[g] for g in genes]
        rows["cell_id"].append(f"cell_{i:02d}")
        rows["cell_type"].append(ct)
        rows["state"].append("diseased" if i % 2 else "healthy")
        rows["input_ids"].append(ids)
        rows["length"].append(len(ids))
    return datasets.Dataset.from_dict(rows)


def make_truth():
    sym2ens = {s: e for e, s in GENES.items()}
    edges = pd.DataFrame({
        "source": [sym2ens[a] for a, _ in EDGES], "target": [sym2ens[b] for _, b in EDGES],
        "sign": 1, "weight": 1.0, "contexts": "all",
        "source_symbol": [a for a, _ in EDGES], "target_symbol": [b for _, b in EDGES],
    })
    return SimpleNamespace(edges=edges, tfs=[sym2ens[t] for t in TFS])


def make_tiny(seed: int = 0):
    """``(model, dataset, ground_truth)`` for quick widget tests."""
    vocab = make_vocab()
    return make_model(vocab, seed=seed), make_cells(vocab, seed=seed), make_truth()
