"""Cell and gene embeddings from a Geneformer-family model.

* :func:`embed_cells` - one vector per cell (the mean of its gene embeddings for V1 and the
  teaching model; the ``<cls>`` position for V2 models, the reference default), returned in
  dataset order and optionally stored in ``adata.obsm["X_geneformer"]``.
* :func:`embed_genes` - one vector per gene: its contextual embedding averaged over the cells in
  which it occurs.
* :func:`state_embeddings` - one vector per cell state: the mean of the cells' embeddings (the
  reference ``EmbExtractor.get_state_embs`` with ``summary_stat="exact_mean"``), used as goal
  states in in-silico perturbation.

All functions take ``layer`` with the reference ``emb_layer`` meaning: ``-1`` = second-to-last
layer (default), ``0`` = last layer. They run the encoder only, in float32, in length-sorted
padded batches, under ``torch.inference_mode()``.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from ._utils import CourseInputError
from ._utils import progress as _progress
from .model import hidden_states, length_sorted_batches, pad_batch, resolve_layer

__all__ = ["default_cls", "embed_cells", "embed_genes", "state_embeddings"]


# --------------------------------------------------------------------------------------------
# dataset access (HF datasets.Dataset, pandas DataFrame, dict of columns, or list of cells)
# --------------------------------------------------------------------------------------------
class _Cells:
    """Uniform, lazy access to the ``input_ids`` (and other columns) of tokenized cells."""

    def __init__(self, dataset):
        self._hf = None
        self._ids = None
        self._cols: Mapping | None = None
        try:
            import datasets as _ds

            is_hf = isinstance(dataset, _ds.Dataset)
        except ImportError:  # pragma: no cover
            is_hf = False
        if is_hf:
            if "input_ids" not in dataset.column_names:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {dataset.column_names}). "
                    "Fix: tokenize the cells first with course_helpers.tokenize."
                )
            self._hf = dataset.with_format(None)
            self.columns = list(dataset.column_names)
            self.n = len(dataset)
        elif isinstance(dataset, (pd.DataFrame, Mapping)):
            if "input_ids" not in dataset:
                raise CourseInputError(
                    "The cells have no 'input_ids' column. Fix: pass a tokenized dataset "
                    "(course_helpers.tokenize) or a list of token-id lists."
                )
            self._cols = dataset
            self._ids = list(dataset["input_ids"])
            self.columns = list(dataset.keys())
            self.n = len(self._ids)
        elif isinstance(dataset, (Sequence, np.ndarray)):
            self._ids = list(dataset)
            self.columns = ["input_ids"]
            self.n = len(self._ids)
        else:
            raise CourseInputError(
                f"Cannot read cells from a {type(dataset).__name__}. Fix: pass the tokenized "
                "datasets.Dataset (with an 'input_ids' column) or a list of token-id lists."
            )
        if self.n == 0:
            raise CourseInputError("The dataset holds no cells. Fix: check the tokenization step.")

    def column(self, name: str) -> list:
        if name not in self.columns:
            raise CourseInputError(
                f"The dataset has no column {name!r} (columns: {self.columns}). Fix: keep it when "
                "tokenizing, e.g. tokenize(..., cell_attrs=[...]) / custom_attr_name_dict."
            )
        if self._hf is not None:
            return list(self._hf[name])
        return list(self._cols[name])

    def lengths(self) -> np.ndarray:
        if "length" in self.columns:
            lengths = np.asarray(self.column("length"), dtype=np.int64)
        elif self._hf is not None:
            lengths = np.asarray([len(x) for x in self._hf["input_ids"]], dtype=np.int64)
        else:
            lengths = np.asarray([len(x) for x in self._ids], dtype=np.int64)
        return lengths

    def ids(self, indices: np.ndarray) -> list:
        if self._hf is not None:
            return self._hf[[int(i) for i in indices]]["input_ids"]
        return [self._ids[int(i)] for i in indices]


def _check_model(model):
    vocab = getattr(model, "gene_vocab", None)
    if vocab is None or not hasattr(model, "config"):
        raise CourseInputError(
            "The model has no gene vocabulary attached. Fix: load it with "
            "course_helpers.model.load_model(...), which sets model.gene_vocab."
        )
    return vocab


def _special_ids(vocab) -> list[int]:
    out = []
    for name in ("pad_token_id", "mask_token_id", "cls_token_id", "eos_token_id"):
        tid = getattr(vocab, name, None)
        if tid is not None:
            out.append(int(tid))
    return out


def _model_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        import torch

        return torch.device("cpu")


def _check_batch(input_ids, lengths, model) -> None:
    vocab_size = int(model.config.vocab_size)
    if input_ids.numel() and (int(input_ids.max()) >= vocab_size or int(input_ids.min()) < 0):
        bad = int(input_ids.max()) if int(input_ids.max()) >= vocab_size else int(input_ids.min())
        raise CourseInputError(
            f"Token id {bad} is outside the model's vocabulary (0..{vocab_size - 1}). The cells "
            "were tokenized with another vocabulary - often V1 dictionaries with a V2 model or "
            "the reverse. Fix: tokenize again with model.gene_vocab."
        )
    max_pos = int(getattr(model.config, "max_position_embeddings", 10**9))
    if int(lengths.max()) > max_pos:
        raise CourseInputError(
            f"A cell has {int(lengths.max())} tokens but the model accepts at most {max_pos}. "
            f"Fix: tokenize with the model's input size (truncate to {max_pos} tokens)."
        )


def _iter_hidden(model, cells: _Cells, indices: np.ndarray, layer: int, batch_size: int,
                 show_progress: bool, desc: str) -> Iterator[tuple]:
    """Yield ``(batch_indices, input_ids, keep_mask, hidden_float32)`` per length-sorted batch.

    ``keep_mask`` marks real (non-padding) positions. Batches go longest first.
    """
    import torch

    vocab = _check_model(model)
    resolve_layer(model, layer)  # validate before any work
    device = _model_device(model)
    lengths_all = cells.lengths()
    lengths = lengths_all[indices]
    if len(lengths) and int(lengths.min()) < 1:
        empty = indices[lengths < 1][:5].tolist()
        raise CourseInputError(
            f"{int((lengths < 1).sum())} cell(s) have no tokens (e.g. dataset rows {empty}); an "
            "empty cell has no embedding. Fix: remove them, e.g. dataset.filter(lambda c: "
            "c['length'] > 0), or filter cells with no expressed vocabulary genes before "
            "tokenizing."
        )
    batches = length_sorted_batches(lengths, batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            bar = _progress(batches, enabled=show_progress, desc=desc, unit="batch")
            for local in bar:
                batch_idx = indices[local]
                seqs = cells.ids(batch_idx)
                input_ids, mask = pad_batch(seqs, vocab.pad_token_id, device)
                true_len = mask.sum(1)
                if not torch.equal(true_len.cpu(), torch.as_tensor(lengths_all[batch_idx])):
                    raise CourseInputError(
                        "The 'length' column does not match the number of input_ids of some "
                        "cells. Fix: recompute it, dataset.map(lambda c: {'length': "
                        "len(c['input_ids'])})."
                    )
                _check_batch(input_ids, lengths_all[batch_idx], model)
                h = hidden_states(model, input_ids, mask, layer=layer).float()
                yield batch_idx, input_ids, mask.bool(), h
    finally:
        if was_training:
            model.train()


def _pool_cells(h, input_ids, keep, vocab, cls: bool):
    """Cell vectors of a batch: ``<cls>`` position, or mean over real non-special positions."""
    import torch

    if cls:
        cls_id = getattr(vocab, "cls_token_id", None)
        if not torch.all(input_ids[:, 0] == cls_id):
            raise CourseInputError(
                "The <cls> embedding was asked for (cls=True, the default for V2 models) but "
                "some cells do not start with <cls>. Fix: tokenize with the V2 rules "
                "(tokenize(..., model_version='V2') adds <cls>/<eos>), or use cls=False for the "
                "mean over genes."
            )
        return h[:, 0, :]
    keep = keep.clone()
    for name in ("cls_token_id", "eos_token_id"):
        tid = getattr(vocab, name, None)
        if tid is not None:
            keep &= input_ids != int(tid)
    counts = keep.sum(1, keepdim=True)
    if bool((counts == 0).any()):
        raise CourseInputError(
            "A cell holds only special tokens (<cls>/<eos>), so it has no gene to average. "
            "Fix: remove cells without genes before embedding."
        )
    w = keep.unsqueeze(-1).to(h.dtype)
    return (h * w).sum(1) / counts.to(h.dtype)


def default_cls(model) -> bool:
    """Whether cell embeddings of ``model`` default to its ``<cls>`` token (reference defaults).

    ``True`` for V2 models (their vocabulary has ``<cls>``; the reference ``EmbExtractor`` and
    ``InSilicoPerturber`` default to ``emb_mode="cls"``), ``False`` for V1 and the teaching
    model (no ``<cls>``: the mean of the gene embeddings).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> default_cls(SimpleNamespace(gene_vocab=SimpleNamespace(cls_token_id=2)))
    True
    >>> default_cls(SimpleNamespace(gene_vocab=SimpleNamespace(cls_token_id=None)))
    False
    """
    vocab = getattr(model, "gene_vocab", None)
    return getattr(vocab, "cls_token_id", None) is not None


def _cell_embeddings(model, cells: _Cells, indices: np.ndarray, layer: int, batch_size: int,
                     cls: bool | None, show_progress: bool, desc: str) -> np.ndarray:
    vocab = _check_model(model)
    if cls is None:
        cls = default_cls(model)
    if cls and getattr(vocab, "cls_token_id", None) is None:
        raise CourseInputError(
            f"cls=True needs a model with a <cls> token (Geneformer V2); this "
            f"{getattr(model, 'model_version', 'V1')} model has none. Fix: use cls=False (the "
            "mean over genes, the V1 cell embedding), or leave cls out."
        )
    hidden = int(model.config.hidden_size)
    out = np.zeros((len(indices), hidden), dtype=np.float32)
    position = {int(i): k for k, i in enumerate(indices)}
    for batch_idx, input_ids, keep, h in _iter_hidden(
            model, cells, indices, layer, batch_size, show_progress, desc):
        vecs = _pool_cells(h, input_ids, keep, vocab, cls).cpu().numpy()
        out[[position[int(i)] for i in batch_idx]] = vecs
    return out


def _check_adata(adata, cells: _Cells, key_added: str) -> None:
    if adata.n_obs != cells.n:
        raise CourseInputError(
            f"adata has {adata.n_obs} cells but the dataset has {cells.n}; embeddings can only be "
            "stored when both hold the same cells in the same order (the tokenizer may have "
            "dropped cells, e.g. filter_pass or zero counts). Fix: subset adata to the tokenized "
            "cells (e.g. adata = adata[dataset['cell_id']]) or call without adata= and use the "
            "returned array."
        )
    if "cell_id" not in cells.columns:
        return
    ids = [str(x) for x in cells.column("cell_id")]
    if "cell_id" in adata.obs.columns:
        ref = [str(x) for x in adata.obs["cell_id"]]
    else:
        ref = [str(x) for x in adata.obs_names]
    if ids != ref and set(ids) == set(ref):
        raise CourseInputError(
            f"adata and the dataset hold the same cells in a different order, so "
            f"adata.obsm[{key_added!r}] would be misaligned. Fix: reorder adata to the dataset, "
            "adata = adata[list(dataset['cell_id'])].copy(), before embedding."
        )


def embed_cells(
    model,
    dataset,
    layer: int = -1,
    batch_size: int = 32,
    adata=None,
    key_added: str = "X_geneformer",
    progress: bool = True,
    cls: bool | None = None,
) -> np.ndarray:
    """One embedding per cell, in dataset order.

    V1 (and the teaching model): the mean of the cell's gene embeddings over its non-padding
    positions. V2: the ``<cls>`` position by default (as the reference ``EmbExtractor``,
    ``emb_mode="cls"``), or with ``cls=False`` the mean over genes, leaving out ``<cls>`` and
    ``<eos>`` (the reference's ``emb_mode="cell"``).

    Parameters
    ----------
    model
        From :func:`course_helpers.model.load_model`.
    dataset
        Tokenized cells: a ``datasets.Dataset`` with ``input_ids`` (and ``length``), or a list of
        token-id lists.
    layer
        ``-1`` = second-to-last layer (reference default), ``0`` = last layer, ...
    batch_size
        Cells per forward pass. Batches are sorted by length, longest first.
    adata
        Optional AnnData holding the same cells in the same order; the result is written to
        ``adata.obsm[key_added]`` and the settings to ``adata.uns[key_added]``.
    key_added
        Key for ``adata.obsm``.
    progress
        Show a progress bar.
    cls
        ``None`` (default): ``<cls>`` for V2 models, the mean for V1 (:func:`default_cls`).
        ``True``: the ``<cls>`` embedding (V2 only). ``False``: the mean over genes.

    Returns
    -------
    numpy.ndarray
        ``(n_cells, hidden_size)``, float32. With ``adata=``, ``adata.uns[key_added]["params"]
        ["pooling"]`` records ``"cls"`` or ``"mean"``.

    Examples
    --------
    >>> from course_helpers.model import load_model
    >>> model = load_model("teaching")                                    # doctest: +SKIP
    >>> emb = embed_cells(model, dataset, adata=adata)                     # doctest: +SKIP
    >>> emb.shape == (adata.n_obs, model.config.hidden_size)               # doctest: +SKIP
    True
    >>> import scanpy as sc                                                # doctest: +SKIP
    >>> sc.pp.neighbors(adata, use_rep="X_geneformer"); sc.tl.umap(adata)  # doctest: +SKIP
    """
    cells = _Cells(dataset)
    if adata is not None:
        _check_adata(adata, cells, key_added)
    if cls is None:
        cls = default_cls(model)
    emb = _cell_embeddings(model, cells, np.arange(cells.n), layer, batch_size, cls, progress,
                           "Embedding cells")
    if adata is not None:
        adata.obsm[key_added] = emb
        adata.uns[key_added] = {
            "params": {
                "layer": int(layer),
                "pooling": "cls" if cls else "mean",
                "model_version": str(getattr(model, "model_version", "")),
                "hidden_size": int(emb.shape[1]),
            }
        }
    return emb


def embed_genes(
    model,
    dataset,
    layer: int = -1,
    batch_size: int = 32,
    genes: Sequence[str] | None = None,
    progress: bool = True,
    return_counts: bool = False,
):
    """Contextual embedding of each gene, averaged over the cells in which it occurs.

    Parameters
    ----------
    model
        From :func:`course_helpers.model.load_model`.
    dataset
        Tokenized cells (see :func:`embed_cells`).
    layer
        ``-1`` = second-to-last layer (default), ``0`` = last layer, ...
    batch_size
        Cells per forward pass.
    genes
        Symbols or Ensembl IDs to keep (in this order). ``None``: every gene that occurs.
        Requested genes that occur in no cell get a row of NaN and ``n_cells`` 0 (with a warning).
    progress
        Show a progress bar.
    return_counts
        Also return the ``n_cells`` Series.

    Returns
    -------
    pandas.DataFrame
        Index: gene symbol (Ensembl ID where a gene has no symbol, or if symbols repeat), named
        ``"gene"``; columns ``0 .. hidden_size - 1``; float32. ``df.attrs["n_cells"]`` is a Series
        with the number of cells each gene was averaged over and ``df.attrs["ensembl_id"]`` the
        genes' Ensembl IDs. With ``return_counts=True`` the result is ``(df, n_cells)``.

    Examples
    --------
    >>> gene_emb = embed_genes(model, dataset, genes=["GATA4", "TBX5"])   # doctest: +SKIP
    >>> gene_emb.attrs["n_cells"]                                          # doctest: +SKIP
    """
    import torch

    vocab = _check_model(model)
    cells = _Cells(dataset)
    vocab_size = int(model.config.vocab_size)
    hidden = int(model.config.hidden_size)
    wanted_ids = None
    if genes is not None:
        if isinstance(genes, str):
            genes = [genes]
        wanted_ids = [int(t) for t in vocab.tokens(list(genes))]
        if not wanted_ids:
            raise CourseInputError("genes= is empty. Fix: pass gene symbols, or genes=None for all.")
        wanted = torch.zeros(vocab_size, dtype=torch.bool)
        wanted[wanted_ids] = True
    special = torch.tensor(_special_ids(vocab), dtype=torch.long)

    sums = torch.zeros((vocab_size, hidden), dtype=torch.float64)
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for _, input_ids, keep, h in _iter_hidden(
            model, cells, np.arange(cells.n), layer, batch_size, progress, "Embedding genes"):
        input_ids, keep, h = input_ids.cpu(), keep.cpu(), h.cpu()
        keep = keep & ~torch.isin(input_ids, special)
        ids_flat = input_ids[keep]
        vecs = h[keep]
        if wanted_ids is not None:
            sel = wanted[ids_flat]
            ids_flat, vecs = ids_flat[sel], vecs[sel]
        sums.index_add_(0, ids_flat, vecs.to(torch.float64))
        counts += torch.bincount(ids_flat, minlength=vocab_size)

    counts_np = counts.numpy()
    if wanted_ids is None:
        token_ids = np.flatnonzero(counts_np > 0)
    else:
        token_ids = np.asarray(wanted_ids, dtype=np.int64)
        missing = [g for g, t in zip(genes, wanted_ids) if counts_np[t] == 0]
        if missing:
            warnings.warn(
                f"{len(missing)} requested gene(s) occur in no cell and get NaN embeddings: "
                f"{missing[:10]}", stacklevel=2,
            )
    n = counts_np[token_ids]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums.numpy()[token_ids] / n[:, None]).astype(np.float32)
    ensembl = [vocab.id_to_token[int(t)] for t in token_ids]
    labels = list(vocab.symbols([int(t) for t in token_ids]))
    if len(set(labels)) != len(labels):
        labels = ensembl
    index = pd.Index(labels, name="gene")
    df = pd.DataFrame(means, index=index, columns=pd.RangeIndex(hidden))
    n_cells = pd.Series(n.astype(np.int64), index=index, name="n_cells")
    df.attrs["n_cells"] = n_cells
    df.attrs["ensembl_id"] = pd.Series(ensembl, index=index, name="ensembl_id")
    df.attrs["layer"] = int(layer)
    if return_counts:
        return df, n_cells
    return df


def state_embeddings(
    model,
    dataset,
    state_key: str,
    states=None,
    layer: int = -1,
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
    layer, batch_size, progress, cls
        As in :func:`embed_cells`.

    Returns
    -------
    dict
        ``{state: vector}``; vectors are float32 of length ``hidden_size``.

    Examples
    --------
    >>> embs = state_embeddings(model, dataset, "state", ["healthy", "diseased"])  # doctest: +SKIP
    >>> embs["healthy"].shape                                                    # doctest: +SKIP
    (128,)
    """
    cells = _Cells(dataset)
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
    emb = _cell_embeddings(model, cells, sel, layer, batch_size, cls, progress,
                           "Embedding cell states")
    sel_values = values[sel]
    return {
        s: emb[sel_values == s].mean(axis=0, dtype=np.float64).astype(np.float32) for s in states
    }
