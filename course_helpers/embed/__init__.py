"""Cell and gene embeddings from a Geneformer-family model.

* :func:`embed_cells` - one vector per cell (the mean of its gene embeddings for V1 and the
  teaching model; the ``<cls>`` position for V2 models, the reference default), returned in
  dataset order and optionally stored in ``adata.obsm["X_geneformer"]``.
* :func:`embed_genes` - one vector per gene: its contextual embedding averaged over the cells in
  which it occurs.
* :func:`state_embeddings` - one vector per cell state: the mean of the cells' embeddings (the
  reference ``EmbExtractor.get_state_embs`` with ``summary_stat="exact_mean"``), used as goal
  states in in-silico perturbation.

All functions take ``emb_layer`` with the reference meaning: ``-1`` = second-to-last layer
(default), ``0`` = last layer (``layer=`` is the old, deprecated spelling). They run the encoder
only, in float32, in length-sorted padded batches, under ``torch.inference_mode()``.

Files
-----
``forward.py``
    the encoder pass: checks the model (``model.model_facts``) and batches, yields hidden states
    per length-sorted batch.
``cells.py``
    :func:`embed_cells`, :func:`default_cls` and the ``<cls>`` / mean pooling.
``genes.py``
    :func:`embed_genes`, its result type :class:`GeneEmbeddings` (``.n_cells``, ``.ensembl_id``,
    ``.emb_layer``) and :class:`GeneNotInCellsWarning` (requested genes in no cell).
``states.py``
    :func:`state_embeddings`.
"""
from __future__ import annotations

from .cells import default_cls, embed_cells
from .genes import GeneEmbeddings, GeneNotInCellsWarning, embed_genes
from .states import state_embeddings

__all__ = [
    "GeneEmbeddings",
    "GeneNotInCellsWarning",
    "default_cls",
    "embed_cells",
    "embed_genes",
    "state_embeddings",
]
