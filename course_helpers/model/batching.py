"""Batching token-id sequences: right-padding (:func:`pad_batch`), length-sorted batches, and a
rough forward-pass memory estimate (:func:`forward_memory_bytes`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._utils import CourseInputError


def pad_batch(list_of_id_lists: Sequence[Sequence[int]], pad_token_id: int = 0, device=None):
    """Right-pad token id sequences into one batch.

    Parameters
    ----------
    list_of_id_lists
        Sequences of token ids (lists, numpy arrays or 1-D tensors), possibly of different
        lengths.
    pad_token_id
        Id written into the padding positions (``vocab.pad_token_id``; 0 for Geneformer).
    device
        Where to put the tensors (default CPU).

    Returns
    -------
    input_ids, attention_mask : torch.Tensor
        Both ``(batch, max_length)`` and ``torch.long``; the mask is 1 on real tokens and 0 on
        padding.

    Examples
    --------
    >>> ids, mask = pad_batch([[5, 6, 7], [8]], pad_token_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    import torch

    seqs = [torch.as_tensor(np.asarray(s, dtype=np.int64)).reshape(-1) for s in list_of_id_lists]
    if not seqs:
        raise CourseInputError("pad_batch got no sequences. Fix: pass at least one cell.")
    max_len = max(int(s.numel()) for s in seqs)
    input_ids = torch.full((len(seqs), max_len), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), max_len), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = int(s.numel())
        input_ids[i, :n] = s
        attention_mask[i, :n] = 1
    if device is not None:
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    return input_ids, attention_mask


def length_sorted_batches(lengths, batch_size: int) -> list[np.ndarray]:
    """Group indices into batches of similar length, longest first.

    Sorting by length keeps padding (wasted compute) small, and putting the longest batch first
    makes an out-of-memory error happen at once rather than at the end. Ties keep their original
    order (stable sort), as the reference does.

    Parameters
    ----------
    lengths
        Length of every item.
    batch_size
        Maximum items per batch.

    Returns
    -------
    list of numpy.ndarray
        Indices into ``lengths``; together they cover every index once.

    Examples
    --------
    >>> [b.tolist() for b in length_sorted_batches([3, 10, 5, 10], 2)]
    [[1, 3], [2, 0]]
    """
    if int(batch_size) < 1:
        raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
    lengths = np.asarray(lengths).reshape(-1)
    order = np.argsort(-lengths.astype(np.int64), kind="stable")
    bs = int(batch_size)
    return [order[i:i + bs] for i in range(0, len(order), bs)]


def forward_memory_bytes(model_or_config, batch_size: int, seq_len: int,
                         output_attentions: bool = False, *, bytes_per_value: int = 4) -> int:
    """Rough peak activation memory of one encoder forward pass, in bytes.

    Counts the kept hidden states of every layer, one layer's intermediate (feed-forward)
    activations and attention scores, and, if ``output_attentions``, the attention maps of all
    layers (``layers x heads x L x L`` per cell, the dominant term for long cells). Weights are
    not included. Use it to pick a batch size or to refuse requests that cannot fit.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(num_hidden_layers=6, num_attention_heads=4, hidden_size=256,
    ...                       intermediate_size=512)
    >>> forward_memory_bytes(cfg, 1, 2048, output_attentions=True) / 2**20 > 400
    True
    """
    cfg = getattr(model_or_config, "config", model_or_config)
    n_layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    hidden = int(cfg.hidden_size)
    inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
    b, seq = int(batch_size), int(seq_len)
    values = (n_layers + 1) * b * seq * hidden  # hidden states kept
    values += b * seq * (inter + 4 * hidden)  # one layer's working set
    values += b * heads * seq * seq  # one layer's attention scores
    if output_attentions:
        values += n_layers * b * heads * seq * seq
    return int(values * bytes_per_value)
