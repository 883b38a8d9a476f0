"""The public entry points: :func:`tokenize` (into memory) and :func:`tokenize_to_disk` (streamed to
a dataset folder, for large ``.h5ad`` files).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .._utils import CourseInputError
from .._utils import progress as _progress
from .chunks import _batches, _read_chunk, _validate_chunk
from .dataset import _check_target, _dataset_from_table, load, save
from .plan import DEFAULT_CHUNK_SIZE, _prepare


def tokenize(
    adata_or_path,
    vocab,
    model_version: str = "V1",
    cell_attrs=("cell_id",),
    *,
    gene_id_col: str | None = "ensembl_id",
    counts_col: str = "n_counts",
    model_input_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    map_symbols: bool = False,
    progress: bool = True,
    layer: str | None = None,
    gene_mapping="auto",
):
    """Rank-value encode cells into a Hugging Face dataset (Geneformer tokenizer).

    Parameters
    ----------
    adata_or_path
        An AnnData with **raw counts**, or the path of an ``.h5ad`` (read in backed mode, chunk
        by chunk) or ``.loom`` file.
    vocab
        The :class:`~course_helpers.vocab.GeneVocab` of the model (``"teaching"`` and
        ``"geneformer-v1"`` are accepted as shortcuts).
    model_version
        ``"V1"`` (2,048 genes, no special tokens; also the teaching model) or ``"V2"`` (4,094
        genes between ``<cls>`` and ``<eos>``). Must match ``vocab.version``.
    cell_attrs
        ``obs`` columns copied into the dataset: a list, or a dict ``{obs column: name}``.
        ``"cell_id"`` falls back to ``obs_names`` when there is no such column.
    gene_id_col
        ``var`` column with Ensembl gene IDs; ``var_names`` are used when the default column
        ``"ensembl_id"`` is absent or when ``None``. Version suffixes (``.17``) are removed.
    counts_col
        ``obs`` column with each cell's total raw count (over all genes).
    model_input_size
        Maximum sequence length including special tokens (default 2,048 for V1, 4,096 for V2).
    chunk_size
        Cells processed at a time (memory vs. overhead; the result does not depend on it).
    map_symbols
        Map gene symbols to Ensembl IDs with ``vocab.symbol_to_id`` first.
    progress
        Show a progress bar.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    gene_mapping
        The reference's Ensembl ID mapping (``collapse_gene_ids=True``): every input ID is
        mapped through the dictionary (input Ensembl ID -> vocabulary Ensembl ID), IDs it does
        not hold are dropped, and the counts of IDs that land on the same gene are summed.
        ``"auto"`` (default): use ``vocab.ensembl_mapping`` when the vocabulary was loaded with
        its mapping dictionary (``GeneVocab.geneformer_v1()`` / ``geneformer_v2()`` from the
        Hub or a clone), else use the IDs as they are (duplicated IDs are still summed).
        ``None``: never map. ``True``: require it. A dict or a path: that mapping.

    Returns
    -------
    datasets.Dataset
        Columns ``input_ids`` (list of int32), ``length`` (int64) and the cell attributes; one
        row per cell (cells with ``obs['filter_pass'] != 1`` are skipped when that column exists).
        :func:`tokenization_info` tells which vocabulary and gene ID mapping were used.

    Raises
    ------
    CourseInputError
        For non-count input, symbols instead of Ensembl IDs, mouse genes, a missing or wrong
        ``n_counts``, empty cells, or a vocabulary of the wrong model version.

    Examples
    --------
    >>> from course_helpers.data import load_tissue
    >>> from course_helpers.vocab import GeneVocab
    >>> vocab = GeneVocab.teaching()
    >>> adata = load_tissue("chapter")[:20]
    >>> ds = tokenize(adata, vocab, cell_attrs=["cell_id", "cell_type"], progress=False)
    >>> ds.num_rows, ds.column_names
    (20, ['input_ids', 'length', 'cell_id', 'cell_type'])
    >>> vocab.symbols(ds[0]["input_ids"][:5])  # the cell's five top-ranked genes
    ['COL3A1', 'LUM', 'COL1A1', 'COL1A2', 'DCN']
    """
    import pyarrow as pa

    chunk_size = _check_chunk_size(chunk_size)
    plan = _prepare(adata_or_path, vocab, model_version, cell_attrs, gene_id_col=gene_id_col,
                    counts_col=counts_col, model_input_size=model_input_size,
                    map_symbols=map_symbols, layer=layer, gene_mapping=gene_mapping)
    try:
        batches = list(_batches(plan, chunk_size, True, progress, counts_col))
    finally:
        plan.close()
    table = pa.Table.from_batches(batches)
    return _dataset_from_table(table, plan.info)


def _check_chunk_size(chunk_size):
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise CourseInputError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    return int(chunk_size)


def _stream_dataset(batches, folder: Path, info: dict | None = None) -> None:
    """Write record batches as a ``save_to_disk`` folder without holding them in memory.

    The folder layout (``state.json``, ``dataset_info.json``, the Arrow stream shard) is made by
    ``datasets`` itself from a one-row dataset; the shard is then replaced by the full stream,
    written batch by batch with exactly the schema ``datasets`` wrote.
    """
    import pyarrow as pa
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    writer = shard = schema = None
    partial = folder / "data.arrow.partial"
    try:
        for batch in batches:
            if writer is None:
                was_disabled = are_progress_bars_disabled()
                disable_progress_bars()
                try:
                    _dataset_from_table(
                        pa.Table.from_batches([batch.slice(0, 1)]), info
                    ).save_to_disk(
                        str(folder)
                    )
                finally:
                    if not was_disabled:
                        enable_progress_bars()
                shards = sorted(folder.glob("data-*.arrow"))
                if len(shards) != 1:  # pragma: no cover - datasets changed its layout
                    raise RuntimeError(f"unexpected save_to_disk layout: {shards}")
                shard = shards[0]
                with pa.memory_map(str(shard)) as src:
                    schema = pa.ipc.open_stream(src).schema
                writer = pa.ipc.new_stream(str(partial), schema)
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))
    finally:
        if writer is not None:
            writer.close()
    if shard is None:  # pragma: no cover - _prepare guarantees at least one cell
        raise CourseInputError("No cells to write.")
    os.replace(partial, shard)


def tokenize_to_disk(
    adata_or_path,
    path,
    vocab,
    model_version: str = "V1",
    *,
    cell_attrs=("cell_id",),
    gene_id_col: str | None = "ensembl_id",
    counts_col: str = "n_counts",
    model_input_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    map_symbols: bool = False,
    progress: bool = True,
    layer: str | None = None,
    overwrite: bool = False,
    gene_mapping="auto",
):
    """Tokenise and save to ``path``; streams chunk by chunk for file input.

    All input checks run before anything is written: for an in-memory AnnData the dataset is
    built in memory and then saved; for a file a first pass checks every chunk, a second pass
    streams the tokens to a hidden temporary folder beside ``path``, which is renamed to ``path``
    only when complete. Memory stays flat in the number of cells. Arguments as in
    :func:`tokenize`.

    Returns
    -------
    datasets.Dataset
        The saved dataset, memory-mapped from ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> from course_helpers.data import load_tissue
    >>> from course_helpers.vocab import GeneVocab
    >>> out = os.path.join(tempfile.mkdtemp(), "tokenized")
    >>> ds = tokenize_to_disk(load_tissue("chapter")[:20], out, GeneVocab.teaching(),
    ...                       progress=False)
    >>> ds.num_rows
    20

    For a large ``.h5ad`` file pass its path: it is read in backed mode, chunk by chunk.

    >>> h5ad = os.path.join(tempfile.mkdtemp(), "cells.h5ad")
    >>> load_tissue("chapter")[:20].write_h5ad(h5ad)
    >>> ds = tokenize_to_disk(h5ad, os.path.join(tempfile.mkdtemp(), "tokenized"),
    ...                       GeneVocab.teaching(), chunk_size=8, progress=False)
    >>> ds.num_rows, ds.column_names
    (20, [...'input_ids'...])
    """
    path = _check_target(path, overwrite)
    chunk_size = _check_chunk_size(chunk_size)
    options = {"gene_id_col": gene_id_col, "counts_col": counts_col,
               "model_input_size": model_input_size, "map_symbols": map_symbols, "layer": layer,
               "gene_mapping": gene_mapping}
    if not isinstance(adata_or_path, (str, Path)) and not getattr(adata_or_path, "isbacked", False):
        ds = tokenize(adata_or_path, vocab, model_version, cell_attrs, chunk_size=chunk_size,
                      progress=progress, **options)
        save(ds, path, overwrite=overwrite)
        return load(path)

    plan = _prepare(adata_or_path, vocab, model_version, cell_attrs, **options)
    tmp = None
    try:
        # pass 1: check every chunk, write nothing
        with _progress(total=plan.n_cells, enabled=progress, desc="Checking", unit="cell") as bar:
            for start in range(0, plan.n_cells, chunk_size):
                stop = min(start + chunk_size, plan.n_cells)
                x, rows = _read_chunk(plan, start, stop)
                if rows.size:
                    _validate_chunk(plan, x, rows, counts_col)
                bar.update(stop - start)
        # pass 2: stream to a hidden temporary folder beside `path`, then rename it into place
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
        _stream_dataset(_batches(plan, chunk_size, False, progress, counts_col), tmp, plan.info)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private
        if path.is_dir():  # empty, or overwrite=True (checked above)
            shutil.rmtree(path)
        os.replace(tmp, path)
        tmp = None
    finally:
        plan.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return load(path)
