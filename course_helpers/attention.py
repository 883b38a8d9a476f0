"""Attention extraction and streaming aggregation into gene x gene matrices.

Geneformer is a BERT encoder: in every layer each head computes, for a cell (a "sentence" of
genes ordered by rank), an ``L x L`` matrix of attention weights.  Convention used throughout
the course (FACTS.md)::

    attentions[layer][batch, head, i, j] = how much query position i attends to key position j
                                           (each row i sums to 1 over the cell's genes)

This module turns those per-cell maps into gene-level summaries **without storing them**:

* :func:`cell_attentions` - the raw maps for one small batch (for plots and teaching).
* :func:`aggregate_attention` - streams cells in length-sorted batches and accumulates, per
  layer and head, a gene x gene **sum** matrix and a **co-occurrence count** matrix.  Memory is
  ``O(layers x heads x genes^2)`` plus one batch's attention maps, independent of the number of
  cells.  The result (:class:`AttentionResult`) gives the mean attention from gene ``i``
  (query, row) to gene ``j`` (key, column) over the cells that express both.
* :func:`head_summary`, :func:`attention_by_rank`, :func:`attention_vs_cell_length` - per
  layer/head statistics (entropy, preference for transcription factors, attention received as a
  function of the key's rank, and the cell-length confounder described in the thesis).
* :func:`estimate_attention_memory` - the memory guard used before every extraction.
* :func:`state_contrast` - the same aggregation on two groups of cells (e.g. diseased vs healthy
  cardiomyocytes) and their normalised difference: which gene pairs' attention changes with the
  state (:class:`StateContrast`).

Two ways of reading attention are implemented (``method=``):

``"weight"``
    the attention weight ``alpha_ij`` itself.
``"norm"``
    the norm-based analysis of Kobayashi et al. (2020, "Attention is not only a weight"):
    ``||alpha_ij f(x_j)|| = alpha_ij ||f(x_j)||`` where, for head ``h``,
    ``f(x_j) = (x_j W_V^h + b_V^h) W_O^h`` is the value vector of key ``j`` projected through
    that head's slice of the attention output dense layer (the bias of that layer is shared by
    all positions and left out, as in the paper).  A key with a tiny value vector contributes
    little to the output however much attention it receives; the norm-based view corrects for
    that.  Values are captured with forward hooks on each layer's ``value`` projection.

Attention is a property of the model, not a measured regulatory interaction: an attention
"network" is a hypothesis to be tested against ground truth (see :mod:`course_helpers.networks`),
and attention weights are not explanations (Jain & Wallace 2019).

Implementation notes
--------------------
Only eager attention returns weights; SDPA/flash attention return none.  If the model is not in
eager mode the functions switch it to eager for the duration of the call and switch it back
(``switch_to_eager=True``), or raise a :class:`~course_helpers._utils.CourseInputError` that
explains the fix (``switch_to_eager=False``).  Weights are read with forward hooks on each
layer's self-attention module, reduced immediately, and the forward pass stops after the last
requested layer; the MLM head never runs.
"""
from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import CourseInputError
from ._utils import progress as _progress
from .model import length_sorted_batches, pad_batch

__all__ = [
    "AttentionResult",
    "StateContrast",
    "aggregate_attention",
    "attention_by_rank",
    "attention_vs_cell_length",
    "cell_attentions",
    "default_max_memory",
    "estimate_attention_memory",
    "head_summary",
    "state_contrast",
]

_GB = 1024**3
_DEFAULT_MAX_GENES = 1000

_SDPA_MESSAGE = (
    "The model uses {impl!r} attention, which computes attention without returning the "
    "attention weights (output_attentions=True gives nothing with SDPA or flash attention). Fix: "
    "use eager attention: load_model(name, output_attentions=True), or "
    "BertForMaskedLM.from_pretrained(path, attn_implementation='eager'), or "
    "model.set_attn_implementation('eager') (transformers >= 5); or pass switch_to_eager=True so "
    "course_helpers switches to eager attention for this call only."
)


def _no_weights_message(model, impl) -> str:
    if impl not in (None, "eager"):
        return _SDPA_MESSAGE.format(impl=impl) + (
            " (Switching this model to eager attention after loading did not work here; "
            "reload it with eager attention.)")
    import transformers

    return (
        "The model's attention layers returned no attention weights although it uses eager "
        f"attention (transformers {transformers.__version__}). Fix: reload the model with "
        "attention outputs switched on - load_model(name, output_attentions=True) or "
        "BertForMaskedLM.from_pretrained(path, attn_implementation='eager', "
        "output_attentions=True) - or upgrade transformers (pip install -U transformers)."
    )


class _StopForward(Exception):
    """Raised from a hook to stop the forward pass after the last layer we need."""


class _NoAttention(Exception):
    """Raised from a hook when the attention module returned no weights."""


# --------------------------------------------------------------------------------------------
# small helpers: model structure, devices, eager mode
# --------------------------------------------------------------------------------------------
def _base(model):
    base = getattr(model, "bert", None)
    if base is None:
        base = getattr(model, "base_model", model)
    try:
        base.encoder.layer[0].attention.self  # noqa: B018
    except (AttributeError, IndexError, TypeError) as err:
        raise CourseInputError(
            f"{type(model).__name__} does not look like a BERT model (no "
            "encoder.layer[i].attention.self). Fix: pass a Geneformer-style "
            "transformers.BertForMaskedLM, e.g. load_model('teaching')."
        ) from err
    return base


def _device(model):
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _pad_id(model) -> int:
    vocab = getattr(model, "gene_vocab", None)
    pid = getattr(vocab, "pad_token_id", None) if vocab is not None else None
    if pid is None:
        pid = getattr(model.config, "pad_token_id", None)
    return int(pid) if pid is not None else 0


def _n_layers(model) -> int:
    return int(model.config.num_hidden_layers)


def _n_heads(model) -> int:
    return int(model.config.num_attention_heads)


def _set_impl(model, impl: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:  # transformers >= 5 (also swaps the attention function)
        setter(impl)
        return
    model.config._attn_implementation = impl  # pragma: no cover - older transformers


@contextlib.contextmanager
def _eager_attention(model, switch_to_eager: bool = True):
    """Run the block with eager attention; switch back afterwards."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl in (None, "eager"):
        yield
        return
    if not switch_to_eager:
        raise CourseInputError(_SDPA_MESSAGE.format(impl=impl))
    _set_impl(model, "eager")
    try:
        yield
    finally:
        _set_impl(model, impl)


@contextlib.contextmanager
def _eval_mode(model):
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _resolve_index_list(value, n: int, what: str) -> list[int]:
    """``"all"``, an int or a list of ints (negative counts from the end) -> sorted unique."""
    if value is None or (isinstance(value, str) and value == "all"):
        return list(range(n))
    if isinstance(value, str):
        raise CourseInputError(
            f"{what}={value!r} is not understood. Fix: use 'all', an integer (0 = first, -1 = "
            f"last) or a list of integers between {-n} and {n - 1}."
        )
    items = [value] if np.isscalar(value) else list(value)
    out = []
    for v in items:
        try:
            iv = int(v)
        except (TypeError, ValueError) as err:
            raise CourseInputError(f"{what} must be integers, got {v!r}.") from err
        if not -n <= iv < n:
            raise CourseInputError(
                f"{what}={iv} is out of range: the model has {n} {what} (0 to {n - 1}, or "
                f"{-n} to -1 counting from the end). Fix: pick indices in that range."
            )
        out.append(iv % n)
    if not out:
        raise CourseInputError(f"{what} is empty. Fix: pass 'all' or at least one index.")
    return sorted(set(out))


def _check_method(method: str) -> str:
    if method not in ("weight", "norm"):
        raise CourseInputError(
            f"method={method!r} is not known. Fix: use 'weight' (attention weights) or 'norm' "
            "(Kobayashi et al. 2020: weight x norm of the transformed value vector)."
        )
    return method


# --------------------------------------------------------------------------------------------
# dataset access
# --------------------------------------------------------------------------------------------
class _Cells:
    """Uniform access to tokenized cells: HF Dataset, dict of columns, DataFrame, list of lists."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._hf = False
        if hasattr(dataset, "column_names") and hasattr(dataset, "select_columns"):
            if "input_ids" not in dataset.column_names:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {dataset.column_names}). "
                    "Fix: pass a tokenized dataset (course_helpers.tokenize output)."
                )
            self._hf = True
            self._ids = dataset.select_columns(["input_ids"])
            self.n = len(dataset)
            self.columns = list(dataset.column_names)
        elif isinstance(dataset, pd.DataFrame):
            if "input_ids" not in dataset.columns:
                raise CourseInputError(
                    "The DataFrame has no 'input_ids' column. Fix: pass a tokenized dataset."
                )
            self._ids = list(dataset["input_ids"])
            self.n = len(dataset)
            self.columns = list(dataset.columns)
        elif isinstance(dataset, dict):
            if "input_ids" not in dataset:
                raise CourseInputError(
                    f"The dict has no 'input_ids' key (keys: {list(dataset)}). Fix: pass "
                    "{'input_ids': [[...], ...]} or a tokenized Hugging Face dataset."
                )
            self._ids = list(dataset["input_ids"])
            self.n = len(self._ids)
            self.columns = list(dataset)
        elif isinstance(dataset, (list, tuple)):
            self._ids = list(dataset)
            self.n = len(self._ids)
            self.columns = ["input_ids"]
        else:
            raise CourseInputError(
                f"Cannot read cells from a {type(dataset).__name__}. Fix: pass a tokenized "
                "Hugging Face dataset (with 'input_ids'), a dict of columns or a list of token id "
                "lists."
            )
        if self.n == 0:
            raise CourseInputError("The dataset has no cells. Fix: pass at least one cell.")

    def lengths(self) -> np.ndarray:
        if "length" in self.columns:
            col = self.column("length")
            return np.asarray(list(col), dtype=np.int64)
        if self._hf:
            return np.asarray([len(x) for x in self._ids["input_ids"]], dtype=np.int64)
        return np.asarray([len(x) for x in self._ids], dtype=np.int64)

    def column(self, name):
        if name not in self.columns:
            return None
        if self._hf or isinstance(self.dataset, (pd.DataFrame, dict)):
            return list(self.dataset[name])
        return None

    def ids(self, idx) -> list:
        idx = [int(i) for i in idx]
        if self._hf:
            return self._ids[idx]["input_ids"]
        return [self._ids[i] for i in idx]

    def iter_chunks(self, idx, chunk: int = 2048):
        for s in range(0, len(idx), chunk):
            yield self.ids(idx[s:s + chunk])


