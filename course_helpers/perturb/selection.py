"""Which cells are perturbed, and the cell-state embeddings shifts are measured against."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from ..model import ModelFacts


@dataclass
class _Selection:
    rows: np.ndarray  # dataset row of each chosen cell (output order)
    cell_ids: list
    xs: list  # np.int64 token arrays, one per chosen cell


def _parse_states(cell_states):
    if cell_states is None:
        return None
    if not isinstance(cell_states, Mapping):
        raise CourseInputError(
            "cell_states must be a dict like {'state_key': 'state', 'start_state': 'diseased', "
            "'goal_state': 'healthy', 'alt_states': []}, not "
            f"{type(cell_states).__name__}."
        )
    missing = [k for k in ("state_key", "start_state", "goal_state") if cell_states.get(k) is None]
    extra = sorted(set(cell_states) - {"state_key", "start_state", "goal_state", "alt_states"})
    if missing or extra:
        what = (
            (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected keys {extra}" if extra else "")
        )
        raise CourseInputError(
            f"cell_states is {what}. Fix: cell_states={{'state_key': <column>, 'start_state': "
            "<state to perturb>, 'goal_state': <desired state>, 'alt_states': [<others>]}."
        )
    alts = cell_states.get("alt_states") or []
    if isinstance(alts, str):
        alts = [alts]
    states = [cell_states["start_state"], cell_states["goal_state"], *alts]
    if len(set(states)) != len(states):
        raise CourseInputError(
            f"cell_states names a state twice ({states}). Fix: start, goal and alternative states "
            "must all differ."
        )
    return str(cell_states["state_key"]), states


def _select_cells(reader, info: ModelFacts, cells, max_cells, seed, states) -> _Selection:
    n = reader.n
    has_id = "cell_id" in reader.columns
    rows = np.arange(n)
    if cells is not None:
        if isinstance(cells, (str, int, np.integer)):
            cells = [cells]
        cells = list(cells)
        if not cells:
            raise CourseInputError(
                "cells= is empty, so there is nothing to perturb. Fix: pass cell ids (or row "
                "numbers), or cells=None for all cells."
            )
        if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in cells):
            rows = np.asarray(cells, dtype=np.int64)
            bad = rows[(rows < 0) | (rows >= n)]
            if len(bad):
                raise CourseInputError(
                    f"Row number(s) {bad[:5].tolist()} in cells= are outside the dataset (0.."
                    f"{n - 1}). Fix: pass valid row numbers or cell ids."
                )
        else:
            if not has_id:
                raise CourseInputError(
                    "cells= holds names but the dataset has no 'cell_id' column. Fix: pass row "
                    "numbers, or tokenize with the cell_id attribute kept."
                )
            where = {str(c): i for i, c in enumerate(reader.column("cell_id"))}
            unknown = [c for c in cells if str(c) not in where]
            if unknown:
                raise CourseInputError(
                    f"Cell id(s) {unknown[:5]} are not in the dataset's 'cell_id' column "
                    f"({len(unknown)} unknown). Fix: use ids from dataset['cell_id']."
                )
            rows = np.asarray([where[str(c)] for c in cells], dtype=np.int64)
        rows = np.asarray(list(dict.fromkeys(rows.tolist())), dtype=np.int64)
    if states is not None:
        key, names = states
        if key not in reader.columns:
            raise CourseInputError(
                f"cell_states['state_key'] is {key!r}, but the dataset has no such column "
                f"(columns: {reader.columns}). Fix: use the column that holds the cell states, or "
                "keep it when tokenizing (cell attributes)."
            )
        values = np.asarray([str(v) for v in reader.column(key)], dtype=object)
        start = str(names[0])
        if start not in set(values.tolist()):
            present = list(dict.fromkeys(values.tolist()))[:20]
            raise CourseInputError(
                f"The start state {start!r} does not occur in column {key!r} (values: {present}). "
                "Only start-state cells are perturbed. Fix: check the spelling (case-sensitive)."
            )
        rows = rows[values[rows] == start]
        if len(rows) == 0:
            raise CourseInputError(
                f"None of the chosen cells is in the start state {start!r}. Fix: choose cells of "
                "that state (or cells=None)."
            )
    if max_cells is not None:
        if int(max_cells) < 1:
            raise CourseInputError(f"max_cells must be at least 1, got {max_cells}.")
        if len(rows) > int(max_cells):
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(rows, int(max_cells), replace=False))
    xs = [np.asarray(x, dtype=np.int64).reshape(-1) for x in reader.ids(rows)]
    for r, x in zip(rows, xs):
        if x.size and (int(x.max()) >= info.vocab_size or int(x.min()) < 0):
            raise CourseInputError(
                f"Cell in row {int(r)} holds token id {int(x.max())} outside the model's "
                f"vocabulary (0..{info.vocab_size - 1}). The cells were tokenized with another "
                "vocabulary. Fix: tokenize again with model.gene_vocab."
            )
        if x.size > info.max_len:
            raise CourseInputError(
                f"Cell in row {int(r)} has {x.size} tokens but the model accepts at most "
                f"{info.max_len}. Fix: tokenize with the model's input size."
            )
    ids = reader.column("cell_id") if has_id else list(range(n))
    return _Selection(rows=rows, cell_ids=[ids[int(r)] for r in rows], xs=xs)


def _state_matrix(
    model, dataset, reader, info: ModelFacts, states, state_embs, batch_size, progress, cls=False
) -> np.ndarray:
    """(n_states, hidden) float64 state embeddings in the order start, goal, alt..."""
    key, names = states
    names = [str(s) for s in names]
    if state_embs is None:
        values = {str(v) for v in reader.column(key)}
        absent = [s for s in names if s not in values]
        if absent:
            raise CourseInputError(
                f"State(s) {absent} do not occur in column {key!r}, so their embeddings cannot be "
                f"computed from this dataset (values present: {sorted(values)[:20]}). Fix: check "
                "the names, or pass state_embs= computed on a dataset that has them "
                "(course_helpers.embed.state_embeddings)."
            )
        from ..embed import state_embeddings

        state_embs = state_embeddings(
            model,
            dataset,
            key,
            states=names,
            emb_layer=info.emb_layer,
            batch_size=batch_size,
            progress=progress,
            cls=bool(cls),
        )
    embs = _state_embs_dict(state_embs)
    absent = [s for s in names if s not in embs]
    if absent:
        raise CourseInputError(
            f"state_embs has no embedding for state(s) {absent} (it has {sorted(embs)[:20]}). "
            "Fix: include every start, goal and alternative state."
        )
    mat = np.stack([embs[s] for s in names]).astype(np.float64)
    if mat.shape[1] != info.hidden:
        raise CourseInputError(
            f"The state embeddings have {mat.shape[1]} dimensions but the model's hidden size is "
            f"{info.hidden}. Fix: compute them with this model and the same emb_layer."
        )
    return mat


def _state_embs_dict(state_embs) -> dict[str, np.ndarray]:
    if isinstance(state_embs, pd.DataFrame):
        if not {"state", "vector"} <= set(state_embs.columns):
            raise CourseInputError(
                "A state_embs DataFrame needs columns 'state' and 'vector' (one vector per "
                "state). Fix: pass a dict {state: vector} instead."
            )
        return {str(s): _to_np(v) for s, v in zip(state_embs["state"], state_embs["vector"])}
    if isinstance(state_embs, Mapping):
        return {str(k): _to_np(v) for k, v in state_embs.items()}
    raise CourseInputError(
        f"state_embs must be a dict {{state: vector}} or None, not {type(state_embs).__name__}."
    )


def _to_np(v) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64).reshape(-1)


def _check_cls_cells(sel: _Selection, info: ModelFacts) -> None:
    bad = [int(r) for r, x in zip(sel.rows, sel.xs)
           if not len(x) or x[0] != info.cls_id or x[-1] != info.eos_id]
    if bad:
        raise CourseInputError(
            f"emb_mode 'cls' measures the <cls> embedding, but {len(bad)} chosen cell(s) do not "
            f"start with <cls> and end with <eos> (e.g. row {bad[0]}). Fix: tokenize with the V2 "
            "rules (tokenize(..., model_version='V2')), or pass emb_mode='cell'."
        )
