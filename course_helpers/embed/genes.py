"""Gene embeddings: contextual embeddings averaged over the cells (:func:`embed_genes`)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from .._utils import CourseWarning, find_stack_level, renamed_parameters
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


class GeneEmbeddings(pd.DataFrame):
    """Genes x hidden mean embeddings from :func:`embed_genes`, with their side data.

    A plain DataFrame (index ``"gene"``, columns ``0 .. hidden_size - 1``) with three attributes.
    They are pandas ``_metadata``, which filtering and copying carry along; in ``DataFrame.attrs``
    a Series would break ``pd.concat``, ``.nlargest`` and friends:

    * ``n_cells`` - Series, the number of cells each gene was averaged over;
    * ``ensembl_id`` - Series, each gene's Ensembl ID;
    * ``emb_layer`` - the hidden-state layer the embeddings come from.

    They describe the genes the table was built with; after ``pd.concat`` they are ``None``.

    Examples
    --------
    >>> from course_helpers.data import load_tissue
    >>> from course_helpers.model import load_model
    >>> from course_helpers.tokenize import tokenize
    >>> m = load_model("teaching")
    >>> cells = tokenize(load_tissue()[:8], m.gene_vocab, progress=False)
    >>> gene_emb = embed_genes(m, cells, genes=["GATA4", "TBX5"], progress=False)
    >>> type(gene_emb).__name__, gene_emb.emb_layer
    ('GeneEmbeddings', -1)
    >>> gene_emb.ensembl_id.to_dict()
    {'GATA4': 'ENSG00000136574', 'TBX5': 'ENSG00000089225'}
    >>> gene_emb.loc["GATA4"].nlargest(1).size                      # an ordinary DataFrame
    1
    """

    _metadata: ClassVar[list[str]] = ["n_cells", "ensembl_id", "emb_layer"]
    n_cells = None
    ensembl_id = None
    emb_layer = None

    @property
    def _constructor(self):
        return GeneEmbeddings


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
    GeneEmbeddings
        A DataFrame. Index: gene symbol (Ensembl ID where a gene has no symbol, or if symbols
        repeat), named ``"gene"``; columns ``0 .. hidden_size - 1``; float32. ``df.n_cells`` is a
        Series with the number of cells each gene was averaged over, ``df.ensembl_id`` the
        genes' Ensembl IDs and ``df.emb_layer`` the layer. With ``return_counts=True`` the result
        is ``(df, n_cells)``.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> ds = ch.tokenize.tokenize(ch.data.load_tissue()[:8], model.gene_vocab, progress=False)
    >>> gene_emb = embed_genes(model, ds, genes=["GATA4", "TBX5"], progress=False)
    >>> gene_emb.shape
    (2, 128)
    >>> gene_emb.n_cells.to_dict()                          # cells each gene was averaged over
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
                f"{missing[:10]}", GeneNotInCellsWarning, stacklevel=find_stack_level(),
            )
    n = counts_np[token_ids]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums.numpy()[token_ids] / n[:, None]).astype(np.float32)
    ensembl = [vocab.id_to_token[int(t)] for t in token_ids]
    labels = list(vocab.symbols([int(t) for t in token_ids]))
    if len(set(labels)) != len(labels):
        labels = ensembl
    index = pd.Index(labels, name="gene")
    df = GeneEmbeddings(means, index=index, columns=pd.RangeIndex(hidden))
    n_cells = pd.Series(n.astype(np.int64), index=index, name="n_cells")
    df.n_cells = n_cells
    df.ensembl_id = pd.Series(ensembl, index=index, name="ensembl_id")
    df.emb_layer = int(emb_layer)
    if return_counts:
        return df, n_cells
    return df
