"""Perturbed copies of a cell, built with index arithmetic (blocks the engine embeds).

The rule itself is :func:`.rule._perturb_rows`; here each cell's copies are grouped into blocks
of one length and marked with the positions to compare with the unperturbed cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model import ModelFacts
from .rule import _perturb_rows


@dataclass
class _Block:
    """Perturbed copies of one cell that share a length and an unperturbed base sequence."""

    cell: int  # index into the selection
    trunc: int  # genes cut from the end of the base (overexpressing absent genes in full cells)
    tokens: np.ndarray | None  # (m, L) int64
    src: np.ndarray | None  # (m, L) int64: position in the base of each token, -1 = none
    cmp: np.ndarray | None  # (m, L) bool: positions compared with the base
    meta: dict = field(default_factory=dict)  # column -> (m,) array
    cos: np.ndarray | None = None  # (m,) results
    shift: np.ndarray | None = None  # (m, n_states)
    first_row: int = 0  # global id of the first perturbation

    @property
    def m(self) -> int:
        return len(next(iter(self.meta.values())))


def _build_block(
    x: np.ndarray,
    info: ModelFacts,
    perturb_type: str,
    P: np.ndarray,
    T: np.ndarray,
    cell: int,
    meta: dict,
) -> _Block | None:
    """Perturbed copies of cell ``x`` (the rule: :func:`.rule._perturb_rows`), ready to embed.

    Row r deletes the positions ``P[r]`` (delete), or moves them to the front in their original
    order and inserts the tokens ``T[r]`` after them (overexpress). ``P`` is (m, k) sorted per
    row; ``T`` is (m, ka). Adds which positions are compared with the unperturbed cell.
    """
    n = len(x)
    k = P.shape[1]
    ka = T.shape[1]
    rows = _perturb_rows(
        x, P, T, perturb_type, cls_id=info.cls_id, eos_id=info.eos_id, max_len=info.max_len
    )
    tokens, src, trunc, front, has_eos = (
        rows.tokens, rows.src, rows.trunc, rows.front, rows.has_eos
    )
    group = 0 if perturb_type == "delete" else k + ka
    if perturb_type == "overexpress" and ka == 0:
        unchanged = (src == np.arange(src.shape[1])).all(axis=1)
        if unchanged.any():  # e.g. the first gene moved to the front: nothing changes
            keep = ~unchanged
            src, tokens = src[keep], tokens[keep]
            meta = {c: np.asarray(v)[keep] for c, v in meta.items()}
    if len(src) == 0 or src.shape[1] == 0:
        return None
    special = np.isin(x, info.special_ids)
    cmp = (src >= 0) & ~special[np.clip(src, 0, None)]
    if group:
        cmp[:, front : front + group] = False
    if trunc:
        cmp &= src < n - trunc - (1 if has_eos else 0)
    return _Block(
        cell=cell,
        trunc=trunc,
        tokens=tokens,
        src=src,
        cmp=cmp,
        meta={c: np.asarray(v) for c, v in meta.items()},
    )


def _gene_positions(x: np.ndarray, info: ModelFacts) -> np.ndarray:
    return np.flatnonzero(~np.isin(x, info.special_ids))


def _first_position(x: np.ndarray) -> dict[int, int]:
    """token -> its first position in the cell."""
    where: dict[int, int] = {}
    for i, t in enumerate(x.tolist()):
        where.setdefault(t, i)
    return where


def _blocks_for_cell(x, ci, info, perturb_type, tokens, anchor) -> list[_Block]:
    """All single (or anchor + gene) perturbations of one cell."""
    gpos = _gene_positions(x, info)
    empty = np.zeros((0, 0), dtype=np.int64)
    blocks = []
    if anchor is not None:
        hit = np.flatnonzero(x == anchor)
        if len(hit) == 0:
            return []
        pa = int(hit[0])
        if tokens is None:
            others = gpos[gpos != pa]
            absent = []
        else:
            where = _first_position(x)
            others = np.asarray(
                [where[t] for t in tokens if t in where and t != anchor], dtype=np.int64
            )
            absent = [t for t in tokens if t not in where and t != anchor]
            if perturb_type == "delete":
                absent = []
        if len(others):
            P = np.sort(np.stack([np.full(len(others), pa), others], axis=1), axis=1)
            meta = {
                "rank_index": others,
                "perturbed_token": x[others],
                "anchor_token": np.full(len(others), anchor),
            }
            b = _build_block(x, info, perturb_type, P, empty.reshape(len(others), 0), ci, meta)
            if b is not None:
                blocks.append(b)
        if absent:
            A = np.asarray(absent, dtype=np.int64)
            P = np.full((len(A), 1), pa, dtype=np.int64)
            meta = {
                "rank_index": np.full(len(A), -1),
                "perturbed_token": A,
                "anchor_token": np.full(len(A), anchor),
            }
            b = _build_block(x, info, perturb_type, P, A[:, None], ci, meta)
            if b is not None:
                blocks.append(b)
        return blocks
    if tokens is None:
        pos = gpos
        absent = []
    else:
        where = _first_position(x)
        pos = np.asarray([where[t] for t in tokens if t in where], dtype=np.int64)
        absent = [t for t in tokens if t not in where] if perturb_type == "overexpress" else []
    if len(pos) and not (perturb_type == "delete" and len(gpos) < 2):
        meta = {"rank_index": pos, "perturbed_token": x[pos]}
        b = _build_block(x, info, perturb_type, pos[:, None], empty.reshape(len(pos), 0), ci, meta)
        if b is not None:
            blocks.append(b)
    if absent:
        A = np.asarray(absent, dtype=np.int64)
        meta = {"rank_index": np.full(len(A), -1), "perturbed_token": A}
        b = _build_block(
            x, info, perturb_type, np.zeros((len(A), 0), dtype=np.int64), A[:, None], ci, meta
        )
        if b is not None:
            blocks.append(b)
    return blocks
