"""Cell embeddings: ``<cls>`` or mean pooling of hidden states (:func:`embed_cells`)."""
from __future__ import annotations

import numpy as np

from .._utils import CourseInputError, renamed_parameters
from ..tokenize import TokenizedCells
from .forward import _embedding_facts, _iter_hidden


def _pool_cells(h, input_ids, keep, facts, cls: bool):
    """Cell vectors of a batch: ``<cls>`` position, or mean over real non-special positions."""
    import torch

    if cls:
        if not torch.all(input_ids[:, 0] == facts.cls_id):
            raise CourseInputError(
                "The <cls> embedding was asked for (cls=True, the default for V2 models) but "
                "some cells do not start with <cls>. Fix: tokenize with the V2 rules "
                "(tokenize(..., model_version='V2') adds <cls>/<eos>), or use cls=False for the "
                "mean over genes."
            )
        return h[:, 0, :]
    keep = keep.clone()
    for tid in (facts.cls_id, facts.eos_id):
        if tid is not None:
            keep &= input_ids != tid
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


def _cell_embeddings(model, cells: TokenizedCells, indices: np.ndarray, emb_layer: int,
                     batch_size: int, cls: bool | None, show_progress: bool,
                     desc: str) -> np.ndarray:
    facts = _embedding_facts(model, emb_layer)
    if cls is None:
        cls = default_cls(model)
    if cls and facts.cls_id is None:
        raise CourseInputError(
            f"cls=True needs a model with a <cls> token (Geneformer V2); this "
            f"{getattr(model, 'model_version', 'V1')} model has none. Fix: use cls=False (the "
            "mean over genes, the V1 cell embedding), or leave cls out."
        )
    out = np.zeros((len(indices), facts.hidden), dtype=np.float32)
    position = {int(i): k for k, i in enumerate(indices)}
    for batch_idx, input_ids, keep, h in _iter_hidden(
            facts, cells, indices, batch_size, show_progress, desc):
        vecs = _pool_cells(h, input_ids, keep, facts, cls).cpu().numpy()
        out[[position[int(i)] for i in batch_idx]] = vecs
    return out


def _check_adata(adata, cells: TokenizedCells, key_added: str) -> None:
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


@renamed_parameters(layer="emb_layer")
def embed_cells(
    model,
    dataset,
    emb_layer: int = -1,
    batch_size: int = 32,
    *,
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
    emb_layer
        Hidden layer, as the reference ``emb_layer``: ``-1`` = second-to-last layer (default),
        ``0`` = last layer, ... (``layer=`` is the old, deprecated name.)
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
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> adata = ch.data.load_tissue()[:8].copy()      # 8 cells keep the example fast
    >>> dataset = ch.tokenize.tokenize(adata, model.gene_vocab, cell_attrs=["cell_id"],
    ...                                progress=False)
    >>> emb = embed_cells(model, dataset, adata=adata, progress=False)
    >>> emb.shape == (adata.n_obs, model.config.hidden_size)
    True
    >>> adata.uns["X_geneformer"]["params"]["pooling"]      # the teaching model has no <cls>
    'mean'
    >>> bool((adata.obsm["X_geneformer"] == emb).all())
    True

    Then, e.g., ``sc.pp.neighbors(adata, use_rep="X_geneformer"); sc.tl.umap(adata)``.
    """
    cells = TokenizedCells(dataset)
    if adata is not None:
        _check_adata(adata, cells, key_added)
    if cls is None:
        cls = default_cls(model)
    emb = _cell_embeddings(model, cells, np.arange(cells.n), emb_layer, batch_size, cls, progress,
                           "Embedding cells")
    if adata is not None:
        adata.obsm[key_added] = emb
        adata.uns[key_added] = {
            "params": {
                "layer": int(emb_layer),  # the old key, kept for existing readers
                "emb_layer": int(emb_layer),
                "pooling": "cls" if cls else "mean",
                "model_version": str(getattr(model, "model_version", "")),
                "hidden_size": int(emb.shape[1]),
            }
        }
    return emb
