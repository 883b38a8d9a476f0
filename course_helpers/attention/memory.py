"""The memory guard: estimate a streamed extraction's peak memory and refuse what will not fit."""
from __future__ import annotations

import functools
import inspect
import warnings

from .._utils import (
    CourseDeprecationWarning,
    CourseInputError,
    find_stack_level,
    renamed_parameters,
)
from ..model import model_facts

_GB = 1024**3


def _old_positions(*names: str):
    """Decorator: still accept the now keyword-only ``names`` at their old positions, with a
    :class:`~course_helpers._utils.CourseDeprecationWarning` (for callers written before ``*``).

    Goes directly under ``renamed_parameters`` (the warning names the caller 3 frames up).
    """
    def wrap(func):
        params = inspect.signature(func).parameters.values()
        n_pos = sum(p.kind == p.POSITIONAL_OR_KEYWORD for p in params)

        @functools.wraps(func)
        def inner(*args, **kwargs):
            extra = args[n_pos:]
            if extra:
                if len(extra) > len(names):
                    raise TypeError(f"{func.__name__}() takes {n_pos} positional arguments "
                                    f"(and {', '.join(names)} by name); got {len(args)}")
                moved = names[:len(extra)]
                for name, value in zip(moved, extra):
                    if name in kwargs:
                        raise TypeError(f"{func.__name__}() got multiple values for {name!r}")
                    kwargs[name] = value
                warnings.warn(
                    f"{func.__name__}(): pass {', '.join(f'{n}=' for n in moved)} by name; "
                    "positions after the fourth will stop working in a later version.",
                    CourseDeprecationWarning, stacklevel=find_stack_level())
                args = args[:n_pos]
            return func(*args, **kwargs)

        return inner

    return wrap


@renamed_parameters(layers="n_layers")
@_old_positions("batch_size", "n_genes")  # innermost: its warning points 3 frames up
def estimate_attention_memory(
    n_cells: int,
    max_len: int,
    n_layers: int,
    heads: int,
    *,
    batch_size: int,
    n_genes: int,
    method: str = "weight",
    hidden_size: int | None = None,
    accumulated_heads: int | None = None,
) -> int:
    """Peak memory (bytes) of a streamed attention extraction, roughly.

    Terms (float32):

    * attention maps of **one layer** of one batch, about two copies alive at once (scores and
      softmax): ``2 x batch x heads x L^2 x 4``;
    * per-cell scatter buffers: ``heads x L^2 x 12 + L^2 x 8``;
    * accumulators: ``n_layers x accumulated_heads x genes^2 x 4`` (sums) ``+ genes^2 x 8``
      (co-occurrence counts); they do not grow with the number of cells;
    * hidden activations if ``hidden_size`` is given: ``~ 12 x batch x L x hidden x 4``.

    The number of cells only matters when it is smaller than ``batch_size``; streaming makes the
    estimate otherwise independent of it.  Model weights are not included.

    Parameters
    ----------
    n_cells, max_len
        Cells to process and the longest cell (tokens).
    n_layers, heads
        Number of layers whose attention is accumulated (``layers=`` is the old, deprecated
        name), and heads per layer of the model.
    batch_size, n_genes
        Cells per forward pass and size of the gene set (accumulators are ``n_genes^2``); by
        name (their old positions 5 and 6 still work, with a deprecation warning).
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
    >>> gb = estimate_attention_memory(1000, 2048, n_layers=6, heads=4, batch_size=8,
    ...                                n_genes=1000) / 2**30
    >>> round(gb, 2)
    1.32
    >>> request = dict(max_len=100, n_layers=2, heads=4, batch_size=8, n_genes=50)
    >>> estimate_attention_memory(10, **request) == estimate_attention_memory(10_000, **request)
    True
    """
    b = max(1, min(int(batch_size), int(n_cells)))
    L = int(max_len)
    h = int(heads)
    g = int(n_genes)
    acc_h = h if accumulated_heads is None else int(accumulated_heads)
    attn = _attn_batch_bytes(b, h, L)
    per_cell = h * L * L * (12 + (4 if method == "norm" else 0)) + L * L * 8
    acc = int(n_layers) * acc_h * g * g * 4 + g * g * 8
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
        tips.append(f"fewer layers (now {n_layers_acc}: attn_layers=[...]) or average='heads' "
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


def _check_request(model, *, n_cells: int, max_len: int, layers_kept: int, heads_kept: int,
                   batch_size: int, n_genes: int, method: str, max_memory, what: str) -> int:
    """Estimate a request's peak memory and raise if it exceeds the budget; returns the estimate.

    ``layers_kept`` / ``heads_kept``: the accumulator slots (1 where averaged on the fly);
    ``n_genes`` = 0 for the per-head statistics, which keep no gene x gene accumulators.
    """
    n_heads = int(model.config.num_attention_heads)
    est = estimate_attention_memory(
        n_cells, max_len, layers_kept, n_heads, batch_size=batch_size, n_genes=n_genes,
        method=method,
        hidden_size=int(getattr(model.config, "hidden_size", 0) or 0) or None,
        accumulated_heads=heads_kept)
    b_eff = max(1, min(int(batch_size), int(n_cells)))
    _guard(est, max_memory, model_facts(model).device, batch_size=int(batch_size), n_genes=n_genes,
           n_layers_acc=layers_kept, heads=heads_kept, max_len=max_len,
           per_batch_bytes=_attn_batch_bytes(b_eff, n_heads, max_len),
           acc_bytes=layers_kept * heads_kept * n_genes * n_genes * 4 + n_genes * n_genes * 8,
           what=what)
    return est
