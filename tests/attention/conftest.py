"""Shared fixtures of the attention tests: a tiny BERT and random tokenized cells."""
from __future__ import annotations

import numpy as np
import pytest

N_LAYERS, N_HEADS, VOCAB = 2, 4, 50


def _tiny_model(impl="eager"):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=N_LAYERS,
                     num_attention_heads=N_HEADS, intermediate_size=64, hidden_act="relu",
                     max_position_embeddings=128, initializer_range=0.3,
                     attn_implementation=impl)
    return BertForMaskedLM(cfg).eval()


def _cells(n, seed=0, lo=4, hi=25):
    import datasets

    rng = np.random.default_rng(seed)
    ids = [[int(t) for t in rng.choice(np.arange(2, VOCAB), size=int(rng.integers(lo, hi)),
                                       replace=False)] for _ in range(n)]
    return datasets.Dataset.from_dict({
        "input_ids": ids, "length": [len(x) for x in ids],
        "cell_id": [f"cell{i}" for i in range(n)],
    })


@pytest.fixture
def tiny_model():
    """``tiny_model(impl="eager")``: a fresh seeded 2-layer, 4-head BERT over 50 tokens."""
    return _tiny_model


@pytest.fixture
def make_cells():
    """``make_cells(n, seed=0, lo=4, hi=25)``: n random cells as a Hugging Face dataset."""
    return _cells


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


@pytest.fixture(scope="module")
def ds():
    return _cells(11)
