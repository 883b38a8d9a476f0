"""Shared fixtures of the finetune tests: a tiny model and toy cells.

The model is a 2-layer BERT with the teaching vocabulary and hidden size 32, so every fine-tune
takes a second or two. The toy cells make the answer learnable: a cell's class is written in its
first gene. ``tiny_model`` and ``gene_tokens`` are factories, ``fast`` the quick training settings,
``donors`` donor -> state of the toy cells.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")

from transformers import (
    BertConfig,
    BertForMaskedLM,
)

from course_helpers import finetune as ft
from course_helpers.vocab import GeneVocab

DONORS = {"H1": "healthy", "H2": "healthy", "H3": "healthy",
          "F1": "diseased", "F2": "diseased", "F3": "diseased"}


@pytest.fixture(scope="module")
def vocab():
    return GeneVocab.teaching()


def _tiny_model(vocab, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                     pad_token_id=vocab.pad_token_id, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    m = BertForMaskedLM(cfg).eval()
    m.gene_vocab = vocab
    m.model_version = "teaching"
    return m


@pytest.fixture(scope="module")
def model(vocab):
    return _tiny_model(vocab)


def _gene_tokens(vocab, n, start=10):
    special = {vocab.pad_token_id, vocab.mask_token_id}
    return [t for t in range(start, len(vocab)) if t not in special][:n]


@pytest.fixture(scope="module")
def cells(vocab):
    """120 cells from 6 donors; diseased cells start with token MARK, healthy ones do not."""
    rng = np.random.default_rng(0)
    genes = _gene_tokens(vocab, 200)
    mark, others = genes[0], genes[1:]
    rows = {"cell_id": [], "input_ids": [], "length": [], "state": [], "donor": []}
    for donor, state in DONORS.items():
        for k in range(20):
            ids = list(rng.choice(others, size=int(rng.integers(12, 20)), replace=False))
            if state == "diseased":
                ids = [mark] + ids
            rows["cell_id"].append(f"{donor}_{k}")
            rows["input_ids"].append([int(t) for t in ids])
            rows["length"].append(len(ids))
            rows["state"].append(state)
            rows["donor"].append(donor)
    return datasets.Dataset.from_dict(rows)


FAST = {"epochs": 4, "learning_rate": 3e-3, "batch_size": 8, "progress": False}


@pytest.fixture(scope="module")
def cell_result(model, cells):
    return ft.cell_classifier(model, cells, "state", group_key="donor",
                              test_groups=["H3", "F3"], **FAST)


@pytest.fixture(scope="session")
def tiny_model():
    """Factory: ``tiny_model(vocab, seed=0)`` -> a fresh 2-layer masked-LM BERT."""
    return _tiny_model


@pytest.fixture(scope="session")
def gene_tokens():
    """Factory: ``gene_tokens(vocab, n, start=10)`` -> the first ``n`` non-special token ids."""
    return _gene_tokens


@pytest.fixture(scope="session")
def fast():
    """Quick training settings for the toy tasks."""
    return dict(FAST)


@pytest.fixture(scope="session")
def donors():
    """Donor -> state of the toy cells."""
    return dict(DONORS)
