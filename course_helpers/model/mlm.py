"""Masked-gene prediction: :func:`masked_gene_accuracy`, how often the model ranks a hidden gene
among its top k (a quick check that a model and its vocabulary belong together).
"""

from __future__ import annotations

import numpy as np

from .._utils import progress as _progress
from ..tokenize import TokenizedCells
from .batching import length_sorted_batches, pad_batch
from .facts import model_facts


def masked_gene_accuracy(model, dataset, n_cells: int | None = 100, mask_prob: float = 0.15, *,
                         k: int = 10, batch_size: int = 16, seed: int = 0,
                         progress: bool = False):
    """Masked-gene prediction accuracy vs a position-frequency baseline.

    In each of ``n_cells`` cells (a seeded random sample), ``mask_prob`` of the genes are replaced
    by ``<mask>`` (at least one per cell) and the model predicts them from the rest, as in
    pretraining. The baseline guesses, for each masked rank position, the genes most often seen
    at that position among the same cells — a strong guess, because rank-value encoding puts
    similar genes at similar positions. Special tokens are never predicted.

    Returns
    -------
    pandas.DataFrame
        Rows ``model`` and ``position baseline``; columns ``top1``, ``top{k}`` and
        ``n_masked``.

    Examples
    --------
    Any tokenized cells do (a dataset, a dict of columns, lists of token ids):

    >>> from course_helpers.model import load_model
    >>> model = load_model("teaching")
    >>> cells = [list(range(2, 200))] * 4 + [list(range(300, 500))] * 4
    >>> res = masked_gene_accuracy(model, {"input_ids": cells}, n_cells=6, seed=1)
    >>> res.index.tolist(), res.columns.tolist()
    (['model', 'position baseline'], ['top1', 'top10', 'n_masked'])
    """
    import pandas as pd
    import torch

    facts = model_facts(model)
    # without a vocabulary: Geneformer's <pad> = 0 and <mask> = 1
    mask_id = facts.mask_id if facts.vocab is not None else 1
    pad_id = facts.pad_id
    special = facts.special_ids.tolist() if facts.vocab is not None else [0, 1]
    reader = TokenizedCells(dataset)
    n_total = reader.n
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n_total, size=min(n_cells or n_total, n_total), replace=False))
    cells = [reader.ids_of(i) for i in rows]
    masks = []
    for ids in cells:
        n_mask = max(1, round(mask_prob * len(ids)))
        masks.append(np.sort(rng.choice(len(ids), size=n_mask, replace=False)))
    # position-frequency baseline: top-k genes per rank position over these cells
    freq: dict[int, list[int]] = {}
    by_pos: dict[int, dict[int, int]] = {}
    for ids in cells:
        for p, t in enumerate(ids.tolist()):
            by_pos.setdefault(p, {}).setdefault(t, 0)
            by_pos[p][t] += 1
    for p, counts in by_pos.items():
        freq[p] = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
    hits = {"model": [0, 0], "position baseline": [0, 0]}
    n_masked = 0
    device = facts.device
    order = length_sorted_batches([len(c) for c in cells], batch_size)

    with torch.inference_mode():
        for batch in _progress(order, enabled=progress, desc="masked-gene eval"):
            seqs = []
            for i in batch:
                ids = cells[i].copy()
                ids[masks[i]] = mask_id
                seqs.append(ids.tolist())
            input_ids, att = pad_batch(seqs, pad_id, device)
            logits = model(input_ids=input_ids, attention_mask=att).logits
            logits[..., special] = -torch.inf
            for b, i in enumerate(batch):
                pos = torch.as_tensor(masks[i], device=logits.device)
                topk = torch.topk(logits[b, pos], k, dim=-1).indices.cpu().numpy()
                truth = cells[i][masks[i]]
                hits["model"][0] += int((topk[:, 0] == truth).sum())
                hits["model"][1] += int((topk == truth[:, None]).any(1).sum())
                for p, t in zip(masks[i], truth):
                    guess = freq.get(int(p), [])
                    hits["position baseline"][0] += int(bool(guess) and guess[0] == t)
                    hits["position baseline"][1] += int(t in guess)
                n_masked += len(truth)
    return pd.DataFrame({name: {"top1": h[0] / n_masked, f"top{k}": h[1] / n_masked,
                                "n_masked": n_masked} for name, h in hits.items()}).T