def _select_cells(cells: _Cells, max_cells, seed) -> np.ndarray:
    n = cells.n
    if max_cells is None or int(max_cells) >= n:
        return np.arange(n)
    if int(max_cells) < 1:
        raise CourseInputError(f"max_cells must be at least 1, got {max_cells}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_cells), replace=False))


# --------------------------------------------------------------------------------------------
# memory guard
# --------------------------------------------------------------------------------------------
def estimate_attention_memory(
    n_cells: int,
    max_len: int,
    layers: int,
    heads: int,
    batch_size: int,
    n_genes: int,
    *,
    method: str = "weight",
    hidden_size: int | None = None,
    accumulated_heads: int | None = None,
) -> int:
    """Peak memory (bytes) of a streamed attention extraction, roughly.

    Terms (float32):

    * attention maps of **one layer** of one batch, about two copies alive at once (scores and
      softmax): ``2 x batch x heads x L^2 x 4``;
    * per-cell scatter buffers: ``heads x L^2 x 12 + L^2 x 8``;
    * accumulators: ``layers x accumulated_heads x genes^2 x 4`` (sums) ``+ genes^2 x 8``
      (co-occurrence counts); they do not grow with the number of cells;
    * hidden activations if ``hidden_size`` is given: ``~ 12 x batch x L x hidden x 4``.

    The number of cells only matters when it is smaller than ``batch_size``; streaming makes the
    estimate otherwise independent of it.  Model weights are not included.

    Parameters
    ----------
    n_cells, max_len
        Cells to process and the longest cell (tokens).
    layers, heads
        Layers whose attention is accumulated, and heads per layer of the model.
    batch_size, n_genes
        Cells per forward pass and size of the gene set (accumulators are ``n_genes^2``).
    method
        ``"norm"`` adds one more ``heads x L^2`` buffer per cell.
    hidden_size
        Model hidden size, to include activations.
    accumulated_heads
        Heads kept in the accumulators (1 when heads are averaged on the fly); default ``heads``.

    Returns
    -------
    int
        Bytes.

    Examples
    --------
    >>> gb = estimate_attention_memory(1000, 2048, layers=6, heads=4, batch_size=8,
    ...                                n_genes=1000) / 2**30
    >>> round(gb, 2)
    1.32
    >>> estimate_attention_memory(10, 100, 2, 4, 8, 50) == estimate_attention_memory(
    ...     10_000, 100, 2, 4, 8, 50)
    True
    """
    b = max(1, min(int(batch_size), int(n_cells)))
    L = int(max_len)
    h = int(heads)
    g = int(n_genes)
    acc_h = h if accumulated_heads is None else int(accumulated_heads)
    attn = _attn_batch_bytes(b, h, L)
    per_cell = h * L * L * (12 + (4 if method == "norm" else 0)) + L * L * 8
    acc = int(layers) * acc_h * g * g * 4 + g * g * 8
    act = 12 * b * L * int(hidden_size) * 4 if hidden_size else 0
    return int(attn + per_cell + acc + act)


def _attn_batch_bytes(batch_size: int, heads: int, max_len: int) -> int:
    """Attention maps of one layer of one batch (two float32 copies: scores and softmax)."""
    return 2 * int(batch_size) * int(heads) * int(max_len) ** 2 * 4


def default_max_memory(device=None) -> int:
    """Memory budget (bytes) used by the guard when ``max_memory=None``.

    CUDA: 80 % of the GPU's free memory.  Otherwise: half the available RAM if ``psutil`` is
    installed, else 2 GB.

    Examples
    --------
    >>> default_max_memory("cpu") > 0
    True
    """
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(dev)
        return int(0.8 * free)
    try:
        import psutil

        return int(0.5 * psutil.virtual_memory().available)
    except ImportError:
        return 2 * _GB


def _parse_memory(value) -> int:
    if isinstance(value, str):
        s = value.strip().upper().replace(" ", "")
        units = {"TB": 1024**4, "GB": _GB, "MB": 1024**2, "KB": 1024, "B": 1}
        for u, f in units.items():
            if s.endswith(u):
                try:
                    return int(float(s[: -len(u)]) * f)
                except ValueError:
                    break
        raise CourseInputError(
            f"max_memory={value!r} is not understood. Fix: pass bytes (an int) or a string such "
            "as '2GB' or '500MB'."
        )
    return int(value)


def _guard(estimate: int, max_memory, device, *, batch_size, n_genes, n_layers_acc, heads,
           max_len, per_batch_bytes, acc_bytes, what: str) -> None:
    budget = default_max_memory(device) if max_memory is None else _parse_memory(max_memory)
    if estimate <= budget:
        return
    fit_b = None
    if per_batch_bytes > 0:
        room = budget - (estimate - per_batch_bytes)
        per_cell = per_batch_bytes / max(1, batch_size)
        fit_b = int(room // per_cell) if room > 0 else 0
    tips = []
    if fit_b is not None and fit_b >= 1 and fit_b < batch_size:
        tips.append(f"batch_size={fit_b} (now {batch_size}) would fit")
    elif batch_size > 1:
        tips.append(f"lower batch_size (now {batch_size}; attention maps of one batch take "
                    f"{per_batch_bytes / _GB:.2f} GB)")
    if acc_bytes > 0.25 * estimate:
        tips.append(f"fewer genes (now {n_genes}: pass genes=[...] or a smaller max_genes; the "
                    f"accumulators take {acc_bytes / _GB:.2f} GB and grow with genes^2)")
        tips.append(f"fewer layers (now {n_layers_acc}: layers=[...]) or average='heads' "
                    f"(now {heads} heads kept)")
    tips.append(f"shorter cells (longest has {max_len} genes; memory grows with length^2): "
                "filter or truncate long cells")
    tips.append("the number of cells does not matter: cells are streamed (max_cells only "
                "saves time)")
    raise CourseInputError(
        f"{what} would need about {estimate / _GB:.2f} GB of memory, more than the "
        f"{budget / _GB:.2f} GB allowed (max_memory). Fix, one of: " + "; ".join(tips)
        + ". Or raise max_memory if you know the machine has room."
    )


# --------------------------------------------------------------------------------------------
# streaming engine
# --------------------------------------------------------------------------------------------
@dataclass
class _Batch:
    index: np.ndarray  # dataset row numbers
    input_ids: object  # (B, L) tensor
    mask: object  # (B, L) tensor (bool)
    lengths: object  # (B,) tensor
    extra: dict = field(default_factory=dict)


def _value_norms(values, layer_module, n_heads: int):
    """||(x_j W_V^h + b_V^h) W_O^h|| for every position and head -> (B, H, L)."""
    import torch

    B, L, hd = values.shape
    d = hd // n_heads
    W = layer_module.attention.output.dense.weight  # (hidden_out, H*d)
    Wh = W.reshape(W.shape[0], n_heads, d)
    gram = torch.einsum("ohd,ohe->hde", Wh, Wh)  # (H, d, d)
    v = values.reshape(B, L, n_heads, d)
    sq = torch.einsum("blhd,hde,blhe->bhl", v, gram, v)
    return sq.clamp_min(0).sqrt()


def _stream(model, cells: _Cells, batches, layer_ids, on_layer, *, on_batch=None,
            need_value_norms=False, progress=True, desc="attention", switch_to_eager=True):
    """Run the encoder batch by batch and hand each requested layer's attention to ``on_layer``.

    ``on_layer(layer, attn (B, H, L, L), value_norms (B, H, L) or None, batch)``.
    """
    import torch

    base = _base(model)
    enc_layers = base.encoder.layer
    n_heads = _n_heads(model)
    device = _device(model)
    pad = _pad_id(model)
    last = max(layer_ids)
    vocab_size = int(getattr(model.config, "vocab_size", 0) or 0)
    max_pos = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    # output_attentions=False: never let the model collect every layer's maps (a model loaded with
    # output_attentions=True would otherwise keep them all); the hooks read them one by one.
    state: dict = {"legacy": False, "kwargs": {"output_attentions": False}}
    handles = []
    orig_impl = getattr(model.config, "_attn_implementation", None)

    def attn_hook(layer):
        def hook(module, args, output):
            attn = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None
            if attn is None:
                raise _NoAttention
            vnorm = None
            if need_value_norms:
                vnorm = _value_norms(state.pop(("v", layer)), enc_layers[layer], n_heads)
            on_layer(layer, attn, vnorm, state["batch"])
            if layer == last:
                raise _StopForward
            if state["legacy"]:  # drop the weights so the model does not keep every layer's
                return (output[0], None, *output[2:])
            return None
        return hook

    def value_hook(layer):
        def hook(module, args, output):
            state[("v", layer)] = output
        return hook

    n_total = int(sum(len(b) for b in batches))
    bar = _progress(total=n_total, enabled=progress, desc=desc, unit="cell")
    try:
        for layer in layer_ids:
            handles.append(enc_layers[layer].attention.self.register_forward_hook(attn_hook(layer)))
            if need_value_norms:
                handles.append(
                    enc_layers[layer].attention.self.value.register_forward_hook(value_hook(layer))
                )
        with _eager_attention(model, switch_to_eager), _eval_mode(model), torch.inference_mode():
            for idx in batches:
                seqs = cells.ids(idx)
                lens = [len(s) for s in seqs]
                if max_pos and max(lens) > max_pos:
                    raise CourseInputError(
                        f"A cell has {max(lens)} tokens but the model accepts at most {max_pos} "
                        "(max_position_embeddings). Fix: tokenize with the model's input size "
                        "(truncate to the top-ranked genes)."
                    )
                if min(lens) == 0:
                    raise CourseInputError(
                        "A cell has no tokens (empty input_ids). Fix: drop empty cells first."
                    )
                ids, mask = pad_batch(seqs, pad, device)
                if vocab_size and int(ids.max()) >= vocab_size:
                    raise CourseInputError(
                        f"Token id {int(ids.max())} is outside the model's vocabulary (size "
                        f"{vocab_size}): the cells were tokenized with a different dictionary. "
                        "Fix: tokenize with the model's vocabulary (model.gene_vocab)."
                    )
                batch = _Batch(np.asarray(idx), ids, mask.bool(),
                               torch.as_tensor(lens, device=device))
                state["batch"] = batch
                if on_batch is not None:
                    on_batch(batch)
                try:
                    base(input_ids=ids, attention_mask=mask, **state["kwargs"])
                except _StopForward:
                    pass
                except _NoAttention:
                    # transformers 4.x: self-attention returns its weights only when asked
                    # (output_attentions=True); the hook then drops them layer by layer.
                    if state["legacy"]:
                        raise
                    state["legacy"], state["kwargs"] = True, {"output_attentions": True}
                    try:
                        base(input_ids=ids, attention_mask=mask, **state["kwargs"])
                    except _StopForward:
                        pass
                bar.update(len(idx))
    except _NoAttention:
        raise CourseInputError(_no_weights_message(model, orig_impl)) from None
    finally:
        for h in handles:
            h.remove()
        bar.close()


# --------------------------------------------------------------------------------------------
# raw maps
# --------------------------------------------------------------------------------------------
def cell_attentions(model, input_ids, attention_mask=None, *, switch_to_eager: bool = True):
    """Attention maps of every layer for one batch of cells.

    Parameters
    ----------
    model
        A ``BertForMaskedLM`` (e.g. ``load_model("teaching")``).
    input_ids
        ``(batch, L)`` tensor, or a list of token-id lists (padded here with the pad token).
    attention_mask
        ``(batch, L)``, 1 on real tokens; built automatically for lists.  For a tensor without a
        mask, every position counts as a real token.
    switch_to_eager
        If the model uses SDPA/flash attention (which return no weights), switch it to eager
        attention for this call (True), or raise a :class:`CourseInputError` explaining the fix.

    Returns
    -------
    tuple of torch.Tensor
        One ``(batch, heads, L, L)`` tensor per layer (first layer first), on the model's
        device.  ``attn[layer][b, h, i, j]`` = attention of query position ``i`` to key ``j``;
        rows sum to 1 over the real tokens, padded keys get 0.  Holding all layers costs
        ``layers x batch x heads x L^2 x 4`` bytes: keep batches small, and use
        :func:`aggregate_attention` for many cells.

    Examples
    --------
    >>> model = load_model("teaching")                                     # doctest: +SKIP
    >>> attn = cell_attentions(model, dataset[:2]["input_ids"])            # doctest: +SKIP
    >>> len(attn), attn[0].shape                                           # doctest: +SKIP
    (4, torch.Size([2, 4, 2047, 2047]))
    """
    import torch

    device = _device(model)
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids.to(device)
        if ids.dim() == 1:
            ids = ids[None]
        mask = (torch.ones_like(ids) if attention_mask is None
                else torch.as_tensor(attention_mask).to(device))
    else:
        seqs = list(input_ids)
        if seqs and np.isscalar(seqs[0]):
            seqs = [seqs]
        ids, mask = pad_batch(seqs, _pad_id(model), device)
    base = _base(model)
    orig_impl = getattr(model.config, "_attn_implementation", None)
    with _eager_attention(model, switch_to_eager), _eval_mode(model), torch.inference_mode():
        out = base(input_ids=ids, attention_mask=mask, output_attentions=True, return_dict=True)
    attn = getattr(out, "attentions", None)
    if not attn or any(a is None for a in attn):
        raise CourseInputError(_no_weights_message(model, orig_impl))
    return tuple(attn)


# --------------------------------------------------------------------------------------------
# gene set, labels
# --------------------------------------------------------------------------------------------
def _special_ids(model) -> set[int]:
    vocab = getattr(model, "gene_vocab", None)
    out = {_pad_id(model)}
    if vocab is not None:
        for name in ("pad_token_id", "mask_token_id", "cls_token_id", "eos_token_id"):
            v = getattr(vocab, name, None)
            if v is not None:
                out.add(int(v))
        t2i = getattr(vocab, "token_to_id", {}) or {}
        for tok, i in t2i.items():
            if isinstance(tok, str) and tok.startswith("<") and tok.endswith(">"):
                out.add(int(i))
    return out


def _resolve_tokens(model, genes, what="genes") -> np.ndarray:
    """Token ids from ints, symbols/Ensembl IDs (needs model.gene_vocab), or 'mito'/'ribo'."""
    if isinstance(genes, str) and genes in ("mito", "ribo"):
        vocab = getattr(model, "gene_vocab", None)
        if vocab is None:
            raise CourseInputError(
                f"{what}={genes!r} needs the model's gene vocabulary (model.gene_vocab). Fix: load "
                "the model with load_model(...) or pass token ids."
            )
        prefixes = ("MT-",) if genes == "mito" else ("RPL", "RPS")
        ids = sorted(int(i) for i, s in zip(vocab.id_to_token, vocab.symbols(list(vocab.id_to_token)))
                     if isinstance(s, str) and s.upper().startswith(prefixes))
        if not ids:
            raise CourseInputError(f"No {genes} genes in the model's vocabulary.")
        return np.asarray(ids, dtype=np.int64)
    if isinstance(genes, (str, int, np.integer)):
        genes = [genes]
    items = list(genes)
    if not items:
        raise CourseInputError(f"{what} is empty. Fix: pass at least one gene.")
    if all(isinstance(g, (int, np.integer)) for g in items):
        arr = np.asarray(items, dtype=np.int64)
    else:
        vocab = getattr(model, "gene_vocab", None)
        if vocab is None:
            raise CourseInputError(
                f"{what} are given as names but the model has no gene vocabulary "
                "(model.gene_vocab). Fix: load it with load_model(...) or pass token ids."
            )
        arr = np.asarray(vocab.tokens([str(g) for g in items]), dtype=np.int64)
    vs = int(getattr(model.config, "vocab_size", 0) or 0)
    if vs and (arr.min() < 0 or arr.max() >= vs):
        raise CourseInputError(
            f"{what} contain token ids outside the model's vocabulary (0..{vs - 1}). Fix: use "
            "token ids from model.gene_vocab."
        )
    _, first = np.unique(arr, return_index=True)
    return arr[np.sort(first)]


def _gene_labels(model, tokens: np.ndarray) -> list[str]:
    vocab = getattr(model, "gene_vocab", None)
    if vocab is not None and hasattr(vocab, "symbols"):
        try:
            labels = [str(s) for s in vocab.symbols([int(t) for t in tokens])]
        except (CourseInputError, KeyError, ValueError):  # pragma: no cover - unknown ids
            labels = [str(int(t)) for t in tokens]
    else:
        labels = [str(int(t)) for t in tokens]
    seen: dict[str, int] = {}
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
    if any(c > 1 for c in seen.values()):  # duplicated symbols: make labels unique
        labels = [f"{lab}_{int(t)}" if seen[lab] > 1 else lab for lab, t in zip(labels, tokens)]
    return labels


def _frequent_genes(model, cells: _Cells, sel: np.ndarray, max_genes: int) -> tuple[np.ndarray, int]:
    counts = np.zeros(int(model.config.vocab_size), dtype=np.int64)
    for chunk in cells.iter_chunks(sel):
        flat = np.concatenate([np.asarray(c, dtype=np.int64) for c in chunk]) if chunk else []
        if len(flat):
            counts += np.bincount(flat, minlength=len(counts))[: len(counts)]
    for s in _special_ids(model):
        if 0 <= s < len(counts):
            counts[s] = 0
    seen = np.flatnonzero(counts)
    order = seen[np.lexsort((seen, -counts[seen]))]  # most frequent first, ties by token id
    return order[: int(max_genes)], len(seen)


# --------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------
@dataclass
class AttentionResult:
    """Gene x gene attention accumulated over cells (output of :func:`aggregate_attention`).

    Attributes
    ----------
    sums : numpy.ndarray
        ``(n_layers, n_heads, G, G)`` float32: summed attention from gene ``i`` (query, row) to
        gene ``j`` (key, column) over all cells and layer/head slots kept.  A slot labelled
        ``"mean"`` holds the average over layers/heads taken on the fly.
    counts : numpy.ndarray
        ``(G, G)`` int64: number of cells in which both genes were present (the diagonal: cells
        expressing the gene).  Identical for every layer and head.
    tokens : numpy.ndarray
        Token ids of the G genes (row/column order).
    genes : list of str
        Gene labels (symbols from ``model.gene_vocab``, else token ids).
    layers, heads : list
        What the slots of ``sums`` are (model layer / head indices, 0 = first, or ``"mean"``).
    method : str
        ``"weight"`` or ``"norm"``.
    n_cells : int
        Cells aggregated.
    symmetric : bool
        Default view of :meth:`matrix` and :meth:`to_edges`.
    info : dict
        Run details (batch size, longest cell, seconds, memory estimate, ...).
    """

    sums: np.ndarray
    counts: np.ndarray
    tokens: np.ndarray
    genes: list
    layers: list
    heads: list
    method: str = "weight"
    n_cells: int = 0
    symmetric: bool = False
    info: dict = field(default_factory=dict)

    # -- selection -----------------------------------------------------------------------
    def _slot(self, value, slots: list, what: str, n_model: int | None):
        if value is None:
            return slice(None)
        if isinstance(value, str) and value == "mean":
            if "mean" in slots:
                return [slots.index("mean")]
            return slice(None)
        try:
            iv = int(value)
        except (TypeError, ValueError) as err:
            raise CourseInputError(f"{what} must be an integer or None, got {value!r}.") from err
        if n_model is not None and iv < 0:
            iv = iv % n_model
        if iv not in slots:
            kept = ", ".join(str(s) for s in slots)
            raise CourseInputError(
                f"{what}={value} was not aggregated (kept: {kept}). Fix: pick one of those, use "
                f"{what}=None for the average, or aggregate again with {what}s including it."
            )
        return [slots.index(iv)]

    def mean_array(self, layer=None, head=None, min_count: int = 1) -> np.ndarray:
        """Mean attention ``(G, G)`` (float64); NaN where fewer than ``min_count`` cells.

        ``layer``/``head`` = None averages over the kept layers/heads.
        """
        ls = self._slot(layer, self.layers, "layer", self.info.get("model_layers"))
        hs = self._slot(head, self.heads, "head", self.info.get("model_heads"))
        s = self.sums[ls][:, hs].astype(np.float64).mean(axis=(0, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            m = s / self.counts
        m[self.counts < max(1, int(min_count))] = np.nan
        return m

    def matrix(self, layer=None, head=None, symmetric=None, min_count: int = 1) -> pd.DataFrame:
        """Mean attention as a labelled gene x gene DataFrame.

        Parameters
        ----------
        layer, head
            Model layer / head index (negative counts from the end), or None for the average
            over those kept.
        symmetric
            False: directed, ``[i, j]`` = mean attention from gene i (query, row) to gene j (key,
            column).  True: ``(A + A.T) / 2``.  None: the result's default.
        min_count
            Entries backed by fewer cells than this become NaN (never co-expressed = NaN).

        Examples
        --------
        >>> res = aggregate_attention(model, ds)                    # doctest: +SKIP
        >>> res.matrix(layer=-1).loc["GATA4", "NPPA"]               # doctest: +SKIP
        """
        m = self.mean_array(layer, head, min_count)
        sym = self.symmetric if symmetric is None else bool(symmetric)
        if sym:
            m = (m + m.T) / 2.0
        df = pd.DataFrame(m, index=list(self.genes), columns=list(self.genes))
        df.index.name = "gene" if sym else "source (query)"
        df.columns.name = "gene" if sym else "target (key)"
        return df

    def count_matrix(self) -> pd.DataFrame:
        """Co-occurrence counts (cells expressing both genes) as a labelled DataFrame."""
        return pd.DataFrame(self.counts, index=list(self.genes), columns=list(self.genes))

    def to_edges(self, layer=None, head=None, symmetric=None, top_k: int | None = None,
                 min_count: int = 1, self_loops: bool = False) -> pd.DataFrame:
        """Edge list ``source, target, score, n_cells`` sorted by score (highest first).

        Directed: one row per ordered pair (source = query, target = key).  Symmetric: one row
        per unordered pair (``source < target`` in matrix order).  ``top_k`` keeps the k best.
        """
        m = self.mean_array(layer, head, min_count)
        sym = self.symmetric if symmetric is None else bool(symmetric)
        if sym:
            m = (m + m.T) / 2.0
        G = m.shape[0]
        ii, jj = np.meshgrid(np.arange(G), np.arange(G), indexing="ij")
        keep = ~np.isnan(m)
        if sym:
            keep &= ii <= jj
        if not self_loops:
            keep &= ii != jj
        i, j = ii[keep], jj[keep]
        score = m[keep]
        order = np.lexsort((j, i, -score))
        if top_k is not None:
            order = order[: int(top_k)]
        genes = np.asarray(self.genes, dtype=object)
        return pd.DataFrame({
            "source": genes[i[order]],
            "target": genes[j[order]],
            "score": score[order],
            "n_cells": self.counts[i[order], j[order]],
        }).reset_index(drop=True)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save to a compressed ``.npz`` file (reload with :meth:`load`)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        meta = {"genes": list(self.genes), "layers": list(self.layers),
                "heads": list(self.heads), "method": self.method, "n_cells": int(self.n_cells),
                "symmetric": bool(self.symmetric), "info": self.info}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, sums=self.sums, counts=self.counts, tokens=self.tokens,
                            meta=np.asarray(json.dumps(meta, default=str)))
        return path

    @classmethod
    def load(cls, path) -> AttentionResult:
        """Read a result written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(sums=z["sums"], counts=z["counts"], tokens=z["tokens"],
                       genes=meta["genes"], layers=meta["layers"], heads=meta["heads"],
                       method=meta["method"], n_cells=meta["n_cells"],
                       symmetric=meta["symmetric"], info=meta["info"])

    @property
    def nbytes(self) -> int:
        """Memory held by the accumulators (independent of the number of cells)."""
        return int(self.sums.nbytes + self.counts.nbytes)

    def __repr__(self) -> str:
        return (f"AttentionResult(method={self.method!r}, genes={len(self.genes)}, "
                f"layers={self.layers}, heads={self.heads}, n_cells={self.n_cells}, "
                f"symmetric={self.symmetric}, {self.nbytes / 2**20:.1f} MiB)")


def _average_flags(average) -> tuple[bool, bool]:
    if average in (None, False, "none"):
        return False, False
    if average == "heads":
        return True, False
    if average == "layers":
        return False, True
    if average in ("all", True, "both"):
        return True, True
    raise CourseInputError(
        f"average={average!r} is not understood. Fix: use None, 'heads', 'layers' or 'all'."
    )


def aggregate_attention(
    model,
    dataset,
    genes=None,
    layers="all",
    heads="all",
    method: str = "weight",
    batch_size: int = 8,
    max_cells: int | None = None,
    symmetric: bool = False,
    progress: bool = True,
    seed: int = 0,
    *,
    max_genes: int = _DEFAULT_MAX_GENES,
    average=None,
    max_memory=None,
    switch_to_eager: bool = True,
) -> AttentionResult:
    """Stream cells through the model and average attention into gene x gene matrices.

    For every cell, layer and head, the attention from each gene in the gene set (query, row) to
    each other gene in the set (key, column) is added to a sum matrix; a count matrix records in
    how many cells both genes were present.  ``sum / count`` is the mean attention from gene i to
    gene j over the cells that express both.  Attention to genes outside the set (and to padding)
    is simply not recorded; rows are therefore not normalised.

    Memory: one batch's attention for one layer at a time plus the accumulators
    (``layers x heads x G^2``), independent of the number of cells.  The request is checked
    against ``max_memory`` before anything runs (see :func:`estimate_attention_memory`).

    Parameters
    ----------
    model
        ``BertForMaskedLM`` (``load_model(...)``); its attention implementation is switched to
        eager for the call if needed (``switch_to_eager``).
    dataset
        Tokenized cells (HF dataset with ``input_ids`` and ideally ``length``).
    genes
        Gene set: token ids, symbols / Ensembl IDs (needs ``model.gene_vocab``), ``"mito"`` /
        ``"ribo"``; default: the ``max_genes`` most frequently present genes of the cells used
        (a warning says when genes were left out).
    layers, heads
        ``"all"``, an index (0 = first, -1 = last) or a list.  The forward pass stops after the
        last layer needed.
    method
        ``"weight"`` (attention weights) or ``"norm"`` (Kobayashi et al. 2020:
        ``alpha_ij x ||(x_j W_V^h + b_V^h) W_O^h||``; see the module docstring).
    batch_size
        Cells per forward pass (cells are sorted by length, longest batch first).
    max_cells
        Use a random subset (seeded) of this many cells.
    symmetric
        Default view of the result: directed (False) or ``(A + A.T) / 2`` (True).
    progress
        Show a progress bar.
    seed
        Seed for the ``max_cells`` subset.
    max_genes
        Cap on the default gene set.
    average
        ``None`` keep every layer and head; ``"heads"`` / ``"layers"`` / ``"all"`` average them on
        the fly (accumulators shrink accordingly).
    max_memory
        Budget in bytes (or ``"2GB"``); default :func:`default_max_memory`.
    switch_to_eager
        See :func:`cell_attentions`.

    Returns
    -------
    AttentionResult
        ``.matrix(layer, head, symmetric)``, ``.counts``, ``.to_edges(top_k=...)``.

    Raises
    ------
    CourseInputError
        Bad arguments, unknown genes, token ids outside the vocabulary, cells longer than the
        model accepts, SDPA without ``switch_to_eager``, or an estimated memory above
        ``max_memory`` (the message gives the estimate and what to reduce).

    Examples
    --------
    >>> from course_helpers.model import load_model                       # doctest: +SKIP
    >>> model = load_model("teaching")                                     # doctest: +SKIP
    >>> res = aggregate_attention(model, ds, layers=-1, max_cells=200)     # doctest: +SKIP
    >>> res.matrix(symmetric=True).iloc[:3, :3]                            # doctest: +SKIP
    >>> res.to_edges(top_k=20)                                             # doctest: +SKIP
    """
    import torch

    _check_method(method)
    avg_heads, avg_layers = _average_flags(average)
    cells = _Cells(dataset)
    n_model_layers, n_model_heads = _n_layers(model), _n_heads(model)
    layer_ids = _resolve_index_list(layers, n_model_layers, "layers")
    head_ids = _resolve_index_list(heads, n_model_heads, "heads")
    if int(batch_size) < 1:
        raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
    sel = _select_cells(cells, max_cells, seed)
    lengths = cells.lengths()[sel]

    if genes is None:
        if int(max_genes) < 1:
            raise CourseInputError(f"max_genes must be at least 1, got {max_genes}.")
        tokens, n_seen = _frequent_genes(model, cells, sel, max_genes)
        if len(tokens) == 0:
            raise CourseInputError("The cells contain no gene tokens. Fix: check the dataset.")
        if n_seen > len(tokens):
            warnings.warn(
                f"aggregate_attention: the cells contain {n_seen} genes; keeping the "
                f"{len(tokens)} most frequently present (memory grows with genes^2). Pass "
                "genes=[...] or max_genes= to choose.", stacklevel=2)
    else:
        tokens = _resolve_tokens(model, genes)
    G = len(tokens)
    Ls = 1 if avg_layers else len(layer_ids)
    Hs = 1 if avg_heads else len(head_ids)

    est = estimate_attention_memory(
        len(sel), int(lengths.max()), Ls, n_model_heads, batch_size, G, method=method,
        hidden_size=int(getattr(model.config, "hidden_size", 0) or 0) or None,
        accumulated_heads=Hs)
    b_eff = max(1, min(int(batch_size), len(sel)))
    per_batch = _attn_batch_bytes(b_eff, n_model_heads, int(lengths.max()))
    _guard(est, max_memory, _device(model), batch_size=int(batch_size), n_genes=G,
           n_layers_acc=Ls, heads=Hs, max_len=int(lengths.max()), per_batch_bytes=per_batch,
           acc_bytes=Ls * Hs * G * G * 4 + G * G * 8, what="aggregate_attention")

    device = _device(model)
    lut = torch.full((int(model.config.vocab_size),), -1, dtype=torch.long, device=device)
    lut[torch.as_tensor(tokens, device=device)] = torch.arange(G, device=device)
    sums = torch.zeros((Ls, Hs, G * G), dtype=torch.float32, device=device)
    counts = torch.zeros((G, G), dtype=torch.float64, device=device)
    layer_slot = {layer: (0 if avg_layers else k) for k, layer in enumerate(layer_ids)}
    head_index = torch.as_tensor(head_ids, device=device)
    all_heads = len(head_ids) == n_model_heads
    layer_scale = 1.0 / len(layer_ids) if avg_layers else 1.0

    def on_batch(batch):
        g = lut[batch.input_ids]
        g = torch.where(batch.mask, g, torch.full_like(g, -1))
        present = torch.zeros((g.shape[0], G), dtype=torch.float64, device=device)
        cell_pairs = []
        for b in range(g.shape[0]):
            pos = torch.nonzero(g[b] >= 0).squeeze(1)
            if pos.numel() == 0:
                cell_pairs.append(None)
                continue
            gi = g[b, pos]
            present[b].index_add_(0, gi, torch.ones(gi.shape, dtype=torch.float64, device=device))
            cell_pairs.append((pos, (gi[:, None] * G + gi[None, :]).reshape(-1)))
        counts.add_(present.T @ present)  # number of (i, j) position pairs = co-occurrences
        batch.extra["pairs"] = cell_pairs

    def on_layer(layer, attn, vnorm, batch):
        acc = sums[layer_slot[layer]]
        A = attn if all_heads else attn.index_select(1, head_index)
        if vnorm is not None and not all_heads:
            vnorm = vnorm.index_select(1, head_index)
        for b, cp in enumerate(batch.extra["pairs"]):
            if cp is None:
                continue
            pos, pair = cp
            sub = A[b].index_select(1, pos).index_select(2, pos).float()  # (h, k, k)
            if vnorm is not None:
                sub = sub * vnorm[b].index_select(1, pos)[:, None, :].float()
            if avg_heads:
                sub = sub.mean(0, keepdim=True)
            if layer_scale != 1.0:
                sub = sub * layer_scale
            acc.index_add_(1, pair, sub.reshape(sub.shape[0], -1))

    batches = [sel[b] for b in length_sorted_batches(lengths, batch_size)]
    t0 = time.perf_counter()
    _stream(model, cells, batches, layer_ids, on_layer, on_batch=on_batch,
            need_value_norms=(method == "norm"), progress=progress,
            desc=f"attention ({method})", switch_to_eager=switch_to_eager)
    seconds = time.perf_counter() - t0

    return AttentionResult(
        sums=sums.reshape(Ls, Hs, G, G).cpu().numpy(),
        counts=np.rint(counts.cpu().numpy()).astype(np.int64),
        tokens=np.asarray(tokens, dtype=np.int64),
        genes=_gene_labels(model, tokens),
        layers=["mean"] if avg_layers else list(layer_ids),
        heads=["mean"] if avg_heads else list(head_ids),
        method=method,
        n_cells=len(sel),
        symmetric=bool(symmetric),
        info={"batch_size": int(batch_size), "max_len": int(lengths.max()),
              "seconds": round(seconds, 3), "estimated_bytes": int(est),
              "model_layers": n_model_layers, "model_heads": n_model_heads,
              "averaged_layers": layer_ids if avg_layers else None,
              "averaged_heads": head_ids if avg_heads else None},
    )


# --------------------------------------------------------------------------------------------
# per-layer / per-head summaries
# --------------------------------------------------------------------------------------------
def _prepare_summary(model, dataset, layers, heads, batch_size, max_cells, seed, max_memory,
                     what, method: str = "weight"):
    cells = _Cells(dataset)
    layer_ids = _resolve_index_list(layers, _n_layers(model), "layers")
    head_ids = _resolve_index_list(heads, _n_heads(model), "heads")
    if int(batch_size) < 1:
        raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
    sel = _select_cells(cells, max_cells, seed)
    lengths = cells.lengths()[sel]
    L = int(lengths.max())
    est = estimate_attention_memory(len(sel), L, len(layer_ids), _n_heads(model), batch_size, 0,
                                    method=method,
                                    hidden_size=int(getattr(model.config, "hidden_size", 0) or 0)
                                    or None)
    b_eff = max(1, min(int(batch_size), len(sel)))
    _guard(est, max_memory, _device(model), batch_size=int(batch_size), n_genes=0,
           n_layers_acc=len(layer_ids), heads=len(head_ids), max_len=L,
           per_batch_bytes=_attn_batch_bytes(b_eff, _n_heads(model), L), acc_bytes=0, what=what)
    batches = [sel[b] for b in length_sorted_batches(lengths, batch_size)]
    return cells, layer_ids, head_ids, sel, batches


def _token_mask(ids, tokens_tensor, mask):
    import torch

    if tokens_tensor is None:
        return None
    return torch.isin(ids, tokens_tensor) & mask


def head_summary(
    model,
    dataset,
    tf_tokens=None,
    layers="all",
    heads="all",
    batch_size: int = 8,
    max_cells: int | None = None,
    progress: bool = True,
    seed: int = 0,
    *,
    max_memory=None,
    switch_to_eager: bool = True,
) -> pd.DataFrame:
    """One row per layer and head describing how that head distributes its attention.

    Averages are over every (cell, query gene) pair.

    Columns
    -------
    layer, head
        0 = first.
    entropy
        Mean entropy (nats) of a query's attention distribution; low = focused head.
    entropy_norm
        Entropy divided by its maximum ``log(n_genes in the cell)``: 1 = uniform attention.
    max_attention
        Mean of each query's largest attention weight.
    self_attention
        Mean attention of a gene to itself.
    mean_key_position
        Attention-weighted relative position of the keys (0 = the cell's top-ranked gene,
        1 = its lowest-ranked gene, 0.5 = no rank preference).
    tf_attention, tf_token_share, tf_enrichment
        With ``tf_tokens``: share of each query's attention that goes to transcription factors,
        the share of the cell's tokens that are TFs (what uniform attention would give), and
        their ratio (> 1: the head prefers TFs).
    n_cells

    Parameters
    ----------
    tf_tokens
        TFs as token ids or names (symbols / Ensembl IDs), e.g. ``load_ground_truth().tfs``.

    Examples
    --------
    >>> gt = load_ground_truth()                                            # doctest: +SKIP
    >>> head_summary(model, ds, tf_tokens=gt.tfs, max_cells=200)            # doctest: +SKIP
    """
    import torch

    cells, layer_ids, head_ids, sel, batches = _prepare_summary(
        model, dataset, layers, heads, batch_size, max_cells, seed, max_memory, "head_summary")
    device = _device(model)
    tf = None
    if tf_tokens is not None:
        tf = torch.as_tensor(_resolve_tokens(model, tf_tokens, "tf_tokens"), device=device)
    hidx = torch.as_tensor(head_ids, device=device)
    all_heads = len(head_ids) == _n_heads(model)
    nL, nH = len(layer_ids), len(head_ids)
    slot = {layer: k for k, layer in enumerate(layer_ids)}
    keys = ["entropy", "entropy_norm", "max_attention", "self_attention", "mean_key_position",
            "tf_attention"]
    acc = {k: torch.zeros((nL, nH), dtype=torch.float64, device=device) for k in keys}
    tot = {"queries": 0.0, "tf_share": 0.0}

    def on_batch(batch):
        m = batch.mask
        lens = batch.lengths.to(torch.float64)
        L = m.shape[1]
        qmask = m.to(torch.float32)  # (B, L)
        batch.extra["qmask"] = qmask
        batch.extra["logL"] = torch.log(lens).to(torch.float32)  # (B,)
        pos = torch.arange(L, device=device, dtype=torch.float64)[None, :]
        rel = pos / torch.clamp(lens[:, None] - 1, min=1)
        batch.extra["rel"] = (rel * qmask).to(torch.float32)
        if tf is not None:
            kt = _token_mask(batch.input_ids, tf, m).to(torch.float32)
            batch.extra["tf"] = kt
            tot["tf_share"] += float(kt.sum(1).sum())  # sum over queries of n_tf / L = n_tf
        tot["queries"] += float(qmask.sum())

    def on_layer(layer, attn, vnorm, batch):
        k = slot[layer]
        A = attn if all_heads else attn.index_select(1, hidx)  # (B, h, L, L)
        A = A.float()
        q = batch.extra["qmask"][:, None, :].double()  # (B, 1, L)

        def add(key, per_query):  # (B, h, L) -> sum over real queries, float64
            acc[key][k] += (per_query.double() * q).sum((0, 2))

        ent = -torch.special.xlogy(A, A).sum(-1)  # (B, h, L)
        add("entropy", ent)
        logL = batch.extra["logL"][:, None, None]
        add("entropy_norm", torch.where(logL > 0, ent / torch.where(logL > 0, logL,
                                                                     torch.ones_like(logL)),
                                        torch.ones_like(ent)))
        add("max_attention", A.amax(-1))
        add("self_attention", A.diagonal(dim1=-2, dim2=-1))
        add("mean_key_position", torch.einsum("bhij,bj->bhi", A, batch.extra["rel"]))
        if tf is not None:
            add("tf_attention", torch.einsum("bhij,bj->bhi", A, batch.extra["tf"]))

    _stream(model, cells, batches, layer_ids, on_layer, on_batch=on_batch, progress=progress,
            desc="head summary", switch_to_eager=switch_to_eager)
    nq = max(tot["queries"], 1.0)
    rows = []
    for a, layer in enumerate(layer_ids):
        for b, head in enumerate(head_ids):
            row = {"layer": layer, "head": head}
            for key in keys[:-1]:
                row[key] = float(acc[key][a, b]) / nq
            if tf is not None:
                share = tot["tf_share"] / nq
                row["tf_attention"] = float(acc["tf_attention"][a, b]) / nq
                row["tf_token_share"] = share
                row["tf_enrichment"] = row["tf_attention"] / share if share > 0 else np.nan
            row["n_cells"] = len(sel)
            rows.append(row)
    return pd.DataFrame(rows)


def attention_by_rank(
    model,
    dataset,
    layers="all",
    heads="all",
    max_rank: int | None = None,
    relative_bins: int | None = None,
    batch_size: int = 8,
    max_cells: int | None = None,
    progress: bool = True,
    seed: int = 0,
    *,
    max_memory=None,
    switch_to_eager: bool = True,
) -> pd.DataFrame:
    """Attention received by a key as a function of its rank (position) in the cell.

    For each cell, the attention a key receives is the mean over the cell's query genes of
    ``alpha_ij`` (uniform attention gives ``1 / n_genes``); it is averaged over the cells long
    enough to have that rank.  Because Geneformer orders genes by normalised expression, rank
    preference and expression preference are the same thing here.

    Parameters
    ----------
    max_rank
        Report ranks 1..max_rank (default: the longest cell).
    relative_bins
        If given, group keys by relative position ``(rank - 1) / n_genes`` into this many equal
        bins instead, so that cells of different lengths line up.

    Returns
    -------
    pandas.DataFrame
        ``layer, head, rank`` (1 = top-ranked gene) or ``rank_bin`` (lower edge, 0-1), then
        ``attention`` (mean received), ``attention_x_length`` (received x n_genes: 1 = what
        uniform attention would give) and ``n_cells``.

    Examples
    --------
    >>> df = attention_by_rank(model, ds, layers=-1, max_rank=100)        # doctest: +SKIP
    >>> df.groupby("rank").attention_x_length.mean().plot(logy=True)      # doctest: +SKIP
    """
    import torch

    cells, layer_ids, head_ids, sel, batches = _prepare_summary(
        model, dataset, layers, heads, batch_size, max_cells, seed, max_memory,
        "attention_by_rank")
    device = _device(model)
    lengths = cells.lengths()[sel]
    if relative_bins is not None:
        if int(relative_bins) < 1:
            raise CourseInputError(f"relative_bins must be at least 1, got {relative_bins}.")
        P = int(relative_bins)
    else:
        P = int(max_rank) if max_rank is not None else int(lengths.max())
        if P < 1:
            raise CourseInputError(f"max_rank must be at least 1, got {max_rank}.")
    hidx = torch.as_tensor(head_ids, device=device)
    nL, nH = len(layer_ids), len(head_ids)
    slot = {layer: k for k, layer in enumerate(layer_ids)}
    s_att = torch.zeros((nL, nH, P), dtype=torch.float64, device=device)
    s_xl = torch.zeros((nL, nH, P), dtype=torch.float64, device=device)
    n_obs = torch.zeros(P, dtype=torch.float64, device=device)
    cells_per = torch.zeros(P, dtype=torch.float64, device=device)

    def on_batch(batch):
        m = batch.mask
        L = m.shape[1]
        pos = torch.arange(L, device=device)[None, :].expand_as(m)
        if relative_bins is not None:
            rel = pos.to(torch.float64) / batch.lengths[:, None].to(torch.float64)
            bins = torch.clamp((rel * P).floor().long(), max=P - 1)
            keep = m
        else:
            bins = pos
            keep = m & (pos < P)
        batch.extra["bins"] = bins[keep]
        batch.extra["keep"] = keep
        n_obs.index_add_(0, bins[keep], torch.ones(int(keep.sum()), dtype=torch.float64,
                                                   device=device))
        for b in range(m.shape[0]):  # cells contributing to each bin (once per cell)
            ub = torch.unique(bins[b][keep[b]])
            cells_per[ub] += 1

    def on_layer(layer, attn, vnorm, batch):
        k = slot[layer]
        A = attn.index_select(1, hidx).float()
        q = batch.mask.to(torch.float32)
        lens = batch.lengths.to(torch.float64)
        recv = torch.einsum("bhij,bi->bhj", A, q).double() / lens[:, None, None]  # (B, h, L)
        keep = batch.extra["keep"]
        r = recv.permute(0, 2, 1)[keep]  # (N, h)
        s_att[k].index_add_(1, batch.extra["bins"], r.T.contiguous())
        xl = (recv * lens[:, None, None]).permute(0, 2, 1)[keep]
        s_xl[k].index_add_(1, batch.extra["bins"], xl.T.contiguous())

    _stream(model, cells, batches, layer_ids, on_layer, on_batch=on_batch, progress=progress,
            desc="attention by rank", switch_to_eager=switch_to_eager)
    nobs = n_obs.cpu().numpy()
    valid = nobs > 0
    att = (s_att.cpu().numpy() / np.where(valid, nobs, 1))
    xl = (s_xl.cpu().numpy() / np.where(valid, nobs, 1))
    rows = []
    cp = cells_per.cpu().numpy()
    for a, layer in enumerate(layer_ids):
        for b, head in enumerate(head_ids):
            for p in np.flatnonzero(valid):
                row = {"layer": layer, "head": head}
                if relative_bins is not None:
                    row["rank_bin"] = p / P
                else:
                    row["rank"] = int(p) + 1
                row.update(attention=float(att[a, b, p]), attention_x_length=float(xl[a, b, p]),
                           n_cells=int(cp[p]))
                rows.append(row)
    return pd.DataFrame(rows)


def attention_vs_cell_length(
    model,
    dataset,
    genes,
    layers="all",
    heads="all",
    average: bool = True,
    batch_size: int = 8,
    max_cells: int | None = None,
    progress: bool = True,
    seed: int = 0,
    *,
    columns=None,
    method: str = "weight",
    max_memory=None,
    switch_to_eager: bool = True,
) -> pd.DataFrame:
    """Attention received by a gene group in each cell, next to the cell's number of genes.

    The thesis that fine-tuned Geneformer on sci-Plex found attention concentrated on
    mitochondrial and housekeeping genes, partly tracking how many genes a cell expresses.  This
    function measures that confounder: per cell, the share of each query's attention that goes to
    the group (mean over the cell's genes), the group's share of the cell's tokens (what uniform
    attention would give), and the number of genes in the cell.  Plot ``attention_to_group`` or
    ``attention_per_group_gene`` against ``n_genes``: if a gene-level attention score falls as
    ``1 / n_genes``, cell length, not biology, drives it.

    Parameters
    ----------
    genes
        The group: token ids, symbols / Ensembl IDs, or ``"mito"`` / ``"ribo"`` (from the
        vocabulary's symbols).
    average
        True: one row per cell, averaged over the selected layers and heads.  False: one row per
        cell, layer and head.
    columns
        Dataset columns to copy into the table (default: those of ``cell_id``, ``cell_type``,
        ``state`` that exist).
    method
        ``"weight"``: shares of the attention weights.  ``"norm"``: shares of the norm-weighted
        attention ``alpha_ij ||f(x_j)||`` (Kobayashi et al. 2020; see the module docstring),
        renormalised over each query's keys so that, as with weights, the shares of one query
        sum to 1 and ``enrichment`` = 1 still means "no more than its share of tokens".

    Returns
    -------
    pandas.DataFrame
        ``cell`` (row number), copied columns, ``n_genes``, ``n_group``, ``attention_to_group``,
        ``group_token_share``, ``enrichment`` (ratio of the two), ``attention_per_group_gene``
        (attention_to_group / n_group), and ``layer``, ``head`` when ``average=False``.

    Examples
    --------
    >>> df = attention_vs_cell_length(model, ds, "mito", max_cells=300)     # doctest: +SKIP
    >>> df.plot.scatter("n_genes", "attention_per_group_gene")               # doctest: +SKIP
    >>> norm = attention_vs_cell_length(model, ds, "mito", max_cells=300,
    ...                                 method="norm")                        # doctest: +SKIP
    """
    import torch

    method = _check_method(method)

    cells, layer_ids, head_ids, sel, batches = _prepare_summary(
        model, dataset, layers, heads, batch_size, max_cells, seed, max_memory,
        "attention_vs_cell_length", method)
    device = _device(model)
    grp = torch.as_tensor(_resolve_tokens(model, genes, "genes"), device=device)
    hidx = torch.as_tensor(head_ids, device=device)
    nL, nH = len(layer_ids), len(head_ids)
    slot = {layer: k for k, layer in enumerate(layer_ids)}
    row_of = {int(c): r for r, c in enumerate(sel)}
    out = np.zeros((len(sel), nL, nH), dtype=np.float64)
    n_group = np.zeros(len(sel), dtype=np.int64)
    n_genes = np.zeros(len(sel), dtype=np.int64)

    def on_batch(batch):
        kg = _token_mask(batch.input_ids, grp, batch.mask)
        batch.extra["grp"] = kg.to(torch.float32)
        rows = [row_of[int(c)] for c in batch.index]
        batch.extra["rows"] = rows
        n_group[rows] = kg.sum(1).cpu().numpy()
        n_genes[rows] = batch.lengths.cpu().numpy()

    def on_layer(layer, attn, vnorm, batch):
        A = attn.index_select(1, hidx).float()
        if vnorm is not None:  # norm-based: alpha_ij ||f(x_j)||, as shares of each query's total
            A = A * vnorm.index_select(1, hidx).float()[:, :, None, :]
            A = A / A.sum(-1, keepdim=True).clamp_min(1e-30)
        to_g = torch.einsum("bhij,bj->bhi", A, batch.extra["grp"]).double()  # (B, h, L)
        q = batch.mask.to(torch.float64)[:, None, :]
        mean_q = (to_g * q).sum(-1) / batch.lengths.to(torch.float64)[:, None]
        out[batch.extra["rows"], slot[layer], :] = mean_q.cpu().numpy()

    _stream(model, cells, batches, layer_ids, on_layer, on_batch=on_batch,
            need_value_norms=(method == "norm"), progress=progress,
            desc="attention vs cell length", switch_to_eager=switch_to_eager)

    if columns is None:
        columns = [c for c in ("cell_id", "cell_type", "state") if c in cells.columns]
    base = pd.DataFrame({"cell": sel})
    for c in columns:
        col = cells.column(c)
        if col is None:
            raise CourseInputError(f"Column {c!r} is not in the dataset ({cells.columns}).")
        base[c] = np.asarray(col, dtype=object)[sel]
    base["n_genes"] = n_genes
    base["n_group"] = n_group
    share = n_group / np.maximum(n_genes, 1)
    if average:
        frames = [base.assign(attention_to_group=out.mean(axis=(1, 2)))]
    else:
        frames = [base.assign(layer=layer, head=head, attention_to_group=out[:, a, b])
                  for a, layer in enumerate(layer_ids) for b, head in enumerate(head_ids)]
    df = pd.concat(frames, ignore_index=True)
    share_all = np.tile(share, len(frames))
    ng = np.tile(n_group, len(frames)).astype(np.float64)
    df["group_token_share"] = share_all
    with np.errstate(invalid="ignore", divide="ignore"):
        df["enrichment"] = np.where(share_all > 0, df["attention_to_group"] / share_all, np.nan)
        df["attention_per_group_gene"] = np.where(ng > 0, df["attention_to_group"] / ng, np.nan)
    return df


# --------------------------------------------------------------------------------------------
# state contrast: the same aggregation on two groups of cells, and their difference
# --------------------------------------------------------------------------------------------
_CONTRAST_NORMS = ("log2", "diff", "z")


@dataclass
class StateContrast:
    """Attention in two groups of cells and how it changes (output of :func:`state_contrast`).

    Attributes
    ----------
    a, b : AttentionResult
        The streamed aggregations of group ``a`` (e.g. diseased) and group ``b`` (e.g. healthy),
        over the same genes in the same order.
    groups : tuple
        ``(name_a, name_b)``.
    groupby : str
        The dataset column the groups come from.
    min_count : int
        Pairs co-expressed in fewer cells than this in either group get no contrast (NaN).
    pseudocount : float
        Added to both means in the ``"log2"`` ratio (default: the median mean attention over
        all pairs with a value in both groups).
    """

    a: AttentionResult
    b: AttentionResult
    groups: tuple
    groupby: str = ""
    min_count: int = 5
    pseudocount: float | None = None

    @property
    def genes(self) -> list:
        return list(self.a.genes)

    def _means(self, layer, head, symmetric):
        ma = self.a.mean_array(layer, head, self.min_count)
        mb = self.b.mean_array(layer, head, self.min_count)
        sym = self.a.symmetric if symmetric is None else bool(symmetric)
        if sym:
            ma, mb = (ma + ma.T) / 2.0, (mb + mb.T) / 2.0
        return ma, mb, sym

    def _pseudocount(self, ma, mb) -> float:
        if self.pseudocount is not None:
            return float(self.pseudocount)
        both = np.concatenate([ma[np.isfinite(ma) & np.isfinite(mb)],
                               mb[np.isfinite(ma) & np.isfinite(mb)]])
        return float(np.median(both)) if both.size else 1e-6

    def contrast_array(self, layer=None, head=None, symmetric=None,
                       normalize: str = "log2") -> np.ndarray:
        """``(G, G)`` contrast, group ``a`` versus group ``b``; NaN where a pair is missing.

        ``normalize``: ``"diff"`` = mean_a - mean_b (raw attention units); ``"log2"`` =
        log2((mean_a + c) / (mean_b + c)), c = :attr:`pseudocount` - a fold change, so that pairs
        with high baseline attention (genes at the top of every cell) do not dominate;
        ``"z"`` = the difference divided by a robust spread over all pairs (1.4826 x the median
        absolute deviation of the differences): |z| > 3 means "far outside the typical change".
        """
        if normalize not in _CONTRAST_NORMS:
            raise CourseInputError(
                f"normalize={normalize!r} is not known. Fix: one of {list(_CONTRAST_NORMS)}."
            )
        ma, mb, _ = self._means(layer, head, symmetric)
        if normalize == "diff":
            return ma - mb
        if normalize == "log2":
            c = self._pseudocount(ma, mb)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.log2((ma + c) / (mb + c))
        d = ma - mb
        fin = d[np.isfinite(d)]
        if fin.size == 0:
            return d
        mad = 1.4826 * float(np.median(np.abs(fin - np.median(fin))))
        scale = mad if mad > 0 else (float(np.std(fin)) or 1.0)
        return (d - float(np.median(fin))) / scale

    def difference(self, layer=None, head=None, symmetric=None) -> pd.DataFrame:
        """mean attention in ``a`` minus in ``b`` (labelled; NaN where a pair is missing)."""
        return self.matrix(layer, head, symmetric, normalize="diff")

    def matrix(self, layer=None, head=None, symmetric=None,
               normalize: str = "log2") -> pd.DataFrame:
        """The contrast as a labelled gene x gene DataFrame (row = query, column = key)."""
        m = self.contrast_array(layer, head, symmetric, normalize)
        sym = self.a.symmetric if symmetric is None else bool(symmetric)
        df = pd.DataFrame(m, index=self.genes, columns=self.genes)
        df.index.name = "gene" if sym else "source (query)"
        df.columns.name = "gene" if sym else "target (key)"
        return df

    def to_edges(self, layer=None, head=None, symmetric=None, *, normalize: str = "log2",
                 direction: str = "both", top_k: int | None = None,
                 self_loops: bool = False) -> pd.DataFrame:
        """Gene pairs ranked by how much their attention changes between the groups.

        Returns ``source, target, score, mean_<a>, mean_<b>, diff, n_cells_<a>, n_cells_<b>``.
        ``score`` is the normalised contrast for ``direction="up"`` (higher in ``a``) and
        ``"down"`` (its negative: higher = lower in ``a``), or its absolute value for
        ``"both"`` (the sign stays in ``diff``).  Sorted by ``score``, highest first.
        """
        if direction not in ("both", "up", "down"):
            raise CourseInputError(
                f"direction={direction!r} is not known. Fix: 'both', 'up' or 'down'.")
        c = self.contrast_array(layer, head, symmetric, normalize)
        ma, mb, sym = self._means(layer, head, symmetric)
        G = c.shape[0]
        ii, jj = np.meshgrid(np.arange(G), np.arange(G), indexing="ij")
        keep = np.isfinite(c)
        if sym:
            keep &= ii <= jj
        if not self_loops:
            keep &= ii != jj
        i, j = ii[keep], jj[keep]
        raw = c[keep]
        score = np.abs(raw) if direction == "both" else (raw if direction == "up" else -raw)
        order = np.lexsort((j, i, -score))
        if top_k is not None:
            order = order[: int(top_k)]
        genes = np.asarray(self.genes, dtype=object)
        na, nb = (str(g) for g in self.groups)
        i, j = i[order], j[order]
        return pd.DataFrame({
            "source": genes[i], "target": genes[j], "score": score[order],
            f"mean_{na}": ma[i, j], f"mean_{nb}": mb[i, j], "diff": ma[i, j] - mb[i, j],
            f"n_cells_{na}": self.a.counts[i, j], f"n_cells_{nb}": self.b.counts[i, j],
        }).reset_index(drop=True)

    def gene_scores(self, layer=None, head=None, *, normalize: str = "log2") -> pd.DataFrame:
        """Per gene: how much the attention of its pairs changes (a blind read-out of the state).

        Returns ``mean_abs`` (mean |contrast| over its partners, as query and as key),
        ``up`` / ``down`` (mean positive / negative part), ``n_partners``, ``frac_cells_<a>`` and
        ``frac_cells_<b>`` (fraction of each group's cells expressing the gene: a gene switched on
        in only one group has no pairs in the other, hence no contrast - look here instead).
        Sorted by ``mean_abs``.
        """
        c = self.contrast_array(layer, head, False, normalize)
        both = np.concatenate([c, c.T], axis=1)
        fin = np.isfinite(both)
        with np.errstate(invalid="ignore"):
            n = fin.sum(1)
            mean_abs = np.where(n > 0, np.nansum(np.abs(both), 1) / np.maximum(n, 1), np.nan)
            up = np.where(n > 0, np.nansum(np.clip(both, 0, None), 1) / np.maximum(n, 1), np.nan)
            down = np.where(n > 0, np.nansum(np.clip(both, None, 0), 1) / np.maximum(n, 1),
                            np.nan)
        na, nb = (str(g) for g in self.groups)
        df = pd.DataFrame({
            "mean_abs": mean_abs, "up": up, "down": down, "n_partners": n // 2,
            f"frac_cells_{na}": self.a.counts.diagonal() / max(self.a.n_cells, 1),
            f"frac_cells_{nb}": self.b.counts.diagonal() / max(self.b.n_cells, 1),
        }, index=pd.Index(self.genes, name="gene"))
        return df.sort_values("mean_abs", ascending=False, kind="stable", na_position="last")

    def pooled(self) -> AttentionResult:
        """Both groups together: the :class:`AttentionResult` of all their cells (sums and counts
        added), exactly what :func:`aggregate_attention` gives on the union - so a chapter that
        needs the contrast and the pooled network pays for one pass only."""
        info = dict(self.a.info)
        info.pop("group", None)
        info["pooled_groups"] = {self.groupby: list(self.groups)}
        info["seconds"] = round(float(self.a.info.get("seconds", 0))
                                + float(self.b.info.get("seconds", 0)), 3)
        info["max_len"] = max(int(self.a.info.get("max_len", 0)),
                              int(self.b.info.get("max_len", 0)))
        return AttentionResult(
            sums=self.a.sums + self.b.sums, counts=self.a.counts + self.b.counts,
            tokens=self.a.tokens.copy(), genes=list(self.a.genes), layers=list(self.a.layers),
            heads=list(self.a.heads), method=self.a.method,
            n_cells=self.a.n_cells + self.b.n_cells, symmetric=self.a.symmetric, info=info)

    @property
    def nbytes(self) -> int:
        """Memory held by both accumulators (independent of the number of cells)."""
        return self.a.nbytes + self.b.nbytes

    def __repr__(self) -> str:
        return (f"StateContrast({self.groupby}: {self.groups[0]!r} ({self.a.n_cells} cells) vs "
                f"{self.groups[1]!r} ({self.b.n_cells} cells), genes={len(self.genes)}, "
                f"method={self.a.method!r}, {self.nbytes / 2**20:.1f} MiB)")


def _subset_cells(cells: _Cells, idx: np.ndarray):
    """The rows ``idx`` of the dataset behind ``cells``, in the same container type."""
    ds = cells.dataset
    idx = [int(i) for i in idx]
    if cells._hf:
        return ds.select(idx)
    if isinstance(ds, pd.DataFrame):
        return ds.iloc[idx].reset_index(drop=True)
    if isinstance(ds, dict):
        return {k: [list(v)[i] for i in idx] for k, v in ds.items()}
    return [ds[i] for i in idx]


def state_contrast(
    model,
    dataset,
    groupby: str,
    groups,
    *,
    genes=None,
    layers="all",
    heads="all",
    method: str = "weight",
    average="all",
    batch_size: int = 8,
    max_cells: int | None = None,
    min_count: int = 5,
    pseudocount: float | None = None,
    symmetric: bool = False,
    max_genes: int = _DEFAULT_MAX_GENES,
    progress: bool = True,
    seed: int = 0,
    max_memory=None,
    switch_to_eager: bool = True,
) -> StateContrast:
    """State-contrast attention network: how attention between genes changes with a state.

    Runs :func:`aggregate_attention` - the same streaming aggregation, so memory is still
    independent of the number of cells (two sets of accumulators) - once on the cells of group
    ``a`` and once on those of group ``b`` (e.g. diseased and healthy cardiomyocytes), over the
    **same genes**, and returns both with their difference.  The contrast is normalised
    (``normalize="log2"`` fold change by default, see :meth:`StateContrast.contrast_array`) so
    that gene pairs can be ranked by how much their attention changes.  Compare cells of one
    cell type only: between cell types nearly every pair changes.

    Attention also changes when only the ranks change (a gene that moves up in the sentence
    attends and is attended differently), so a changed pair is a lead about what the model sees
    changing, not evidence of rewired regulation.

    Parameters
    ----------
    model, dataset
        As :func:`aggregate_attention`; ``dataset`` needs the ``groupby`` column.
    groupby
        Column holding the state, e.g. ``"state"``.
    groups
        ``(a, b)``: the contrast is ``a`` versus ``b`` (positive = more attention in ``a``).
        Restrict the dataset to one cell type first (``ds.filter`` / ``ds.select``).
    genes
        Gene set (as :func:`aggregate_attention`); default: the ``max_genes`` genes most often
        present in the cells of both groups together.
    layers, heads, method, average, batch_size, max_memory, switch_to_eager
        As :func:`aggregate_attention` (``average="all"`` by default: one matrix per group).
    max_cells
        At most this many cells **per group** (seeded random subset).
    min_count
        Pairs co-expressed in fewer cells of either group get NaN (no contrast).
    pseudocount
        For the log2 ratio; default: median pair mean.
    symmetric
        Default view (directed, or ``(A + A.T) / 2``).

    Returns
    -------
    StateContrast
        ``.difference()``, ``.matrix(normalize=...)``, ``.to_edges(top_k=...)``,
        ``.gene_scores()``, ``.a`` / ``.b`` (the two :class:`AttentionResult`).

    Examples
    --------
    >>> cm = ds.filter(lambda c: c["cell_type"] == "cardiomyocyte")          # doctest: +SKIP
    >>> sc = state_contrast(model, cm, "state", ("diseased", "healthy"))     # doctest: +SKIP
    >>> sc.to_edges(top_k=10)                                                # doctest: +SKIP
    >>> sc.gene_scores().head()                                              # doctest: +SKIP
    """
    cells = _Cells(dataset)
    if isinstance(groups, str) or len(list(groups)) != 2:
        raise CourseInputError(
            f"groups must be two group names (a, b), got {groups!r}. Fix: e.g. "
            "groups=('diseased', 'healthy')."
        )
    ga, gb = (str(g) for g in groups)
    if ga == gb:
        raise CourseInputError(f"groups are the same ({ga!r}). Fix: name two different groups.")
    col = cells.column(groupby)
    if col is None:
        raise CourseInputError(
            f"The dataset has no column {groupby!r} (columns: {cells.columns}). Fix: keep it when "
            f"tokenizing, e.g. tokenize(adata, vocab, cell_attrs=('cell_id', {groupby!r}))."
        )
    labels = np.asarray([str(v) for v in col], dtype=object)
    present = list(dict.fromkeys(labels.tolist()))
    idx = {}
    for g in (ga, gb):
        sel = np.flatnonzero(labels == g)
        if sel.size == 0:
            raise CourseInputError(
                f"No cell has {groupby} == {g!r} (values: {present[:20]}). Fix: use one of those "
                "names (case-sensitive)."
            )
        if max_cells is not None and int(max_cells) < sel.size:
            if int(max_cells) < 1:
                raise CourseInputError(f"max_cells must be at least 1, got {max_cells}.")
            rng = np.random.default_rng(seed)
            sel = np.sort(rng.choice(sel, size=int(max_cells), replace=False))
        idx[g] = sel
    if int(min_count) < 1:
        raise CourseInputError(f"min_count must be at least 1, got {min_count}.")
    if genes is None:
        if int(max_genes) < 1:
            raise CourseInputError(f"max_genes must be at least 1, got {max_genes}.")
        both = np.sort(np.concatenate([idx[ga], idx[gb]]))
        tokens, n_seen = _frequent_genes(model, cells, both, max_genes)
        if len(tokens) == 0:
            raise CourseInputError("The cells contain no gene tokens. Fix: check the dataset.")
        if n_seen > len(tokens):
            warnings.warn(
                f"state_contrast: the cells contain {n_seen} genes; keeping the {len(tokens)} "
                "most frequently present in both groups together. Pass genes=[...] or "
                "max_genes= to choose.", stacklevel=2)
    else:
        tokens = _resolve_tokens(model, genes)
    tokens = [int(t) for t in tokens]
    results = {}
    for g in (ga, gb):
        results[g] = aggregate_attention(
            model, _subset_cells(cells, idx[g]), genes=tokens, layers=layers, heads=heads,
            method=method, batch_size=batch_size, symmetric=symmetric, progress=progress,
            seed=seed, average=average, max_memory=max_memory, switch_to_eager=switch_to_eager)
        results[g].info["group"] = {groupby: g}
    return StateContrast(a=results[ga], b=results[gb], groups=(ga, gb), groupby=str(groupby),
                         min_count=int(min_count), pseudocount=pseudocount)
