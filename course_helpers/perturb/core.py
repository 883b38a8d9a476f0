"""In-silico perturbation: delete or overexpress genes and measure how the embeddings move.

Geneformer's in-silico perturbation changes a cell's rank-value encoding and asks the model how
much that changes the cell. This module reproduces the reference ``InSilicoPerturber`` numbers
(see ``CONTRIBUTING.md`` and the perturbation fixture) much faster, and adds statistics.

* :func:`in_silico_perturb` - perturb every gene (or a list of genes, or an anchor gene combined
  with each other gene) in every chosen cell; one row per (cell, perturbed gene).
* :func:`perturb_pairs` - single and combined perturbations of gene pairs, with a synergy score.
* :func:`random_gene_null` - the same perturbation applied to randomly chosen genes: a null
  distribution for :func:`perturbation_stats`.
* :func:`net_shift` - shift toward the goal minus shift toward the start state.
* :func:`adjust_for_rank` - subtract the effect expected from the deleted gene's rank alone
  (rank-matched null), before :func:`perturbation_stats`.
* :func:`perturbation_stats` - per-gene summary, Mann-Whitney rank-sum p-value against a null,
  Benjamini-Hochberg FDR (:func:`benjamini_hochberg`).

What is measured (exactly as the reference does it)
----------------------------------------------------
*Perturbations.* ``"delete"`` removes the gene's token, so every later gene moves up one place.
``"overexpress"`` moves the gene to the front (after ``<cls>`` in V2 models); a gene that is not
in the cell is inserted at the front and the cell is cut to the model's input size. A gene that
is already first is left alone (no row), because moving it changes nothing.

*Without cell states* the effect is ``cos_sim``: the mean, over the other genes of the cell, of
the cosine between each gene's embedding in the perturbed cell and in the original cell. The
perturbed gene is left out on both sides. It is 1 when nothing changed and smaller the more the
context changed. It is *not* the cosine of mean-pooled cell embeddings.

*With cell states* (``cell_states={"state_key", "start_state", "goal_state", "alt_states"}``)
only start-state cells are perturbed and the effect is ``shift = cos(perturbed cell, state) -
cos(original cell, state)`` for every state (start, goal and alternatives), where a cell
embedding is the mean of its gene embeddings (original: all n genes; perturbed: all genes of the
perturbed cell) and a state embedding is the mean of the state's cell embeddings
(:func:`course_helpers.embed.state_embeddings`). A positive shift means the perturbation moved
the cell towards that state.

*V2 models* (a vocabulary with ``<cls>``) default, as the reference does, to ``emb_mode="cls"``:
the effect is then measured on the ``<cls>`` token's embedding instead, ``cos_sim`` = cos(perturbed
``<cls>``, original ``<cls>``) and ``shift = cos(perturbed <cls>, state) - cos(original <cls>,
state)`` with ``<cls>`` state embeddings. V1 models have no ``<cls>`` and always use the gene
embeddings (``"cls"`` falls back to ``"cell"`` with a warning, as in the reference).

Embeddings are taken from ``emb_layer`` (``-1`` = second-to-last layer, the reference default).

Speed
-----
The reference runs the full masked-LM model (whose output head is ~73 % of the time and is never
used) once per perturbation batch of one cell, and builds every perturbed cell with Python list
operations. Here each cell's perturbed copies are built with vectorised index arithmetic, copies
of cells of similar length share forward passes, only the encoder runs, the unperturbed cell is
embedded once, and cosines are computed on the device in float64.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .._utils import progress as _progress
from ..model import hidden_states, length_sorted_batches, pad_batch, resolve_layer
from .rule import _perturb_rows
from .warnings import EmbModeFallbackWarning, FewNullGenesWarning, GenesNotExpressedWarning

__all__ = [  # re-exported by the package __init__
    "GeneEffects",
    "adjust_for_rank",
    "benjamini_hochberg",
    "in_silico_perturb",
    "net_shift",
    "perturb_pairs",
    "perturbation_stats",
    "random_gene_null",
]

_PERTURB_TYPES = ("delete", "overexpress")
#: Columns that identify one perturbation of one cell in a result table.
_ID_COLUMNS = (
    "cell_id",
    "rank_index",
    "perturbed_token",
    "perturbed_gene",
    "anchor_token",
    "anchor_gene",
)
_EMB_MODES = ("cls", "cell", "cls_and_gene", "cell_and_gene")
#: Perturbed copies collected before they are sorted by length and run (as multiples of
#: ``batch_size``): large enough that cells of similar length share full batches.
_CHUNK_BATCHES = 8


# --------------------------------------------------------------------------------------------
# model and vocabulary
# --------------------------------------------------------------------------------------------
@dataclass
class _ModelInfo:
    model: object
    vocab: object | None
    pad_id: int
    cls_id: int | None
    eos_id: int | None
    specials: np.ndarray  # token ids that are not genes
    vocab_size: int
    max_len: int
    hidden: int
    device: object
    layer: int  # reference emb_layer (0 = last, -1 = second-to-last)


def _model_info(model, emb_layer) -> _ModelInfo:
    import torch

    if not hasattr(model, "config") or not isinstance(model, torch.nn.Module):
        raise CourseInputError(
            f"model must be a transformers BertForMaskedLM (got {type(model).__name__}). Fix: "
            "model = course_helpers.model.load_model('teaching') (or another model name/folder)."
        )
    cfg = model.config
    resolve_layer(model, emb_layer)  # validates the layer, with a helpful message
    vocab = getattr(model, "gene_vocab", None)
    pad_id = getattr(cfg, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(vocab, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    cls_id = getattr(vocab, "cls_token_id", None) if vocab is not None else None
    eos_id = getattr(vocab, "eos_token_id", None) if vocab is not None else None
    mask_id = getattr(vocab, "mask_token_id", None) if vocab is not None else None
    specials = sorted({int(t) for t in (pad_id, cls_id, eos_id, mask_id) if t is not None})
    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        device = torch.device("cpu")
    return _ModelInfo(
        model=model,
        vocab=vocab,
        pad_id=pad_id,
        cls_id=None if cls_id is None else int(cls_id),
        eos_id=None if eos_id is None else int(eos_id),
        specials=np.asarray(specials, dtype=np.int64),
        vocab_size=int(cfg.vocab_size),
        max_len=int(getattr(cfg, "max_position_embeddings", 10**9)),
        hidden=int(cfg.hidden_size),
        device=device,
        layer=int(emb_layer),
    )


def _vocab_names(vocab) -> list[str]:
    """Gene symbols and Ensembl IDs that resolve to a token of ``vocab``."""
    tok = getattr(vocab, "token_to_id", None) or {}
    sym = getattr(vocab, "symbol_to_id", None) or {}
    names = [str(s) for s, e in sym.items() if e in tok]
    names += [str(k) for k in tok if not str(k).startswith("<")]
    return list(dict.fromkeys(names))


def _suggest(name: str, vocab) -> list[str]:
    names = _vocab_names(vocab)
    upper = {n.upper(): n for n in names}
    out = []
    if name.upper() in upper:
        out.append(upper[name.upper()])
    out += difflib.get_close_matches(name, names, n=4, cutoff=0.75)
    if len(out) < 3:
        out += [
            upper[m] for m in difflib.get_close_matches(name.upper(), list(upper), n=3, cutoff=0.75)
        ]
    return list(dict.fromkeys(out))[:4]


def _lookup_gene(name: str, vocab) -> int | None:
    tok = getattr(vocab, "token_to_id", {}).get(name)
    if tok is not None:
        return int(tok)
    try:
        found = vocab.tokens([name])
    except (CourseInputError, KeyError, ValueError, TypeError):
        return None
    return int(found[0]) if len(found) else None


def _resolve_genes(genes, info: _ModelInfo, argname: str = "genes") -> list[int]:
    """Token ids of gene symbols / Ensembl IDs / token ids, in the given order, unique."""
    if isinstance(genes, (str, int, np.integer)):
        genes = [genes]
    try:
        genes = list(genes)
    except TypeError as err:
        raise CourseInputError(
            f"{argname} must be 'all' or a list of gene symbols, Ensembl IDs or token ids, not "
            f"{type(genes).__name__}."
        ) from err
    if not genes:
        raise CourseInputError(
            f"{argname} is empty. Fix: pass at least one gene symbol, Ensembl ID or token id "
            "(or genes='all')."
        )
    tokens: list[int] = []
    unknown: list[str] = []
    bad_ids: list[int] = []
    for g in genes:
        if isinstance(g, (bool, np.bool_)):
            raise CourseInputError(f"{argname} holds a boolean ({g!r}); pass gene names or ids.")
        if isinstance(g, (int, np.integer)):
            t = int(g)
            if not 0 <= t < info.vocab_size or t in set(info.specials.tolist()):
                bad_ids.append(t)
            else:
                tokens.append(t)
        elif isinstance(g, str):
            if info.vocab is None:
                raise CourseInputError(
                    f"Gene {g!r} is a name, but this model has no gene vocabulary attached "
                    "(model.gene_vocab), so names cannot be translated into tokens. Fix: load the "
                    "model with course_helpers.model.load_model(...), or pass token ids."
                )
            t = _lookup_gene(g, info.vocab)
            if t is None:
                unknown.append(g)
            elif t in set(info.specials.tolist()):
                bad_ids.append(t)
            else:
                tokens.append(t)
        else:
            raise CourseInputError(
                f"{argname} holds {g!r} ({type(g).__name__}); pass gene symbols, Ensembl IDs or "
                "token ids."
            )
    if unknown:
        parts = []
        for g in unknown[:5]:
            sugg = _suggest(g, info.vocab)
            hint = f" (did you mean {', '.join(repr(s) for s in sugg)}?)" if sugg else ""
            parts.append(f"{g!r}{hint}")
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise CourseInputError(
            f"Unknown gene(s) in {argname}: {'; '.join(parts)}{more}. They are not in the "
            "model's vocabulary. Fix: check the spelling (human symbols are upper case), or use the "
            "Ensembl ID."
        )
    if bad_ids:
        raise CourseInputError(
            f"Token id(s) {bad_ids[:5]} in {argname} are not gene tokens of this model (valid: "
            f"0..{info.vocab_size - 1}, excluding special tokens {info.specials.tolist()}). "
            "Fix: pass gene symbols or Ensembl IDs, or token ids from model.gene_vocab."
        )
    return list(dict.fromkeys(tokens))


def _symbols(tokens, vocab) -> list[str] | None:
    if vocab is None or not hasattr(vocab, "symbols"):
        return None
    tokens = np.asarray(tokens, dtype=np.int64)
    uniq, inv = np.unique(tokens, return_inverse=True)
    names = np.asarray(list(vocab.symbols([int(t) for t in uniq])), dtype=object)
    return names[inv].tolist()


# --------------------------------------------------------------------------------------------
# cells and states
# --------------------------------------------------------------------------------------------
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


def _cells_reader(dataset):
    from ..embed import _Cells

    return _Cells(dataset)


def _select_cells(reader, info: _ModelInfo, cells, max_cells, seed, states) -> _Selection:
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
    model, dataset, reader, info: _ModelInfo, states, state_embs, batch_size, progress, cls=False
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
            layer=info.layer,
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


# --------------------------------------------------------------------------------------------
# building perturbed cells (vectorised)
# --------------------------------------------------------------------------------------------
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
    info: _ModelInfo,
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
    special = np.isin(x, info.specials)
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


def _gene_positions(x: np.ndarray, info: _ModelInfo) -> np.ndarray:
    return np.flatnonzero(~np.isin(x, info.specials))


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


# --------------------------------------------------------------------------------------------
# the engine: embed bases and perturbed copies, compare
# --------------------------------------------------------------------------------------------
class _Engine:
    """Runs blocks of perturbed cells through the encoder and fills in their results."""

    def __init__(
        self, info: _ModelInfo, batch_size: int, state_mat, want_genes: bool, context_only=False,
        cls_mode=False,
    ):
        import torch

        if int(batch_size) < 1:
            raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
        self.info = info
        self.batch_size = int(batch_size)
        self.dev = info.device
        # float64 for the cosines (MPS has no float64)
        self.cdtype = torch.float32 if info.device.type == "mps" else torch.float64
        self.specials_t = torch.as_tensor(info.specials, device=self.dev)
        self.state_n = None  # (n_states, hidden) state embeddings
        if state_mat is not None:
            self.state_n = torch.as_tensor(state_mat, dtype=self.cdtype, device=self.dev)
        self.want_genes = want_genes
        self.context_only = bool(context_only)
        self.cls_mode = bool(cls_mode)  # measure on the <cls> position (position 0)
        self.gene_parts: list[tuple] = []

    # -- helpers -----------------------------------------------------------------------------
    def _hidden(self, ids, mask):
        h = hidden_states(self.info.model, ids, mask, layer=self.info.layer)
        return h

    def _cos_states(self, cemb):
        """cosine of cell embeddings (B, d) with every state (S, d) -> (B, S)."""
        import torch

        dot = cemb @ self.state_n.T
        nn = (cemb * cemb).sum(-1, keepdim=True) * (self.state_n * self.state_n).sum(-1)[None]
        return dot / torch.sqrt(torch.clamp(nn, min=1e-16))

    def _gene_mask(self, ids, valid):
        import torch

        return valid & ~torch.isin(ids, self.specials_t)

    # -- bases ----------------------------------------------------------------------------
    def _embed_bases(self, seqs):
        """Embeddings (concatenated, cdtype), offsets and state cosines of the base cells."""
        import torch

        lens = np.asarray([len(s) for s in seqs], dtype=np.int64)
        parts = [None] * len(seqs)
        cell_cos = torch.zeros(
            (len(seqs), 0 if self.state_n is None else len(self.state_n)),
            dtype=self.cdtype,
            device=self.dev,
        )
        for idx in length_sorted_batches(lens, self.batch_size):
            ids, mask = pad_batch([seqs[i] for i in idx], self.info.pad_id, self.dev)
            h = self._hidden(ids, mask).to(self.cdtype)
            for r, i in enumerate(idx):
                parts[i] = h[r, : lens[i]]
            if self.state_n is not None:
                if self.cls_mode:
                    cemb = h[:, 0]
                else:
                    keep = self._gene_mask(ids, mask.bool())
                    w = keep.unsqueeze(-1).to(self.cdtype)
                    cemb = (h * w).sum(1) / keep.sum(1, keepdim=True).to(self.cdtype)
                cell_cos[torch.as_tensor(idx, device=self.dev)] = self._cos_states(cemb)
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        return torch.cat(parts, 0), offsets, cell_cos

    # -- one chunk ------------------------------------------------------------------------
    def run(self, blocks: list[_Block], xs: list[np.ndarray]):
        import torch

        if not blocks:
            return
        info = self.info
        # bases: each (cell, trunc) pair once
        base_key: dict[tuple[int, int], int] = {}
        seqs = []
        for b in blocks:
            key = (b.cell, b.trunc)
            if key not in base_key:
                x = xs[b.cell]
                if b.trunc:
                    has_eos = info.eos_id is not None and x[-1] == info.eos_id
                    x = (
                        np.concatenate([x[: len(x) - 1 - b.trunc], x[-1:]])
                        if has_eos
                        else x[: len(x) - b.trunc]
                    )
                base_key[key] = len(seqs)
                seqs.append(x)
        H, offsets, base_cos = self._embed_bases(seqs)

        # all perturbed copies of the chunk, padded to the longest
        lens = np.concatenate([np.full(b.m, b.tokens.shape[1]) for b in blocks])
        L = int(lens.max())
        R = len(lens)
        tok = np.full((R, L), info.pad_id, dtype=np.int64)
        src = np.full((R, L), -1, dtype=np.int64)
        cmp = np.zeros((R, L), dtype=bool)
        goff = np.empty(R, dtype=np.int64)
        bidx = np.empty(R, dtype=np.int64)
        r0 = 0
        for b in blocks:
            m, lb = b.tokens.shape
            tok[r0 : r0 + m, :lb] = b.tokens
            src[r0 : r0 + m, :lb] = b.src
            cmp[r0 : r0 + m, :lb] = b.cmp
            bi = base_key[(b.cell, b.trunc)]
            goff[r0 : r0 + m] = offsets[bi]
            bidx[r0 : r0 + m] = bi
            b.tokens = b.src = b.cmp = None  # free memory
            r0 += m
        cos_out = np.empty(R, dtype=np.float64)
        shift_out = None if self.state_n is None else np.empty((R, len(self.state_n)))
        rows_global = np.concatenate([b.first_row + np.arange(b.m) for b in blocks])

        order = np.argsort(-lens, kind="stable")
        for s in range(0, R, self.batch_size):
            idx = order[s : s + self.batch_size]
            lb = int(lens[idx].max())
            ids = torch.from_numpy(tok[idx, :lb]).to(self.dev)
            ragged = bool((lens[idx] != lb).any())
            if ragged:
                valid = torch.from_numpy(np.arange(lb)[None, :] < lens[idx][:, None]).to(self.dev)
                e = self._hidden(ids, valid.long())
            else:
                valid = torch.ones(ids.shape, dtype=torch.bool, device=self.dev)
                e = self._hidden(ids, None)
            e = e.to(self.cdtype)
            srcb = torch.from_numpy(src[idx, :lb]).to(self.dev)
            cmpb = torch.from_numpy(cmp[idx, :lb]).to(self.dev)
            gidx = torch.from_numpy(goff[idx]).to(self.dev)[:, None] + srcb.clamp(min=0)
            o = H[gidx]
            dot = (e * o).sum(-1)
            nn = (e * e).sum(-1) * (o * o).sum(-1)
            cos = dot / torch.sqrt(torch.clamp(nn, min=1e-16))
            cos = torch.where(cmpb, cos, torch.zeros((), dtype=cos.dtype, device=cos.device))
            ncmp = cmpb.sum(1)
            mean = cos.sum(1) / ncmp.clamp(min=1).to(cos.dtype)
            mean = torch.where(ncmp > 0, mean, torch.full_like(mean, float("nan")))
            if self.cls_mode:
                # <cls> stays at position 0 of every perturbed copy and of its base
                pc = e[:, 0]
                oc = H[torch.from_numpy(goff[idx]).to(self.dev)]
                den = torch.sqrt(torch.clamp((pc * pc).sum(-1) * (oc * oc).sum(-1), min=1e-16))
                cos_out[idx] = ((pc * oc).sum(-1) / den).cpu().numpy()
                if self.state_n is not None:
                    sh = self._cos_states(pc) - base_cos[torch.from_numpy(bidx[idx]).to(self.dev)]
                    shift_out[idx] = sh.cpu().numpy()
            else:
                cos_out[idx] = mean.cpu().numpy()
            if self.cls_mode or self.state_n is None:
                pass  # shifts done above, or no states
            elif self.context_only:
                # both cells over the same genes: those compared (not perturbed, not special)
                w = cmpb.unsqueeze(-1).to(self.cdtype)
                n_w = ncmp.clamp(min=1).unsqueeze(-1).to(self.cdtype)
                sh = self._cos_states((e * w).sum(1) / n_w) - self._cos_states((o * w).sum(1) / n_w)
                shift_out[idx] = sh.cpu().numpy()
            else:
                keep = self._gene_mask(ids, valid)
                w = keep.unsqueeze(-1).to(self.cdtype)
                cemb = (e * w).sum(1) / keep.sum(1, keepdim=True).to(self.cdtype)
                sh = self._cos_states(cemb) - base_cos[torch.from_numpy(bidx[idx]).to(self.dev)]
                shift_out[idx] = sh.cpu().numpy()
            if self.want_genes:
                rr, jj = torch.nonzero(cmpb, as_tuple=True)
                self.gene_parts.append(
                    (
                        rows_global[idx][rr.cpu().numpy()],
                        ids[rr, jj].cpu().numpy(),
                        srcb[rr, jj].cpu().numpy(),
                        cos[rr, jj].cpu().numpy(),
                    )
                )
        r0 = 0
        for b in blocks:
            b.cos = cos_out[r0 : r0 + b.m]
            if shift_out is not None:
                b.shift = shift_out[r0 : r0 + b.m]
            r0 += b.m


def _run(
    info: _ModelInfo,
    sel: _Selection,
    make_blocks,
    batch_size,
    state_mat,
    want_genes,
    progress,
    desc,
    context_only=False,
    cls_mode=False,
) -> tuple[list[_Block], _Engine]:
    """Build blocks cell by cell (longest cells first) and run them in chunks."""
    import torch

    engine = _Engine(info, batch_size, state_mat, want_genes, context_only, cls_mode)
    model = info.model
    was_training = model.training
    model.eval()
    done: list[_Block] = []
    pending: list[_Block] = []
    n_pending = 0
    next_row = 0
    order = np.argsort(-np.asarray([len(x) for x in sel.xs]), kind="stable")
    bar = _progress(total=len(order), enabled=progress, desc=desc, unit="cell")
    cells_in_chunk = 0
    try:
        with torch.inference_mode():
            for ci in order:
                for b in make_blocks(int(ci), sel.xs[ci]):
                    b.first_row = next_row
                    next_row += b.m
                    pending.append(b)
                    n_pending += b.m
                cells_in_chunk += 1
                if n_pending >= _CHUNK_BATCHES * engine.batch_size:
                    engine.run(pending, sel.xs)
                    done += pending
                    pending, n_pending = [], 0
                    bar.update(cells_in_chunk)
                    cells_in_chunk = 0
            engine.run(pending, sel.xs)
            done += pending
            bar.update(cells_in_chunk)
    finally:
        bar.close()
        if was_training:
            model.train()
    return done, engine


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check_common(perturb_type, emb_mode):
    if perturb_type not in _PERTURB_TYPES:
        raise CourseInputError(
            f"perturb_type={perturb_type!r} is not supported. Fix: use 'delete' or 'overexpress' "
            "(there is no 'mask' perturbation: Geneformer perturbs by changing the token order)."
        )
    if emb_mode is not None and emb_mode not in _EMB_MODES:
        raise CourseInputError(
            f"emb_mode={emb_mode!r} is not supported. Fix: use 'cell' (the mean of the gene "
            "embeddings), 'cls' (the <cls> embedding, V2 models), or 'cell_and_gene' / "
            "'cls_and_gene' (the same, plus the change of every other gene's embedding); or "
            "leave it out for the reference default ('cls' for V2, 'cell' for V1)."
        )


def _resolve_emb_mode(emb_mode, info: _ModelInfo) -> str:
    """The reference defaults: ``"cls"`` for models with ``<cls>`` (V2), else ``"cell"``."""
    if emb_mode is None:
        return "cls" if info.cls_id is not None else "cell"
    if emb_mode.startswith("cls") and info.cls_id is None:
        new = emb_mode.replace("cls", "cell")
        warnings.warn(
            EmbModeFallbackWarning(
                f"emb_mode={emb_mode!r} needs a <cls> token, which this model (V1 or the teaching "
                f"model) does not have; using emb_mode={new!r} (the mean of the gene embeddings), "
                "as the reference does.",
                emb_mode,
                new,
            ),
            stacklevel=3,
        )
        return new
    return emb_mode


def _check_cls_cells(sel: _Selection, info: _ModelInfo) -> None:
    bad = [int(r) for r, x in zip(sel.rows, sel.xs)
           if not len(x) or x[0] != info.cls_id or x[-1] != info.eos_id]
    if bad:
        raise CourseInputError(
            f"emb_mode 'cls' measures the <cls> embedding, but {len(bad)} chosen cell(s) do not "
            f"start with <cls> and end with <eos> (e.g. row {bad[0]}). Fix: tokenize with the V2 "
            "rules (tokenize(..., model_version='V2')), or pass emb_mode='cell'."
        )


def _assemble(blocks: list[_Block], sel: _Selection, states, vocab, extra_sort=()) -> pd.DataFrame:
    if not blocks:
        return pd.DataFrame()
    cols: dict[str, np.ndarray] = {}
    cell = np.concatenate([np.full(b.m, b.cell, dtype=np.int64) for b in blocks])
    for c in blocks[0].meta:
        cols[c] = np.concatenate([b.meta[c] for b in blocks])
    row = np.concatenate([b.first_row + np.arange(b.m) for b in blocks])
    order = np.lexsort(
        tuple(cols[c] for c in reversed(("rank_index", *extra_sort)) if c in cols) + (cell,)
    )
    cell, row = cell[order], row[order]
    cols = {c: v[order] for c, v in cols.items()}
    ids = np.asarray(sel.cell_ids, dtype=object)
    out = {"cell_id": ids[cell]}
    for c in ("rank_index", "perturbed_token", "anchor_token"):
        if c in cols:
            out[c] = cols[c].astype(np.int64)
    sym = _symbols(out["perturbed_token"], vocab)
    if sym is not None:
        out["perturbed_gene"] = sym
        if "anchor_token" in out:
            out["anchor_gene"] = _symbols(out["anchor_token"], vocab)
    if states is None:
        cos = np.concatenate([b.cos for b in blocks])[order]
        df = pd.DataFrame(out)
        df["cos_sim"] = cos
    else:
        shift = np.concatenate([b.shift for b in blocks])[order]
        names = [str(s) for s in states[1]]
        S = len(names)
        df = pd.DataFrame({c: np.repeat(_as_array(v), S) for c, v in out.items()})
        df["state"] = np.tile(np.asarray(names, dtype=object), len(cell))
        df["shift"] = shift.reshape(-1)
    df.attrs["_row"] = row  # internal: global perturbation id of each (cell, gene) row
    return df


def _as_array(v) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else np.asarray(v, dtype=object)


def _gene_long(engine: _Engine, cell_df: pd.DataFrame, states, vocab) -> pd.DataFrame:
    if engine.gene_parts:
        pr, at, ar, cs = (np.concatenate(p) for p in zip(*engine.gene_parts))
    else:
        pr = at = ar = np.zeros(0, dtype=np.int64)
        cs = np.zeros(0)
    row = cell_df.attrs["_row"]
    base = cell_df if states is None else cell_df.iloc[:: len(states[1])]
    inv = np.full(int(row.max()) + 1 if len(row) else 0, -1, dtype=np.int64)
    inv[row] = np.arange(len(row))
    k = inv[pr]
    order = np.lexsort((ar, k))
    k, at, ar, cs = k[order], at[order], ar[order], cs[order]
    keep_cols = [c for c in _ID_COLUMNS if c in base.columns]
    out = {c: base[c].to_numpy()[k] for c in keep_cols}
    out["affected_rank_index"] = ar.astype(np.int64)
    out["affected_token"] = at.astype(np.int64)
    sym = _symbols(at, vocab)
    if sym is not None:
        out["affected_gene"] = sym
    out["cos_sim"] = cs
    return pd.DataFrame(out)


class GeneEffects(pd.DataFrame):
    """Per-(cell, perturbed gene, affected gene) table of ``emb_mode="cell_and_gene"``.

    A plain DataFrame plus one attribute, ``cell_results``: the per-(cell, perturbed gene) table
    that ``emb_mode="cell"`` would return. It is kept as pandas ``_metadata`` (carried along by
    filtering and copying, never deep-copied) rather than in ``DataFrame.attrs``, where a
    DataFrame breaks ``pd.concat`` and is deep-copied by every operation.

    Examples
    --------
    >>> long = in_silico_perturb(model, ds, "delete", genes=["GATA4"],
    ...                          emb_mode="cell_and_gene")               # doctest: +SKIP
    >>> long.cell_results.head()                                          # doctest: +SKIP
    """

    _metadata: ClassVar[list[str]] = ["cell_results"]

    @property
    def _constructor(self):
        return GeneEffects


def in_silico_perturb(
    model,
    dataset,
    perturb_type: str = "delete",
    genes="all",
    cell_states: Mapping | None = None,
    emb_layer: int = -1,
    batch_size: int = 64,
    combos: int = 0,
    anchor_gene=None,
    cells=None,
    max_cells: int | None = None,
    emb_mode: str | None = None,
    state_embs=None,
    progress: bool = True,
    seed: int = 0,
    context_only: bool = False,
) -> pd.DataFrame:
    """Perturb genes in tokenized cells and measure the effect on the embeddings.

    Reproduces the reference Geneformer ``InSilicoPerturber`` value for value (``emb_mode=
    "cell"``, ``cell_emb_style="mean_pool"`` for V1; ``emb_mode="cls"`` for V2), without writing
    pickles.

    Parameters
    ----------
    model
        A ``BertForMaskedLM`` (from :func:`course_helpers.model.load_model`; any Geneformer-style
        BERT works). Gene names need ``model.gene_vocab``; the padding id comes from
        ``model.config.pad_token_id``; V2 models keep ``<cls>``/``<eos>`` in place.
    dataset
        Tokenized cells: a ``datasets.Dataset`` (or DataFrame) with ``input_ids`` and, ideally,
        ``cell_id`` and the ``state_key`` column.
    perturb_type
        ``"delete"`` (remove the gene) or ``"overexpress"`` (move it to the front; genes absent
        from a cell are inserted at the front, cutting the cell to the model's input size).
    genes
        ``"all"`` (every gene of every chosen cell, the reference default), or a list of gene
        symbols / Ensembl IDs / token ids, each perturbed on its own. With ``"delete"`` a gene is
        perturbed only in cells that express it; with ``"overexpress"`` in every chosen cell.
    cell_states
        ``{"state_key": column, "start_state": s0, "goal_state": s1, "alt_states": [...]}``:
        perturb only start-state cells and report the shift towards every state. ``None``: report
        ``cos_sim`` (the mean cosine over the other genes).
    emb_layer
        ``-1`` = second-to-last layer (reference default), ``0`` = last layer, ...
    batch_size
        Perturbed cells per forward pass (lower it if memory runs out).
    combos
        ``0``: one gene at a time. ``1``: the ``anchor_gene`` together with each other gene (for
        arbitrary pairs use :func:`perturb_pairs`).
    anchor_gene
        The gene perturbed together with each other gene when ``combos=1``; cells without it are
        skipped. ``perturbed_token`` then names the other gene.
    cells
        Cell ids (``cell_id`` column) or row numbers to perturb; ``None``: all cells.
    max_cells
        Perturb at most this many cells (chosen at random with ``seed``).
    emb_mode
        How the effect on the cell is measured, as in the reference. ``None`` (default):
        ``"cls"`` for V2 models, ``"cell"`` for V1 and the teaching model.
        ``"cell"``: from the gene embeddings (``cos_sim`` = mean cosine over the other genes;
        with states, cell = mean of its gene embeddings). ``"cls"`` (V2 only): from the
        ``<cls>`` embedding (``cos_sim`` = cos(perturbed ``<cls>``, original ``<cls>``); with
        states, ``<cls>`` cell and state embeddings). Both give one row per (cell, perturbed
        gene). ``"cell_and_gene"`` / ``"cls_and_gene"``: one row per (cell, perturbed gene,
        affected gene) with the cosine between the affected gene's embeddings before and after
        (the raw material for perturbation-derived gene networks); the result is a
        :class:`GeneEffects` table whose ``cell_results`` attribute holds the per-cell table of
        ``"cell"`` / ``"cls"``. Affected genes are matched by identity (the reference labels
        them one position off for ``"overexpress"``). ``"cls"`` on a model without ``<cls>``
        falls back to ``"cell"`` with a warning (as the reference does).
    state_embs
        ``{state: vector}`` (or a DataFrame with ``state`` and ``vector``). ``None``: computed
        from ``dataset`` with :func:`course_helpers.embed.state_embeddings` (all cells of each
        state, not only the perturbed ones), as the reference does.
    progress
        Show a progress bar.
    seed
        Seed for ``max_cells`` subsampling.
    context_only
        With ``cell_states`` only. ``False`` (the reference): the perturbed cell's embedding
        (all its genes) is compared with the original cell's (all its genes), so deleting a
        gene whose own token is typical of a state moves the cell away from that state even if
        nothing else changed. ``True``: both embeddings are means over the **same** genes -- the
        ones not perturbed -- so the shift measures only how the model's embeddings of the
        *other* genes moved (a step beyond the reference; chapter 7 uses it to tell drivers
        from markers).

    Returns
    -------
    pandas.DataFrame
        Without states: ``cell_id, rank_index, perturbed_token, [perturbed_gene], cos_sim``.
        With states: ``cell_id, rank_index, perturbed_token, [perturbed_gene], state, shift`` (one
        row per state). ``rank_index`` is the gene's 0-based position in ``input_ids`` (-1 for a
        gene inserted by overexpression). ``combos=1`` adds ``anchor_token`` (and
        ``anchor_gene``). Gene symbols appear when the model has a vocabulary. Rows are ordered
        by cell (dataset order), then rank.

    Raises
    ------
    CourseInputError
        Unknown genes (with suggestions), genes expressed in none of the chosen cells, unknown
        cells, missing state column or state names, bad arguments.

    Examples
    --------
    >>> from course_helpers.model import load_model
    >>> model = load_model("teaching")                                     # doctest: +SKIP
    >>> res = in_silico_perturb(model, dataset, "delete")                   # doctest: +SKIP
    >>> res.groupby("perturbed_gene").cos_sim.mean().nsmallest(5)           # doctest: +SKIP
    >>> shifts = in_silico_perturb(
    ...     model, dataset, "delete",
    ...     cell_states={"state_key": "state", "start_state": "diseased",
    ...                  "goal_state": "healthy", "alt_states": []})        # doctest: +SKIP
    >>> perturbation_stats(shifts).head()                                   # doctest: +SKIP
    """
    _check_common(perturb_type, emb_mode)
    info = _model_info(model, emb_layer)
    emb_mode = _resolve_emb_mode(emb_mode, info)
    cls_mode = emb_mode.startswith("cls")
    if context_only and cls_mode:
        raise CourseInputError(
            "context_only=True compares mean gene embeddings over the same genes, so it needs "
            "emb_mode='cell' (the <cls> embedding always sees the whole cell). Fix: pass "
            "emb_mode='cell' with context_only=True, or drop context_only."
        )
    if combos not in (0, 1):
        raise CourseInputError(
            f"combos={combos!r} is not supported. Fix: combos=0 (single genes) or combos=1 with "
            "anchor_gene= (the anchor plus each other gene); for chosen pairs use perturb_pairs()."
        )
    if combos == 1 and anchor_gene is None:
        raise CourseInputError(
            "combos=1 needs anchor_gene= (the gene perturbed together with each other gene). "
            "Fix: pass anchor_gene='GENE', or use perturb_pairs(model, dataset, [('A', 'B')])."
        )
    if combos == 0 and anchor_gene is not None:
        raise CourseInputError(
            "anchor_gene= is only used with combos=1. Fix: pass combos=1 as well."
        )
    anchor = (
        _resolve_genes([anchor_gene], info, "anchor_gene")[0] if anchor_gene is not None else None
    )
    all_genes = isinstance(genes, str) and genes == "all"
    tokens = None if all_genes else _resolve_genes(genes, info)
    if context_only and cell_states is None:
        raise CourseInputError(
            "context_only=True changes how the shift toward cell states is measured, so it needs "
            "cell_states. Fix: pass cell_states={...}, or drop context_only (without states the "
            "effect, cos_sim, already leaves the perturbed gene out)."
        )
    states = _parse_states(cell_states)
    reader = _cells_reader(dataset)
    sel = _select_cells(reader, info, cells, max_cells, seed, states)
    if cls_mode:
        _check_cls_cells(sel, info)

    # presence checks, before any model work
    present = np.unique(np.concatenate(sel.xs)) if sel.xs else np.zeros(0, dtype=np.int64)
    where = f"the {len(sel.xs)} chosen cell(s)"
    if anchor is not None and anchor not in set(present.tolist()):
        raise CourseInputError(
            f"The anchor gene {anchor_gene!r} is expressed in none of {where}. Fix: pick an "
            "anchor gene that these cells express, or other cells."
        )
    if tokens is not None and perturb_type == "delete":
        missing = [t for t in tokens if t not in set(present.tolist())]
        if len(missing) == len(tokens):
            names = _symbols(missing, info.vocab) or missing
            raise CourseInputError(
                f"None of the genes {names[:10]} is expressed in {where}, so there is nothing "
                "to delete. Fix: choose genes the cells express (e.g. from their input_ids), "
                "other cells, or perturb_type='overexpress' to add them."
            )
        if missing:
            names = _symbols(missing, info.vocab) or missing
            warnings.warn(
                GenesNotExpressedWarning(
                    f"{len(missing)} gene(s) are expressed in none of {where} and get no rows: "
                    f"{names[:10]}",
                    genes=names,
                ),
                stacklevel=2,
            )
    state_mat = None
    if states is not None:
        state_mat = _state_matrix(
            model, dataset, reader, info, states, state_embs, batch_size, progress, cls_mode
        )

    def make_blocks(ci, x):
        return _blocks_for_cell(x, ci, info, perturb_type, tokens, anchor)

    blocks, engine = _run(
        info,
        sel,
        make_blocks,
        batch_size,
        state_mat,
        emb_mode.endswith("_and_gene"),
        progress,
        f"Perturbing ({perturb_type})",
        context_only=context_only,
        cls_mode=cls_mode,
    )
    df = _assemble(blocks, sel, states, info.vocab)
    if df.empty:
        raise CourseInputError(
            f"No perturbation could be made in {where} (e.g. every requested gene is already "
            "first, or cells are too short). Fix: choose other genes or cells."
        )
    df.attrs["emb_mode"] = emb_mode
    if emb_mode.endswith("_and_gene"):
        long = _gene_long(engine, df, states, info.vocab)
        df.attrs.pop("_row", None)
        long = GeneEffects(long)
        long.cell_results = df
        return long
    df.attrs.pop("_row", None)
    return df


def perturb_pairs(
    model,
    dataset,
    pairs,
    perturb_type: str = "delete",
    cell_states: Mapping | None = None,
    emb_layer: int = -1,
    batch_size: int = 64,
    cells=None,
    max_cells: int | None = None,
    state_embs=None,
    progress: bool = True,
    seed: int = 0,
    *,
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
    >>> res = perturb_pairs(model, dataset, [("GATA4", "TBX5")],
    ...                     cell_states={"state_key": "state", "start_state": "diseased",
    ...                                  "goal_state": "healthy"})          # doctest: +SKIP
    >>> res.groupby(["gene_a", "gene_b", "state"]).synergy.mean()          # doctest: +SKIP
    """
    _check_common(perturb_type, emb_mode)
    info = _model_info(model, emb_layer)
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
        ta = _resolve_genes([a], info, "pairs")[0]
        tb = _resolve_genes([b], info, "pairs")[0]
        if ta == tb:
            raise CourseInputError(f"The pair ({a!r}, {b!r}) names the same gene twice.")
        tok_pairs.append((ta, tb))
    tok_pairs = list(dict.fromkeys(tok_pairs))
    states = _parse_states(cell_states)
    reader = _cells_reader(dataset)
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


