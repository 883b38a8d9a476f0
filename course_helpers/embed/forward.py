"""The encoder pass shared by every embedding: validated, length-sorted batches of hidden states."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .._utils import CourseInputError
from .._utils import progress as _progress
from ..model import ModelFacts, hidden_states, length_sorted_batches, model_facts, pad_batch
from ..tokenize import TokenizedCells


def _embedding_facts(model, emb_layer: int = -1) -> ModelFacts:
    """:func:`~course_helpers.model.model_facts`, plus the gene vocabulary embeddings need."""
    facts = model_facts(model, emb_layer=emb_layer)  # checks the model and the layer
    if facts.vocab is None:
        raise CourseInputError(
            "The model has no gene vocabulary attached. Fix: load it with "
            "course_helpers.model.load_model(...), which sets model.gene_vocab."
        )
    return facts


def _check_batch(input_ids, lengths, facts: ModelFacts) -> None:
    vocab_size = facts.vocab_size
    if input_ids.numel() and (int(input_ids.max()) >= vocab_size or int(input_ids.min()) < 0):
        bad = int(input_ids.max()) if int(input_ids.max()) >= vocab_size else int(input_ids.min())
        raise CourseInputError(
            f"Token id {bad} is outside the model's vocabulary (0..{vocab_size - 1}). The cells "
            "were tokenized with another vocabulary - often V1 dictionaries with a V2 model or "
            "the reverse. Fix: tokenize again with model.gene_vocab."
        )
    max_pos = facts.max_len
    if int(lengths.max()) > max_pos:
        raise CourseInputError(
            f"A cell has {int(lengths.max())} tokens but the model accepts at most {max_pos}. "
            f"Fix: tokenize with the model's input size (truncate to {max_pos} tokens)."
        )


def _iter_hidden(facts: ModelFacts, cells: TokenizedCells, indices: np.ndarray, batch_size: int,
                 show_progress: bool, desc: str) -> Iterator[tuple]:
    """Yield ``(batch_indices, input_ids, keep_mask, hidden_float32)`` per length-sorted batch.

    Hidden states of layer ``facts.emb_layer``; ``keep_mask`` marks real (non-padding)
    positions. Batches go longest first.
    """
    import torch

    model = facts.model
    lengths_all = cells.lengths()
    lengths = lengths_all[indices]
    if len(lengths) and int(lengths.min()) < 1:
        empty = indices[lengths < 1][:5].tolist()
        raise CourseInputError(
            f"{int((lengths < 1).sum())} cell(s) have no tokens (e.g. dataset rows {empty}); an "
            "empty cell has no embedding. Fix: remove them, e.g. dataset.filter(lambda c: "
            "c['length'] > 0), or filter cells with no expressed vocabulary genes before "
            "tokenizing."
        )
    batches = length_sorted_batches(lengths, batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            bar = _progress(batches, enabled=show_progress, desc=desc, unit="batch")
            for local in bar:
                batch_idx = indices[local]
                seqs = cells.ids(batch_idx)
                input_ids, mask = pad_batch(seqs, facts.pad_id, facts.device)
                true_len = mask.sum(1)
                if not torch.equal(true_len.cpu(), torch.as_tensor(lengths_all[batch_idx])):
                    raise CourseInputError(
                        "The 'length' column does not match the number of input_ids of some "
                        "cells. Fix: recompute it, dataset.map(lambda c: {'length': "
                        "len(c['input_ids'])})."
                    )
                _check_batch(input_ids, lengths_all[batch_idx], facts)
                h = hidden_states(model, input_ids, mask, emb_layer=facts.emb_layer).float()
                yield batch_idx, input_ids, mask.bool(), h
    finally:
        if was_training:
            model.train()
