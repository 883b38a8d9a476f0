"""Rank-value encoding of single-cell transcriptomes (the Geneformer tokenizer).

For every cell and every gene in the vocabulary with a non-zero raw count::

    value = count / n_counts * 10,000 / gene_median        (float64)

Genes are ordered by value, highest first, and the token sequence is that order:

* **V1**: the first 2,048 genes, no special tokens;
* **V2**: the first 4,094 genes wrapped in ``<cls>`` ... ``<eos>`` (4,096 tokens at most).

This module reproduces the reference ``TranscriptomeTokenizer`` token for token (the float64
values are computed as ``((count * (1/n_counts)) * 10000) * (1/median)``, exactly as the
reference does through scipy), but it is vectorised over chunks of cells, reads ``.h5ad`` files
in backed mode (memory does not grow with the number of cells), builds the Hugging Face dataset
directly from Arrow arrays and checks its input first: raw counts, Ensembl IDs, ``n_counts``,
the vocabulary version. Every problem raises
:class:`~course_helpers._utils.CourseInputError` saying what is wrong and how to fix it, before
anything is written.

Exact ties (two genes of a cell with the identical float64 value) are broken by the genes' column
order in the input, so the output never depends on ``chunk_size`` (the reference uses a
non-stable sort, so its tie order is arbitrary).

Files
-----
- ``pipeline.py``: tokenize (into memory) and tokenize_to_disk (streamed to a dataset folder)
- ``plan.py``: the checks made once before tokenizing (_prepare), TARGET_SUM, MODEL_INPUT_SIZE
- ``inputs.py``: opening an AnnData or a backed .h5ad file (row blocks of its CSR matrix)
- ``genes.py``: the vocabulary to use, the Ensembl IDs of the genes, the ID mapping dictionary
- ``chunks.py``: tokenizing one chunk of cells (normalise, rank, wrap) and the batch loop
- ``rank.py``: rank_genes, the ranking core
- ``dataset.py``: building the Hugging Face dataset, tokenization_info, save, load
- ``cells.py``: TokenizedCells, the one reader of tokenized cells

Examples
--------
>>> from course_helpers.data import load_tissue
>>> from course_helpers.vocab import GeneVocab
>>> from course_helpers.tokenize import tokenize
>>> vocab = GeneVocab.teaching()
>>> adata = load_tissue("chapter")[:20]
>>> ds = tokenize(adata, vocab, cell_attrs=["cell_id", "cell_type"], progress=False)
>>> ds[0]["input_ids"][:5], ds[0]["length"]
([1323, 879, 416, 1242, 41], 338)
"""

from __future__ import annotations

from .cells import TokenizedCells
from .dataset import load, save, tokenization_info
from .pipeline import tokenize, tokenize_to_disk
from .plan import DEFAULT_CHUNK_SIZE as DEFAULT_CHUNK_SIZE
from .plan import MODEL_INPUT_SIZE as MODEL_INPUT_SIZE
from .plan import TARGET_SUM
from .rank import rank_genes

__all__ = [
    "TARGET_SUM",
    "TokenizedCells",
    "load",
    "rank_genes",
    "save",
    "tokenization_info",
    "tokenize",
    "tokenize_to_disk",
]