def random_gene_null(
    model,
    dataset,
    n_genes: int = 50,
    seed: int = 0,
    perturb_type: str = "delete",
    cell_states: Mapping | None = None,
    exclude=None,
    **kwargs,
) -> pd.DataFrame:
    """Perturb randomly chosen expressed genes: a null distribution for :func:`perturbation_stats`.

    ``n_genes`` genes are drawn uniformly (with ``seed``) from the genes expressed in at least one
    of the chosen cells (start-state cells if ``cell_states`` is given), leaving out ``exclude``
    (e.g. the genes you test), and perturbed exactly like :func:`in_silico_perturb` would.

    Parameters
    ----------
    model, dataset, perturb_type, cell_states
        As in :func:`in_silico_perturb`.
    n_genes
        How many random genes (fewer if the cells express fewer).
    seed
        Seed of the gene draw (and of ``max_cells`` subsampling).
    exclude
        Genes never drawn (symbols, Ensembl IDs or token ids).
    **kwargs
        Passed on to :func:`in_silico_perturb` (``cells``, ``max_cells``, ``emb_layer``,
        ``batch_size``, ``state_embs``, ``progress``, ``emb_mode``).

    Returns
    -------
    pandas.DataFrame
        The :func:`in_silico_perturb` result for the random genes;
        ``attrs["null_genes"]`` lists their token ids.

    Examples
    --------
    >>> null = random_gene_null(model, dataset, n_genes=100, cell_states=states)  # doctest: +SKIP
    >>> stats = perturbation_stats(results, null=null)                             # doctest: +SKIP
    """
    if int(n_genes) < 1:
        raise CourseInputError(f"n_genes must be at least 1, got {n_genes}.")
    _check_common(perturb_type, kwargs.get("emb_mode"))
    info = _model_info(model, kwargs.get("emb_layer", -1))
    states = _parse_states(cell_states)
    reader = _cells_reader(dataset)
    sel = _select_cells(reader, info, kwargs.get("cells"), kwargs.get("max_cells"), seed, states)
    pool = np.unique(np.concatenate(sel.xs))
    pool = pool[~np.isin(pool, info.specials)]
    if exclude is not None:
        pool = pool[~np.isin(pool, _resolve_genes(exclude, info, "exclude"))]
    if len(pool) == 0:
        raise CourseInputError("The chosen cells express no gene to draw a null from.")
    if int(n_genes) > len(pool):
        warnings.warn(
            FewNullGenesWarning(
                f"Only {len(pool)} genes are available; using all of them.", len(pool), n_genes
            ),
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pool, min(int(n_genes), len(pool)), replace=False))
    res = in_silico_perturb(
        model,
        dataset,
        perturb_type=perturb_type,
        genes=[int(t) for t in chosen],
        cell_states=cell_states,
        seed=seed,
        **kwargs,
    )
    res.attrs["null_genes"] = [int(t) for t in chosen]
    return res


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
def net_shift(
    results: pd.DataFrame, goal_state: str, start_state: str, key_added: str | None = None
) -> pd.DataFrame:
    """Shift toward the goal state minus shift toward the start state, per (cell, gene).

    With cell states, a deletion that changes a cell a lot lowers its similarity to *every*
    state, so the shift toward the goal alone mostly says "how much did the cell change". The
    difference ``shift(goal) - shift(start)`` keeps only the movement *along* the start→goal
    axis. This is a small step beyond the reference, which ranks by the goal shift alone.

    Parameters
    ----------
    results
        Output of :func:`in_silico_perturb` or :func:`random_gene_null` with ``cell_states``.
    goal_state, start_state
        Two values of the ``state`` column.
    key_added
        Name of the new state label (default ``"<goal>-<start>"``).

    Returns
    -------
    pandas.DataFrame
        One row per (cell, perturbed gene): the identifying columns of ``results`` (``cell_id``,
        ``rank_index``, ``perturbed_token``, ``perturbed_gene``, ``anchor_*``), ``state`` (the new
        label) and ``shift``. It can go straight into :func:`perturbation_stats`.

    Examples
    --------
    >>> net = net_shift(scan, "cm_healthy", "cm_diseased")                  # doctest: +SKIP
    >>> perturbation_stats(net, null=net_shift(null, "cm_healthy", "cm_diseased"))  # doctest: +SKIP
    """
    if not isinstance(results, pd.DataFrame) or results.empty:
        raise CourseInputError("results must be a non-empty DataFrame from in_silico_perturb().")
    if "state" not in results.columns or "shift" not in results.columns:
        raise CourseInputError(
            "net_shift needs results made with cell_states (columns 'state' and 'shift'). Fix: "
            "in_silico_perturb(..., cell_states={...})."
        )
    have = [str(x) for x in pd.unique(results["state"])]
    for name, st in (("goal_state", goal_state), ("start_state", start_state)):
        if st not in have:
            raise CourseInputError(f"{name}={st!r} is not a state of the results; states: {have}.")
    ids = [c for c in _ID_COLUMNS if c in results.columns]
    goal = results[results["state"] == goal_state].reset_index(drop=True)
    start = results[results["state"] == start_state].reset_index(drop=True)
    if len(goal) != len(start) or not goal[ids].equals(start[ids]):
        goal = goal.set_index(ids)
        start = start.set_index(ids).reindex(goal.index)
        out = goal.reset_index()[ids]
        out["shift"] = (goal["shift"] - start["shift"]).to_numpy()
    else:
        out = goal[ids].copy()
        out["shift"] = goal["shift"].to_numpy() - start["shift"].to_numpy()
    out.insert(len(ids), "state", key_added or f"{goal_state}-{start_state}")
    return out


