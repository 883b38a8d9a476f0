"""Hidden states: the reference ``emb_layer`` convention (:func:`resolve_layer`) and
:func:`hidden_states`, which runs the encoder only up to the requested layer.
"""

from __future__ import annotations

from .._utils import CourseInputError, renamed_parameters


@renamed_parameters(layer="emb_layer")
def resolve_layer(model, emb_layer: int = -1) -> int:
    """Index into ``hidden_states`` for the reference ``emb_layer`` convention.

    With N encoder layers, ``hidden_states`` has N + 1 entries (embeddings, then each layer).
    ``emb_layer=0`` is the last layer (index N), ``emb_layer=-1`` the second-to-last (index
    N - 1, the reference default) and ``emb_layer=-N`` the embedding output (index 0).

    Parameters
    ----------
    model
        A model with ``config.num_hidden_layers``.
    emb_layer
        The layer, counted back from the last one (0, -1, ..., -N). ``layer=`` is the old name
        (still accepted, with a :class:`~course_helpers._utils.CourseDeprecationWarning`).

    Returns
    -------
    int

    Raises
    ------
    CourseInputError
        If ``emb_layer`` is not an integer from -N to 0.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> m = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=6))
    >>> resolve_layer(m, -1), resolve_layer(m, 0), resolve_layer(m, emb_layer=-6)
    (5, 6, 0)
    """
    n_layers = int(model.config.num_hidden_layers)
    try:
        layer = int(emb_layer)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"emb_layer must be an integer, got {emb_layer!r}.") from err
    if not -n_layers <= layer <= 0:
        raise CourseInputError(
            f"emb_layer={layer} is out of range for a model with {n_layers} layers. Layers count "
            f"back from the last one: 0 = last layer, -1 = second-to-last (the usual choice), "
            f"..., -{n_layers} = the input embeddings. Fix: pass an integer from -{n_layers} to 0."
        )
    return n_layers + layer


@renamed_parameters(layer="emb_layer")
def hidden_states(model, input_ids, attention_mask=None, *, emb_layer: int = -1):
    """Per-position embeddings from one encoder layer (no MLM head).

    Runs only ``model.bert`` (the MLM head would cost ~73 % of the forward pass for nothing) and
    stops after the requested layer: with ``emb_layer=-1`` the last encoder layer is never
    computed. The result equals ``hidden_states[N + emb_layer]`` of a full forward pass with
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
    emb_layer
        ``-1`` = second-to-last layer (reference default), ``0`` = last layer, other negative
        values count back from there (see :func:`resolve_layer`). ``layer=`` is the old name
        (still accepted, with a :class:`~course_helpers._utils.CourseDeprecationWarning`).

    Returns
    -------
    torch.Tensor
        ``(batch, L, hidden)``.

    Examples
    --------
    >>> import torch
    >>> from course_helpers.model import load_model, pad_batch
    >>> model = load_model("teaching")
    >>> ids, mask = pad_batch([[5, 6, 7], [8]], 0, model.device)
    >>> with torch.inference_mode():
    ...     h = hidden_states(model, ids, mask, emb_layer=-1)
    >>> h.shape
    torch.Size([2, 3, 128])
    """
    idx = resolve_layer(model, emb_layer)
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
