"""Gene embeddings: contextual embeddings averaged over the cells (:func:`embed_genes`)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._utils import CourseWarning, renamed_parameters
from ..tokenize import TokenizedCells
from .forward import _embedding_facts, _iter_hidden


class GeneNotInCellsWarning(CourseWarning):
    """:func:`embed_genes` was asked for genes that occur in no cell (their rows are NaN).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", GeneNotInCellsWarning)  # by class, not by text
    ...     warnings.warn("2 requested gene(s) occur in no cell", GeneNotInCellsWarning)
    """


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
        Requested genes that occur in no cell get a row of NaN and ``n_cells`` 0 (with a
        :class:`GeneNotInCellsWarning`).
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
    >>> ds = ch.tokenize.tokenize(ch.data.load_tissue()[:8], model.gene_vocab, progress=False)
    >>> gene_emb = embed_genes(model, ds, genes=["GATA4", "TBX5"], progress=False)
    >>> gene_emb.shape
    (2, 128)
    >>> gene_emb.attrs["n_cells"].to_dict()                 # cells each gene was averaged over
    {'GATA4': 3, 'TBX5': 2}
    """
    import torch

    facts = _embedding_facts(model, emb_layer)
    vocab, vocab_size, hidden = facts.vocab, facts.vocab_size, facts.hidden
    cells = TokenizedCells(dataset)
    wanted_ids = None
    if genes is not None:
        wanted_ids = facts.resolve_genes(genes, argname="genes")
        wanted = torch.zeros(vocab_size, dtype=torch.bool)
        wanted[wanted_ids] = True
    special = torch.as_tensor(facts.special_ids, dtype=torch.long)

    sums = torch.zeros((vocab_size, hidden), dtype=torch.float64)
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for _, input_ids, keep, h in _iter_hidden(
            facts, cells, np.arange(cells.n), batch_size, progress, "Embedding genes"):
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
        missing = list(vocab.symbols([t for t in wanted_ids if counts_np[t] == 0]))
        if missing:
            warnings.warn(
                f"{len(missing)} requested gene(s) occur in no cell and get NaN embeddings: "
                f"{missing[:10]}", GeneNotInCellsWarning, stacklevel=2,
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