def _local_linear(x: np.ndarray, y: np.ndarray, grid: np.ndarray, window: int) -> np.ndarray:
    """Least-squares line through the points with ``|x - g| <= window``, evaluated at each g.

    A local *line* (not a mean) stays unbiased at the edges of the rank range, where the window
    is one-sided (rank 0 has neighbours on one side only). Vectorised with cumulative sums.
    """
    order = np.argsort(x, kind="stable")
    xs, ys = x[order].astype(np.float64), y[order].astype(np.float64)
    c = [
        np.concatenate([[0.0], np.cumsum(v)]) for v in (np.ones_like(xs), xs, ys, xs * xs, xs * ys)
    ]
    lo = np.searchsorted(xs, grid - window, side="left")
    hi = np.searchsorted(xs, grid + window, side="right")
    n, sx, sy, sxx, sxy = (v[hi] - v[lo] for v in c)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x, mean_y = sx / n, sy / n
        var = sxx / n - mean_x**2
        slope = np.where(
            var > 1e-12 * np.maximum(mean_x**2, 1.0), (sxy / n - mean_x * mean_y) / var, 0.0
        )
        out = mean_y + slope * (grid - mean_x)
    out[n == 0] = np.nan
    ok = ~np.isnan(out)
    if ok.any() and not ok.all():  # ranks beyond the null's range: nearest defined value
        idx = np.flatnonzero(ok)
        pos = np.arange(grid.size)
        j = np.clip(np.searchsorted(idx, pos), 1, max(idx.size - 1, 1))
        left, right = idx[j - 1], idx[np.minimum(j, idx.size - 1)]
        pick = np.where(np.abs(left - pos) <= np.abs(right - pos), left, right)
        out[~ok] = out[pick[~ok]]
    return out


