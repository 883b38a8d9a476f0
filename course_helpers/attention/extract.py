"""Reading attention out of the model: eager switch, forward hooks, streamed batches.

:func:`cell_attentions` returns the raw maps of one small batch; ``_stream`` runs the encoder
batch by batch and hands each requested layer's attention (and, for the norm-based view, the
value-vector norms) to a callback, stopping after the last layer needed.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from .._utils import CourseInputError
from .._utils import progress as _progress
from ..model import model_facts, pad_batch

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


def _stream(model, cells, batches, layer_ids, on_layer, *, head_ids=None, on_batch=None,
            need_value_norms=False, progress=True, desc="attention", switch_to_eager=True):
    """Run the encoder batch by batch and hand each requested layer's attention to ``on_layer``.

    ``on_layer(layer, attn (B, h, L, L), value_norms (B, h, L) or None, batch)``, where ``h``
    are the heads ``head_ids`` (in that order; ``None`` = every head).
    """
    import torch

    base = _base(model)
    enc_layers = base.encoder.layer
    n_heads = _n_heads(model)
    facts = model_facts(model)
    device, pad = facts.device, facts.pad_id
    last = max(layer_ids)
    head_sel = None  # None: every head, in order (no copy)
    if head_ids is not None and list(head_ids) != list(range(n_heads)):
        head_sel = torch.as_tensor(list(head_ids), device=device)
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
            if head_sel is not None:
                attn = attn.index_select(1, head_sel)
                vnorm = None if vnorm is None else vnorm.index_select(1, head_sel)
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
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> two = ch.tokenize.tokenize(ch.data.load_tissue()[:2], model.gene_vocab, progress=False)
    >>> attn = cell_attentions(model, two["input_ids"])
    >>> len(attn), tuple(attn[0].shape[:2])          # 4 layers; 2 cells x 4 heads
    (4, (2, 4))
    >>> round(float(attn[0][0, 0, 0].sum()), 4)      # a query's attention sums to 1
    1.0
    """
    import torch

    facts = model_facts(model)
    device = facts.device
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
        ids, mask = pad_batch(seqs, facts.pad_id, device)
    base = _base(model)
    orig_impl = getattr(model.config, "_attn_implementation", None)
    with _eager_attention(model, switch_to_eager), _eval_mode(model), torch.inference_mode():
        out = base(input_ids=ids, attention_mask=mask, output_attentions=True, return_dict=True)
    attn = getattr(out, "attentions", None)
    if not attn or any(a is None for a in attn):
        raise CourseInputError(_no_weights_message(model, orig_impl))
    return tuple(attn)
