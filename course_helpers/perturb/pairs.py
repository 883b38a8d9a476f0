"""perturb_pairs: gene pairs perturbed alone and together, with a synergy score."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from ..model import model_facts
from ..tokenize import TokenizedCells
from .copies import _build_block, _first_position
from .effects import _as_array
from .engine import _run
from .inputs import _check_common, _resolve_emb_mode, _symbols
from .selection import _check_cls_cells, _parse_states, _select_cells, _state_matrix


def perturb_pairs(
    model,
    dataset,
    pairs,
    perturb_type: str = "delete",
    *,
    cell_states: Mapping | None = None,
    emb_layer: int = -1,
    batch_size: int = 64,
    cells=None,
    max_cells: int | None = None,
    state_embs=None,
    progress: bool = True,
    seed: int = 0,
    emb_mode: str | None = None,
) -> pd.DataFrame:
    """Perturb gene pairs alone and together, and score their synergy.

    For each pair ``(a, b)`` and each chosen cell, three perturbations are measured: ``a`` alone,
    ``b`` alone, and ``a`` and ``b`` together (same rules as :func:`in_silico_perturb`; jointly
    overexpressed genes go to the front in their original order, inserted genes after them).

    **Synergy.** With cell states it is ``shift_ab - (shift_a + shift_b)`` per state: positive
    means the pair moves the cell towards that state more than the two single perturbations
    added together. Without states the effect of a perturbation is ``1 - cos_sim`` (how much the
    other genes' embeddings changed) and ``synergy = (1 - cos_sim_ab) - [(1 - cos_sim_a) +
    (1 - cos_sim_b)]``: positive means the pair changes the cell more than the sum of its parts.
    Both are per cell; average them over cells (``groupby``) for a pair-level score.

    Parameters
    ----------
    model, dataset, perturb_type, cell_states, emb_layer, batch_size, cells, max_cells,
    state_embs, progress, seed
        As in :func:`in_silico_perturb`.
    emb_mode
        ``"cell"`` or ``"cls"`` as in :func:`in_silico_perturb` (default: ``"cls"`` for V2
        models, ``"cell"`` for V1).
    pairs
        Pairs of genes (symbols, Ensembl IDs or token ids), e.g. ``[("GATA4", "TBX5")]``. With
        ``"delete"`` a pair is measured only in cells that express both genes.

    Returns
    -------
    pandas.DataFrame
        One row per (cell, pair[, state]): ``cell_id, token_a, token_b, [gene_a, gene_b]`` and
        either ``cos_sim_a, cos_sim_b, cos_sim_ab, synergy`` or ``state, shift_a, shift_b,
        shift_ab, synergy``.

    Examples
    --------
    >>> from course_helpers import data, tokenize
    >>> from course_helpers.model import load_model
    >>> mlm = load_model("teaching")
    >>> tissue = data.load_tissue("chapter")
    >>> heart = tissue[tissue.obs["cell_type"] == "cardiomyocyte"][:6]
    >>> ds = tokenize.tokenize(heart, mlm.gene_vocab, progress=False)
    >>> res = perturb_pairs(mlm, ds, [("GATA4", "TBX5")], progress=False)
    >>> res.columns.tolist()[3:]
    ['gene_a', 'gene_b', 'cos_sim_a', 'cos_sim_b', 'cos_sim_ab', 'synergy']
    >>> r = res.iloc[0]
    >>> bool(abs(r.synergy - ((1 - r.cos_sim_ab) - (2 - r.cos_sim_a - r.cos_sim_b))) < 1e-12)
    True
    """
    _check_common(perturb_type, emb_mode)
    info = model_facts(model, emb_layer=emb_layer)
    emb_mode = _resolve_emb_mode(emb_mode, info)
    if emb_mode.endswith("_and_gene"):
        raise CourseInputError(
            f"perturb_pairs reports one value per (cell, pair); emb_mode={emb_mode!r} is for "
            "in_silico_perturb. Fix: emb_mode='cell' or 'cls'."
        )
    cls_mode = emb_mode == "cls"
    if isinstance(pairs, tuple) and len(pairs) == 2 and not isinstance(pairs[0], (tuple, list)):
        pairs = [pairs]
    try:
        pairs = [tuple(p) for p in pairs]
    except TypeError as err:
        raise CourseInputError(
            "pairs must be a list of 2-tuples of genes, e.g. [('GATA4', 'TBX5')]."
        ) from err
    if not pairs or any(len(p) != 2 for p in pairs):
        raise CourseInputError(
            f"pairs must be a non-empty list of 2-tuples of genes, e.g. [('GATA4', 'TBX5')]; got "
            f"{pairs[:3]}."
        )
    tok_pairs = []
    for a, b in pairs:
        ta = info.resolve_genes([a], argname="pairs")[0]
        tb = info.resolve_genes([b], argname="pairs")[0]
        if ta == tb:
            raise CourseInputError(f"The pair ({a!r}, {b!r}) names the same gene twice.")
        tok_pairs.append((ta, tb))
    tok_pairs = list(dict.fromkeys(tok_pairs))
    states = _parse_states(cell_states)
    reader = TokenizedCells(dataset)
    sel = _select_cells(reader, info, cells, max_cells, seed, states)
    if cls_mode:
        _check_cls_cells(sel, info)
    if perturb_type == "delete":
        sets = [set(x.tolist()) for x in sel.xs]
        if not any(a in s and b in s for s in sets for a, b in tok_pairs):
            raise CourseInputError(
                f"No chosen cell expresses both genes of any pair (of {len(sel.xs)} cells), so "
                "no pair can be deleted. Fix: choose pairs of genes expressed together, other "
                "cells, or perturb_type='overexpress'."
            )
    state_mat = None
    if states is not None:
        state_mat = _state_matrix(
            model, dataset, reader, info, states, state_embs, batch_size, progress, cls_mode
        )

    genes_single = list(dict.fromkeys([t for p in tok_pairs for t in p]))
    single_id = {t: i for i, t in enumerate(genes_single)}

    def make_blocks(ci, x):
        where = _first_position(x)
        ok = [
            (a, b)
            for a, b in tok_pairs
            if perturb_type == "overexpress" or (a in where and b in where)
        ]
        if not ok:
            return []
        need = list(dict.fromkeys([t for p in ok for t in p]))
        groups: dict[tuple[int, int], list] = {}

        def add(present, absent, pid, kind):
            P = sorted(where[t] for t in present)
            groups.setdefault((len(P), len(absent)), []).append((P, list(absent), pid, kind))

        for t in need:
            if t in where:
                add([t], [], single_id[t], 0)
            else:
                add([], [t], single_id[t], 0)
        for pi, (a, b) in enumerate(tok_pairs):
            if (a, b) not in ok:
                continue
            pres = [t for t in (a, b) if t in where]
            absent = [t for t in (a, b) if t not in where]
            add(pres, absent, pi, 1)
        blocks = []
        for (k, ka), items in groups.items():
            P = np.asarray([it[0] for it in items], dtype=np.int64).reshape(len(items), k)
            T = np.asarray([it[1] for it in items], dtype=np.int64).reshape(len(items), ka)
            meta = {
                "pid": np.asarray([it[2] for it in items]),
                "kind": np.asarray([it[3] for it in items]),
            }
            b = _build_block(x, info, perturb_type, P, T, ci, meta)
            if b is not None:
                blocks.append(b)
        return blocks

    blocks, _ = _run(
        info,
        sel,
        make_blocks,
        batch_size,
        state_mat,
        False,
        progress,
        f"Perturbing pairs ({perturb_type})",
        cls_mode=cls_mode,
    )
    single: dict[tuple[int, int], np.ndarray] = {}
    combo: dict[tuple[int, int], np.ndarray] = {}
    for b in blocks:
        vals = b.cos[:, None] if b.shift is None else b.shift
        for pid, kind, v in zip(b.meta["pid"], b.meta["kind"], vals):
            (combo if kind else single)[(b.cell, int(pid))] = v
    rows = []
    for (ci, pi), vab in combo.items():
        a, b = tok_pairs[pi]
        va = single.get((ci, single_id[a]))
        vb = single.get((ci, single_id[b]))
        if va is None or vb is None:  # a single perturbation that changes nothing
            continue
        rows.append((ci, pi, va, vb, vab))
    if not rows:
        raise CourseInputError(
            "No pair could be perturbed in the chosen cells. Fix: choose other genes or cells."
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    ci = np.asarray([r[0] for r in rows])
    pi = np.asarray([r[1] for r in rows])
    va, vb, vab = (np.stack([r[i] for r in rows]) for i in (2, 3, 4))
    ta = np.asarray([tok_pairs[p][0] for p in pi], dtype=np.int64)
    tb = np.asarray([tok_pairs[p][1] for p in pi], dtype=np.int64)
    out = {"cell_id": np.asarray(sel.cell_ids, dtype=object)[ci], "token_a": ta, "token_b": tb}
    sa, sb = _symbols(ta, info.vocab), _symbols(tb, info.vocab)
    if sa is not None:
        out["gene_a"], out["gene_b"] = sa, sb
    if states is None:
        df = pd.DataFrame(out)
        df["cos_sim_a"], df["cos_sim_b"], df["cos_sim_ab"] = va[:, 0], vb[:, 0], vab[:, 0]
        df["synergy"] = (1 - df["cos_sim_ab"]) - ((1 - df["cos_sim_a"]) + (1 - df["cos_sim_b"]))
        return df
    names = [str(s) for s in states[1]]
    S = len(names)
    df = pd.DataFrame({c: np.repeat(_as_array(v), S) for c, v in out.items()})
    df["state"] = np.tile(np.asarray(names, dtype=object), len(rows))
    df["shift_a"], df["shift_b"], df["shift_ab"] = va.reshape(-1), vb.reshape(-1), vab.reshape(-1)
    df["synergy"] = df["shift_ab"] - (df["shift_a"] + df["shift_b"])
    return df