def adjust_for_rank(
    results: pd.DataFrame,
    null: pd.DataFrame,
    value: str | None = None,
    window: int = 10,
    key_added: str | None = None,
):
    """Remove the part of a perturbation effect explained by the gene's rank in the cell.

    Deleting a gene moves every later gene up one place, so with absolute position embeddings
    (Geneformer V1, the teaching model) a deletion near the top of a cell changes the cell more
    than one near the bottom, *whatever the gene*. Comparing a gene with random genes then
    mostly compares ranks. This function subtracts from every row the **null value expected at its
    rank**: a least-squares line through the null genes deleted at similar ranks
    (``|rank - r| <= window``, per state), in the results and
    in the null alike, so that :func:`perturbation_stats` compares genes with rank-matched random
    genes.

    Parameters
    ----------
    results, null
        :func:`in_silico_perturb` / :func:`random_gene_null` outputs (or :func:`net_shift` of
        them) with a ``rank_index`` column.
    value
        Column to adjust: ``"shift"`` (default when present) or ``"cos_sim"``.
    window
        Half-width of the rank window (in positions).
    key_added
        Name of the adjusted column (default ``value + "_adj"``).

    Returns
    -------
    (results_adj, null_adj) : tuple of pandas.DataFrame
        Copies with the new column (NaN for genes inserted by overexpression, which had no
        rank); pass ``value=key_added`` to :func:`perturbation_stats`.

    Examples
    --------
    >>> res_adj, null_adj = adjust_for_rank(net, net_null)                    # doctest: +SKIP
    >>> perturbation_stats(res_adj, null=null_adj, value="shift_adj")          # doctest: +SKIP
    """
    for name, df in (("results", results), ("null", null)):
        if not isinstance(df, pd.DataFrame) or df.empty:
            raise CourseInputError(f"{name} must be a non-empty DataFrame of perturbation results.")
        if "rank_index" not in df.columns:
            raise CourseInputError(
                f"{name} has no 'rank_index' column, so ranks cannot be matched. Fix: pass the "
                "results of in_silico_perturb / random_gene_null (or net_shift of them)."
            )
    if value is None:
        value = "shift" if "shift" in results.columns else "cos_sim"
    if value not in results.columns or value not in null.columns:
        raise CourseInputError(f"Both tables need the column {value!r}.")
    if int(window) < 0:
        raise CourseInputError(f"window must be >= 0, got {window}.")
    key = key_added or f"{value}_adj"
    res, nul = results.copy(), null.copy()
    res[key] = np.nan
    nul[key] = np.nan
    has_state = "state" in res.columns
    for st in pd.unique(res["state"]) if has_state else [None]:
        rm = (res["state"] == st).to_numpy() if has_state else np.ones(len(res), bool)
        nm = (nul["state"] == st).to_numpy() if has_state else np.ones(len(nul), bool)
        nx = nul.loc[nm, "rank_index"].to_numpy(np.int64)
        ny = nul.loc[nm, value].to_numpy(np.float64)
        ok = ~np.isnan(ny)
        if not ok.any():
            raise CourseInputError(f"The null has no values for state {st!r}.")
        nx, ny = nx[ok], ny[ok]
        top = int(max(res.loc[rm, "rank_index"].max(), nul.loc[nm, "rank_index"].max()))
        expected = _local_linear(nx, ny, np.arange(top + 1), int(window))
        for df, m in ((res, rm), (nul, nm)):
            r = df.loc[m, "rank_index"].to_numpy(np.int64)
            adj = df.loc[m, value].to_numpy(np.float64) - expected[np.clip(r, 0, None)]
            adj[r < 0] = np.nan  # genes inserted by overexpression had no rank
            df.loc[m, key] = adj
    return res, nul


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR); NaNs stay NaN and are not counted.

    ``q_(i) = min_{j >= i} p_(j) * m / j`` over the sorted p-values, capped at 1 (the same as
    ``scipy.stats.false_discovery_control(p, method="bh")``).

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
    [0.02, 0.04, 0.04, 0.02]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    scaled = q[order] * m / np.arange(1, m + 1)
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.clip(scaled, 0, 1)
    out[ok] = adj
    return out


