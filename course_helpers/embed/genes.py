"""Gene embeddings: contextual embeddings averaged over the cells (:func:`embed_genes`)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._utils import CourseInputError, renamed_parameters
from .forward import _check_model, _iter_hidden, _special_ids
from .reader import _Cells


@renamed_parameters(layer="emb_layer")
def embed_genes(
    model,
    dataset,
    emb_layer: int = -1,
    batch_size: int = 32,
    *,
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
    emb_layer
        ``-1`` = second-to-last layer (default), ``0`` = last layer, ... (``layer=`` is the old,
        deprecated name.)
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
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> adata = ch.data.load_tissue()[:8].copy()      # 8 cells keep the example fast
    >>> dataset = ch.tokenize.tokenize(adata, model.gene_vocab, cell_attrs=("cell_id", "state"),
    ...                                progress=False)
    >>> gene_emb = embed_genes(model, dataset, genes=["GATA4", "TBX5"], progress=False)
    >>> gene_emb.shape
    (2, 128)
    >>> gene_emb.attrs["n_cells"].to_dict()                 # cells each gene was averaged over
    {'GATA4': 3, 'TBX5': 2}
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
            model, cells, np.arange(cells.n), emb_layer, batch_size, progress, "Embedding genes"):
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
    df.attrs["layer"] = int(emb_layer)
    if return_counts:
        return df, n_cells
    return df
