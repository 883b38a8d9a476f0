"""Hidden states: the reference ``emb_layer`` convention (:func:`resolve_layer`) and
:func:`hidden_states`, which runs the encoder only up to the requested layer.
"""

from __future__ import annotations

from .._utils import CourseInputError


def resolve_layer(model, layer: int = -1) -> int:
    """Index into ``hidden_states`` for the reference ``emb_layer`` convention.

    With N encoder layers, ``hidden_states`` has N + 1 entries (embeddings, then each layer).
    ``layer=0`` is the last layer (index N), ``layer=-1`` the second-to-last (index N - 1, the
    reference default) and ``layer=-N`` the embedding output (index 0).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> m = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=6))
    >>> resolve_layer(m, -1), resolve_layer(m, 0), resolve_layer(m, -6)
    (5, 6, 0)
    """
    n_layers = int(model.config.num_hidden_layers)
    try:
        layer = int(layer)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"layer must be an integer, got {layer!r}.") from err
    if not -n_layers <= layer <= 0:
        raise CourseInputError(
            f"layer={layer} is out of range for a model with {n_layers} layers. Layers count back "
            f"from the last one: 0 = last layer, -1 = second-to-last (the usual choice), ..., "
            f"-{n_layers} = the input embeddings. Fix: pass an integer from -{n_layers} to 0."
        )
    return n_layers + layer


def hidden_states(model, input_ids, attention_mask=None, layer: int = -1):
    """Per-position embeddings from one encoder layer (no MLM head).

    Runs only ``model.bert`` (the MLM head would cost ~73 % of the forward pass for nothing) and
    stops after the requested layer: with ``layer=-1`` the last encoder layer is never computed.
    The result equals ``hidden_states[N + layer]`` of a full forward pass with
    ``output_hidden_states=True``. Call it inside ``torch.inference_mode()`` /
    ``torch.no_grad()``.

    The early stop is a forward hook on that layer, registered for the call and removed after
    it; do not call this function on the same model from two threads at once.

    Parameters
    ----------
    model
        A ``BertForMaskedLM`` (or ``BertModel``).
    input_ids, attention_mask
        ``(batch, L)`` tensors, e.g. from :func:`pad_batch`, on the model's device.
    layer
        ``-1`` = second-to-last layer (reference default), ``0`` = last layer, other negative
        values count back from there (see :func:`resolve_layer`).

    Returns
    -------
    torch.Tensor
        ``(batch, L, hidden)``.

    Examples
    --------
    >>> import torch
    >>> model = load_model("teaching")                          # doctest: +SKIP
    >>> ids, mask = pad_batch([[5, 6, 7], [8]], 0, model.device)  # doctest: +SKIP
    >>> with torch.inference_mode():                            # doctest: +SKIP
    ...     h = hidden_states(model, ids, mask, layer=-1)
    >>> h.shape                                                 # doctest: +SKIP
    torch.Size([2, 3, 128])
    """
    idx = resolve_layer(model, layer)
    encoder = getattr(model, "bert", model)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    stop_at = None
    if layers is not None and len(layers) == int(model.config.num_hidden_layers):
        stop_at = encoder.embeddings if idx == 0 else layers[idx - 1]
    if stop_at is None or idx == len(layers):  # last layer wanted, or an unfamiliar model
        out = encoder(input_ids=input_ids, attention_mask=attention_mask,
                      output_hidden_states=True, output_attentions=False, return_dict=True)
        return out.hidden_states[idx]
    caught = []

    def hook(_module, _inputs, output):
        caught.append(output[0] if isinstance(output, (tuple, list)) else output)
        raise _StopForward

    handle = stop_at.register_forward_hook(hook)
    try:
        encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=False,
                output_attentions=False, return_dict=True)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not caught:  # pragma: no cover - the hooked module was not called
        raise RuntimeError("hidden_states: the requested layer was never reached.")
    return caught[0]


class _StopForward(Exception):
    """Raised by :func:`hidden_states`' hook once the requested layer has run."""