def _mwu_vs_rest(values: np.ndarray, groups: np.ndarray):
    """Two-sided Mann-Whitney U of every group against all other values, vectorised.

    Same numbers as ``scipy.stats.mannwhitneyu(x, rest, method="asymptotic")`` (normal
    approximation with tie and continuity correction), from one ranking of the pooled values.
    Returns (group labels, U statistic of the group, p-value).
    """
    from scipy import stats

    ranks = stats.rankdata(values)
    n = values.size
    _, tcounts = np.unique(values, return_counts=True)
    tie_term = float((tcounts.astype(np.float64) ** 3 - tcounts).sum())
    labels, inv = np.unique(groups, return_inverse=True)
    n1 = np.bincount(inv).astype(np.float64)
    r1 = np.bincount(inv, weights=ranks)
    n2 = n - n1
    u1 = r1 - n1 * (n1 + 1) / 2
    u = np.maximum(u1, n1 * n2 - u1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        z = (u - n1 * n2 / 2 - 0.5) / s
    p = np.clip(2 * stats.norm.sf(z), 0, 1)
    p[(n2 == 0) | ~np.isfinite(z)] = np.nan
    return labels, u1, p


def perturbation_stats(
    results: pd.DataFrame, null="all", value: str | None = None, by=None, vocab=None
) -> pd.DataFrame:
    """Per-gene summary of perturbation results with rank-sum p-values and BH FDR.

    For each perturbed gene (and state): the number of cells, the mean and standard deviation
    of its values over cells (``np.std``, as the reference ``InSilicoPerturberStats``), and a
    two-sided Mann-Whitney U (rank-sum) test of its values against a null distribution,
    Benjamini-Hochberg corrected over the genes of a state.

    Parameters
    ----------
    results
        Output of :func:`in_silico_perturb` (or its ``cell_and_gene`` table with
        ``by=["perturbed_token", "affected_token"]``).
    null
        ``"all"``: each gene against the values of all *other* genes in ``results`` (same
        state). Or a DataFrame of the same kind, e.g. from :func:`random_gene_null`: each gene
        against all its values (same state).
    value
        Column to test: ``"shift"`` (default when present) or ``"cos_sim"``.
    by
        Grouping columns; default ``["perturbed_token"]`` (plus ``anchor_token`` when present).
        ``state`` is always added when present.
    vocab
        Optional :class:`~course_helpers.vocab.GeneVocab` (e.g. ``model.gene_vocab``) to add gene
        symbols when ``results`` has none.

    Returns
    -------
    pandas.DataFrame
        ``[state], <by>, [gene], n_cells, mean, std, median, null_mean, u_stat, p_value, fdr``,
        sorted by state and p-value. The p-values use scipy's normal approximation
        (``method="asymptotic"``), with tie and continuity correction.

    Examples
    --------
    >>> stats = perturbation_stats(shifts, null=random_gene_null(model, dataset,
    ...                            cell_states=states))                        # doctest: +SKIP
    >>> stats[(stats.state == "healthy") & (stats.fdr < 0.05)]                 # doctest: +SKIP
    """
    from scipy import stats

    if not isinstance(results, pd.DataFrame) or results.empty:
        raise CourseInputError("results must be a non-empty DataFrame from in_silico_perturb().")
    if value is None:
        value = "shift" if "shift" in results.columns else "cos_sim"
    if value not in results.columns:
        raise CourseInputError(
            f"results has no column {value!r} (columns: {list(results.columns)}). Fix: "
            "value='shift' for results with cell states, value='cos_sim' without."
        )
    if by is None:
        by = ["perturbed_token"] + (["anchor_token"] if "anchor_token" in results.columns else [])
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in results.columns]
    if missing:
        raise CourseInputError(f"results has no column(s) {missing} to group by.")
    has_state = "state" in results.columns
    if isinstance(null, pd.DataFrame):
        if value not in null.columns:
            raise CourseInputError(f"The null DataFrame has no column {value!r}.")
        if has_state and "state" not in null.columns:
            raise CourseInputError(
                "results have cell states but the null has none. Fix: make the null with the same "
                "cell_states (random_gene_null(..., cell_states=...))."
            )
    elif not (isinstance(null, str) and null == "all"):
        raise CourseInputError("null must be 'all' or a DataFrame of null results.")

    parts = []
    state_groups = results.groupby("state", sort=False) if has_state else [(None, results)]
    for state, sub in state_groups:
        vals = sub[value].to_numpy(dtype=np.float64)
        ok = ~np.isnan(vals)
        sub, vals = sub[ok], vals[ok]
        g = sub.groupby(by, sort=True)[value]
        summary = g.agg(n_cells="size", mean="mean").reset_index()
        summary["std"] = g.std(ddof=0).to_numpy()  # np.std, as the reference statistics
        summary["median"] = g.median().to_numpy()
        if isinstance(null, pd.DataFrame):
            nd = null if state is None else null[null["state"] == state]
            pool = nd[value].to_numpy(dtype=np.float64)
            pool = pool[~np.isnan(pool)]
            if pool.size == 0:
                raise CourseInputError(f"The null has no values for state {state!r}.")
            u = np.full(len(summary), np.nan)
            p = np.full(len(summary), np.nan)
            for i, (_, x) in enumerate(g):
                r = stats.mannwhitneyu(
                    x.to_numpy(), pool, alternative="two-sided", method="asymptotic"
                )
                u[i], p[i] = r.statistic, r.pvalue
            summary["null_mean"] = float(pool.mean())
        else:
            codes = sub.groupby(by, sort=True).ngroup().to_numpy()
            _, u, p = _mwu_vs_rest(vals, codes)
            total, count = vals.sum(), len(vals)
            n1 = summary["n_cells"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                summary["null_mean"] = (total - summary["mean"].to_numpy() * n1) / (count - n1)
        summary["u_stat"] = u
        summary["p_value"] = p
        summary["fdr"] = benjamini_hochberg(p)
        if state is not None:
            summary.insert(0, "state", state)
        parts.append(summary)
    out = pd.concat(parts, ignore_index=True)
    if "perturbed_token" in out.columns and "perturbed_gene" not in out.columns:
        sym = None
        if "perturbed_gene" in results.columns:
            m = dict(zip(results["perturbed_token"], results["perturbed_gene"]))
            sym = [m.get(t) for t in out["perturbed_token"]]
        elif vocab is not None:
            sym = _symbols(out["perturbed_token"].to_numpy(), vocab)
        if sym is not None:
            out.insert(out.columns.get_loc("perturbed_token") + 1, "perturbed_gene", sym)
    sort = (["state"] if has_state else []) + ["p_value"]
    return out.sort_values(sort, kind="stable", na_position="last").reset_index(drop=True)
