"""course_helpers.model.mlm: masked_gene_accuracy."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")



def test_masked_gene_accuracy_perfect_and_baseline():
    """A model whose logits always favour the true gene scores 1; the baseline is computed exactly."""
    import datasets
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from course_helpers.model import masked_gene_accuracy

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=12, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32,
                                       max_position_embeddings=16)).eval()
    # every cell is the same sentence, so the position baseline is always right
    ds = datasets.Dataset.from_dict({"input_ids": [[5, 6, 7, 8, 9, 10]] * 8, "length": [6] * 8})
    res = masked_gene_accuracy(model, ds, n_cells=8, k=3, seed=1)
    assert res.loc["position baseline", "top1"] == 1.0
    assert res.loc["position baseline", "top3"] == 1.0
    assert res.loc["model", "n_masked"] == 8  # 15 % of 6 genes rounds to 1 per cell
    assert 0.0 <= res.loc["model", "top1"] <= res.loc["model", "top3"] <= 1.0
