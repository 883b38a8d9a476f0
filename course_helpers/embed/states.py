"""Cell-state embeddings: the mean cell embedding per state (:func:`state_embeddings`)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._utils import CourseInputError, renamed_parameters
from ..tokenize import TokenizedCells
from .cells import _cell_embeddings


@renamed_parameters(layer="emb_layer")
def state_embeddings(
    model,
    dataset,
    state_key: str,
    states=None,
    *,
    emb_layer: int = -1,
    batch_size: int = 32,
    progress: bool = True,
    cls: bool | None = None,
) -> dict[str, np.ndarray]:
    """Mean cell embedding of each cell state (goal/start states for perturbation).

    Same as the reference ``EmbExtractor.get_state_embs`` with ``summary_stat="exact_mean"``: the
    per-cell embeddings (see :func:`embed_cells`: mean over genes for V1, ``<cls>`` by default
    for V2) of the cells in a state, averaged.

    Parameters
    ----------
    model
        From :func:`course_helpers.model.load_model`.
    dataset
        Tokenized cells with a ``state_key`` column.
    state_key
        Column holding the state of each cell, e.g. ``"cell_type"`` or ``"state"``.
    states
        States to embed: a list of names, the reference dictionary
        ``{"state_key": ..., "start_state": ..., "goal_state": ..., "alt_states": [...]}``, or
        ``None`` for every state present.
    emb_layer, batch_size, progress, cls
        As in :func:`embed_cells`.

    Returns
    -------
    dict
        ``{state: vector}``; vectors are float32 of length ``hidden_size``.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model, tissue = ch.model.load_model("teaching"), ch.data.load_tissue()
    >>> cells = ch.tokenize.tokenize(tissue[:8], model.gene_vocab, cell_attrs=["state"],
    ...                              progress=False)
    >>> embs = state_embeddings(model, cells, "state", ["healthy", "diseased"],
    ...                         progress=False)
    >>> list(embs), embs["healthy"].shape
    (['healthy', 'diseased'], (128,))
    """
    cells = TokenizedCells(dataset)
    if isinstance(states, Mapping):
        spec = states
        if "state_key" in spec and spec["state_key"] != state_key:
            raise CourseInputError(
                f"state_key={state_key!r} but the states dictionary says "
                f"state_key={spec['state_key']!r}. Fix: pass the same key."
            )
        states = [spec.get("start_state"), spec.get("goal_state"), *spec.get("alt_states", [])]
        states = [s for s in states if s is not None]
    values = np.asarray([str(v) for v in cells.column(state_key)], dtype=object)
    present = list(dict.fromkeys(values.tolist()))
    if states is None:
        states = present
    elif isinstance(states, str):
        states = [states]
    states = [str(s) for s in states]
    unknown = [s for s in states if s not in set(present)]
    if unknown:
        raise CourseInputError(
            f"State(s) {unknown} do not occur in column {state_key!r}. States present: "
            f"{present[:20]}. Fix: use one of those names (they are case-sensitive)."
        )
    states = list(dict.fromkeys(states))
    sel = np.flatnonzero(np.isin(values, states))
    emb = _cell_embeddings(model, cells, sel, emb_layer, batch_size, cls, progress,
                           "Embedding cell states")
    sel_values = values[sel]
    return {
        s: emb[sel_values == s].mean(axis=0, dtype=np.float64).astype(np.float32) for s in states
    }
