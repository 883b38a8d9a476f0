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

Examples
--------
>>> from course_helpers.vocab import GeneVocab
>>> from course_helpers.tokenize import tokenize
>>> vocab = GeneVocab.teaching()  # doctest: +SKIP
>>> ds = tokenize(adata, vocab, cell_attrs=["cell_id", "cell_type"])  # doctest: +SKIP
>>> ds[0]["input_ids"][:5], ds[0]["length"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._utils import CourseInputError
from ._utils import progress as _progress
from .vocab import GeneVocab

__all__ = [
    "TARGET_SUM", "TokenizedCells", "load", "rank_genes", "save", "tokenization_info", "tokenize",
    "tokenize_to_disk",
]

#: Normalisation target of the reference tokenizer (counts per 10,000).
TARGET_SUM = 10_000
#: Default model input sizes (tokens, special tokens included) per model version.
MODEL_INPUT_SIZE = {"V1": 2048, "V2": 4096}
DEFAULT_CHUNK_SIZE = 512  # cells; keeps the temporary arrays small (faster, less memory)

_INT64_MAX = np.iinfo(np.int64).max
_SORT_GROUP = 256  # rows sorted together in one padded 2-D block

_HUMAN_RE = re.compile(r"^ENSGR?\d{11}$")
_MOUSE_RE = re.compile(r"^ENSMUSG\d{11}$")
_ANY_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G[R]?\d{6,}$")
_VERSIONED_RE = re.compile(r"^(ENS[A-Z]*G[R]?\d{6,})\.\d+(_PAR_Y)?$")


# --------------------------------------------------------------------------------------------
# The core: rank genes within rows of a CSR block
# --------------------------------------------------------------------------------------------
def rank_genes(indptr, genes, values, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Order each row's genes by value (highest first) and keep at most ``max_len`` of them.

    A vectorised segmented sort: rows are grouped by length and each group is sorted as one padded
    2-D block of packed int64 keys; there is no Python loop over cells or genes. Exact ties keep
    their input order, so the result is the same as a stable sort of every row.

    Parameters
    ----------
    indptr
        CSR row pointer (``n_rows + 1`` entries).
    genes
        Integer label of each entry (e.g. token ids), aligned with ``values``.
    values
        Positive finite float64 values.
    max_len
        Maximum number of genes kept per row.

    Returns
    -------
    (flat, lengths)
        ``flat``: the kept labels, row after row; ``lengths``: how many each row kept.

    Examples
    --------
    >>> flat, lens = rank_genes(np.array([0, 3, 4]), np.array([10, 11, 12, 13]),
    ...                         np.array([1.0, 3.0, 2.0, 5.0]), max_len=2)
    >>> flat.tolist(), lens.tolist()
    ([11, 12, 13], [2, 1])
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.size and not (np.isfinite(values).all() and values.min() > 0):
        raise CourseInputError("rank_genes needs positive finite values.")
    ent, lens = _rank_entries(indptr - indptr[0], values[indptr[0] : indptr[-1]], max_len)
    return np.asarray(genes)[indptr[0] :][ent], lens


def _rank_entries(indptr: np.ndarray, values: np.ndarray, max_len: int):
    """Entry indices of each row ordered by value (desc, ties by entry order), truncated.

    ``indptr`` must start at 0 and ``values`` be positive and finite. Returns ``(ent, out_lens)``
    where ``ent`` lists, row after row, the indices (into ``values``) of the kept entries.

    How: positive float64 values order exactly like their bit patterns read as int64. Each entry
    gets one int64 sort key: the high bits of its (descending) value bits, and in the low bits its
    position in the row. Rows of similar length are padded into 2-D blocks and sorted in place
    with ``np.sort`` (much faster than ``argsort``); the position bits say where each entry came
    from. Rows where two kept (or kept/first dropped) entries share the same high bits, i.e. exact
    ties or values within ~1e-12 relative of each other, are re-ranked exactly with a stable
    ``lexsort`` on the full float64 values.
    """
    n = indptr.size - 1
    lens = np.diff(indptr)
    out_lens = np.minimum(lens, max_len)
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(out_lens, out=out_ptr[1:])
    nnz = int(indptr[-1])
    ent_out = np.empty(int(out_ptr[-1]), dtype=np.int64 if nnz >= 2**31 else np.int32)
    if n == 0 or nnz == 0:
        return ent_out, out_lens
    if (
        values.min() < 1e-300
    ):  # keep clear of subnormals, whose bit patterns would reach the padding
        raise CourseInputError(
            "Normalised values below 1e-300: check n_counts and the gene medians."
        )
    pos_bits = max(1, int(lens.max() - 1).bit_length())
    pos_mask = np.int64((1 << pos_bits) - 1)
    pos = np.arange(nnz, dtype=np.int64)
    pos -= np.repeat(indptr[:-1], lens)
    key = np.subtract(_INT64_MAX, values.view(np.int64))  # ascending key = descending value
    key &= ~pos_mask
    key |= pos
    order = np.argsort(lens, kind="stable")  # rows of similar length share a padded block
    groups = []
    row_base = np.empty(n, dtype=np.int64)
    off = 0
    for s in range(0, n, _SORT_GROUP):
        e = min(s + _SORT_GROUP, n)
        rows = order[s:e]
        width = int(lens[rows[-1]])
        row_base[rows] = off + np.arange(e - s, dtype=np.int64) * width
        groups.append((rows, width, off))
        off += (e - s) * width
    buf = np.full(off, _INT64_MAX, dtype=np.int64)  # padding sorts last
    pos += np.repeat(row_base, lens)
    buf[pos] = key
    del pos, key
    flagged = []
    near = np.int64(1 << pos_bits)
    for rows, width, off in groups:
        if width == 0:
            continue
        m = buf[off : off + rows.size * width].reshape(rows.size, width)
        m.sort(axis=1)
        kw = min(width, max_len)
        ol = out_lens[rows]
        # (Near-)ties among the kept entries, or between the last kept and the first dropped:
        # adjacent sorted keys whose value bits agree down to the position bits. Keys in a row
        # are distinct (position bits), so a difference < 2**pos_bits means equal value bits
        # (or, rarely, value bits one step apart: a harmless extra exact re-rank).
        cw = min(width, max_len + 1)
        if cw > 1:
            lim = np.minimum(lens[rows], max_len + 1)  # compare columns j-1, j for j < lim
            full_w = max(int(lim[0]), 1)  # rows are sorted by length: all real up to here
            t = (
                (np.diff(m[:, :full_w], axis=1) < near).any(axis=1)
                if full_w > 1
                else np.zeros(rows.size, bool)
            )
            if cw > full_w:
                tail = m[:, full_w - 1 : cw]
                d = np.diff(tail, axis=1) < near
                d &= np.arange(full_w, cw)[None, :] < lim[:, None]
                t |= d.any(axis=1)
            if t.any():
                flagged.append(rows[t])
        p = m[:, :kw] & pos_mask
        p += indptr[rows][:, None]
        if ol[0] == kw:  # every row of the block fills the kept width
            if rows.size == 1 or np.all(np.diff(rows) == 1):
                ent_out[out_ptr[rows[0]] : out_ptr[rows[-1] + 1]] = p.ravel()
                continue
            dst = (out_ptr[rows][:, None] + np.arange(kw)).ravel()
            ent_out[dst] = p.ravel()
        else:
            mask = np.arange(kw)[None, :] < ol[:, None]
            dst = (out_ptr[rows][:, None] + np.arange(kw))[mask]
            ent_out[dst] = p[mask]
    if flagged:
        _stable_rows(np.concatenate(flagged), indptr, values, out_ptr, out_lens, ent_out)
    return ent_out, out_lens


def _stable_rows(rows, indptr, values, out_ptr, out_lens, ent_out):
    """Re-rank ``rows`` exactly: value descending, ties in entry order; write them back."""
    lens = indptr[rows + 1] - indptr[rows]
    starts = np.zeros(rows.size, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    r = np.repeat(np.arange(rows.size), lens)
    ent = np.repeat(indptr[rows] - starts, lens) + np.arange(int(lens.sum()))
    o = np.lexsort((ent, -values[ent], r))
    ent, r = ent[o], r[o]
    rank = np.arange(ent.size) - starts[r]
    keep = rank < out_lens[rows][r]
    ent_out[out_ptr[rows][r[keep]] + rank[keep]] = ent[keep]


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    X: Any
    n_cells: int
    n_counts: np.ndarray
    keep: np.ndarray | None
    labels: pd.Index
    col_gene: np.ndarray  # per input column: compact gene index or -1
    gene_token: np.ndarray  # per compact gene: token id
    gene_inv_median: np.ndarray  # per compact gene: 1/median
    has_duplicates: bool
    col_inv_median: np.ndarray  # per input column: 1/median, 0 outside the vocabulary
    col_token: np.ndarray  # per input column: token id, -1 outside the vocabulary
    attrs: dict[str, Any]  # output name -> pyarrow array over the kept cells
    max_genes: int
    cls_id: int | None
    eos_id: int | None
    hints: str = ""
    cleanup: list[Callable] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # recorded in the dataset (tokenization_info)

    def close(self):
        for f in self.cleanup:
            try:
                f()
            except (OSError, ValueError, RuntimeError):  # pragma: no cover - already closed
                continue
        self.cleanup.clear()


def _open_input(adata_or_path, layer):
    """Return (adata, X, cleanup callables, is_streamed)."""
    import anndata as ad

    cleanup = []
    if isinstance(adata_or_path, (str, Path)):
        path = Path(adata_or_path)
        if not path.exists():
            raise CourseInputError(f"Input file not found: {path}. Fix: check the path.")
        suffix = path.suffix.lower()
        if suffix == ".h5ad":
            adata = ad.read_h5ad(path, backed="r")
            if adata.file is not None:
                cleanup.append(adata.file.close)
        elif suffix == ".loom":
            try:
                import loompy  # noqa: F401
            except ImportError:
                raise CourseInputError(
                    f"Reading {path.name} needs the 'loompy' package, which is not installed. Fix: "
                    "`pip install loompy`, or convert the file to .h5ad "
                    "(anndata.read_loom(...).write_h5ad(...)) on a machine that has loompy."
                ) from None
            adata = (
                ad.io.read_loom(path, sparse=True)
                if hasattr(ad, "io")
                else ad.read_loom(path, sparse=True)
            )
        else:
            raise CourseInputError(
                f"Unsupported input file '{path.name}'. Fix: pass an AnnData object, an .h5ad file "
                "or a .loom file."
            )
    elif isinstance(adata_or_path, ad.AnnData):
        adata = adata_or_path
    else:
        raise CourseInputError(
            f"tokenize expects an AnnData or a path to an .h5ad/.loom file, got "
            f"{type(adata_or_path).__name__}."
        )
    if layer is not None:
        if layer not in adata.layers:
            raise CourseInputError(
                f"Layer '{layer}' not found; available layers: {list(adata.layers.keys())}. "
                "Fix: pass one of them, or layer=None to use adata.X."
            )
        X = adata.layers[layer]
    else:
        X = adata.X
    if X is None:
        raise CourseInputError(
            "The AnnData has no expression matrix (X is None). "
            "Fix: load the raw counts into adata.X."
        )
    # in-memory matrices must be row-sliceable cheaply
    if isinstance(X, np.ndarray) or sp.isspmatrix_csr(X) or isinstance(X, sp.csr_array):
        pass
    elif sp.issparse(X):
        X = X.tocsr()
    elif type(X).__name__ in ("_CSCDataset", "CSCDataset"):
        warnings.warn(
            "X is stored column-wise (CSC) on disk, so it cannot be read cell by cell; it is "
            "loaded into memory. Store it as CSR to tokenise with constant memory.",
            UserWarning,
            stacklevel=3,
        )
        X = X.to_memory().tocsr()
    elif type(X).__name__ in ("_CSRDataset", "CSRDataset") and _H5CSRRows.supports(X):
        X = _H5CSRRows(X.group, X.shape)
    elif hasattr(X, "__getitem__") and hasattr(X, "shape"):
        pass  # backed CSR dataset or h5py dataset: slices come back as scipy/numpy
    else:
        X = np.asarray(X)
    return adata, X, cleanup


class _H5CSRRows:
    """Row slices of a CSR matrix stored in an HDF5 group, read straight with h5py.

    anndata's backed ``_CSRDataset`` does the same but re-validates every slice (and looks up
    package versions each time), which cost ~20 % of tokenising time; reading the three arrays
    directly gives identical matrices.
    """

    def __init__(self, group, shape):
        self.group = group
        self.shape = tuple(int(s) for s in shape)
        self.indptr = np.asarray(group["indptr"][...], dtype=np.int64)
        self.data = group["data"]
        self.indices = group["indices"]

    @staticmethod
    def supports(X) -> bool:
        import h5py

        g = getattr(X, "group", None)
        return isinstance(g, h5py.Group) and all(k in g for k in ("data", "indices", "indptr"))

    def __getitem__(self, rows):
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("_H5CSRRows supports contiguous row slices only")
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(stop, start)
        a, b = int(self.indptr[start]), int(self.indptr[stop])
        return sp.csr_matrix(
            (self.data[a:b], self.indices[a:b], self.indptr[start : stop + 1] - a),
            shape=(stop - start, self.shape[1]),
        )


def _to_arrow(values):
    import pyarrow as pa

    s = pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(s.cat.categories.dtype if s.cat.categories.dtype != object else object)
    try:
        return pa.Array.from_pandas(s)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(s.astype(str).tolist(), type=pa.string())


def _zero_cells_msg(n_bad, example, where):
    return (
        f"{n_bad} cell(s) have no counts ({where}; e.g. cell {example!r}). A cell without counts "
        "cannot be tokenised. Fix: remove empty cells first, e.g. "
        "`adata = adata[np.asarray(adata.X.sum(axis=1)).ravel() > 0].copy()` "
        "(or mark them with adata.obs['filter_pass'] = 0)."
    )


def _resolve_vocab(vocab) -> GeneVocab:
    if isinstance(vocab, GeneVocab):
        return vocab
    if isinstance(vocab, str) and vocab == "teaching":
        return GeneVocab.teaching()
    if isinstance(vocab, str) and vocab == "geneformer-v1":
        return GeneVocab.geneformer_v1()
    if isinstance(vocab, str) and vocab == "geneformer-v2":
        return GeneVocab.geneformer_v2()
    if isinstance(vocab, (str, Path)):
        p = Path(vocab)
        if p.is_dir():  # a folder of V1 or V2 dictionaries (or a clone of the Hub repository)
            for version in ("V1", "V2"):
                found = GeneVocab.from_folder(p, version)
                if found is not None:
                    return found
            return GeneVocab.geneformer_v1(p)  # raises, naming the files it looked for
        if p.is_file():
            return GeneVocab.from_tsv(p)
    raise CourseInputError(
        f"vocab must be a GeneVocab (e.g. GeneVocab.teaching() or GeneVocab.geneformer_v1(...)), "
        f"got {vocab!r}."
    )


def _gene_ids(adata, gene_id_col, vocab: GeneVocab, map_symbols: bool) -> np.ndarray:
    var = adata.var
    if gene_id_col is not None and gene_id_col in var.columns:
        raw = var[gene_id_col]
        where = f"var['{gene_id_col}']"
    elif gene_id_col in (None, "ensembl_id"):
        raw = pd.Series(adata.var_names)
        where = "var_names"
    else:
        raise CourseInputError(
            f"adata.var has no column '{gene_id_col}' (columns: {list(var.columns)}). Fix: pass "
            "gene_id_col=<the column with Ensembl IDs>, or gene_id_col=None to use var_names."
        )
    ser = pd.Series(np.asarray(raw, dtype=object)).fillna("").astype(str).str.strip()
    # Ensembl version suffixes
    if ser.str.contains(".", regex=False).any():
        stripped = ser.str.replace(_VERSIONED_RE, r"\1", regex=True)
        changed = np.flatnonzero((stripped != ser).to_numpy())
        if changed.size:
            i = changed[0]
            warnings.warn(
                f"Removed Ensembl version suffixes from {changed.size} gene IDs in {where} (e.g. "
                f"'{ser.iloc[i]}' -> '{stripped.iloc[i]}'); the vocabulary uses unversioned IDs. "
                "(The reference tokenizer silently drops versioned IDs.)",
                UserWarning,
                stacklevel=4,
            )
            ser = stripped
    ids = ser.to_numpy(dtype=object)
    n = ids.size
    is_mouse = ser.str.match(_MOUSE_RE).to_numpy(dtype=bool)
    n_human = int(ser.str.match(_HUMAN_RE).sum())
    n_mouse = int(is_mouse.sum())
    n_ens = int(ser.str.match(_ANY_ENSEMBL_RE).sum())
    if n_mouse > 0 and n_mouse >= n_human:
        ex = ids[np.argmax(is_mouse)]
        raise CourseInputError(
            f"{n_mouse} of {n} gene IDs in {where} are mouse Ensembl IDs (e.g. '{ex}'). Geneformer "
            "was pretrained on human cells only and its vocabulary holds human genes (ENSG...). "
            "Fix: map mouse genes to their human orthologs first (e.g. with an Ensembl BioMart or "
            "HGNC/MGI ortholog table: replace each ENSMUSG ID by the ENSG ID of its 1:1 human "
            "ortholog and drop genes without one), then tokenise."
        )
    if map_symbols:
        mapped = vocab.map_symbols(ids.tolist())
        n_unmapped = sum(1 for m in mapped if m is None)
        if n_unmapped:
            warnings.warn(
                f"map_symbols=True: {n_unmapped} of {n} gene names in {where} have no Ensembl "
                f"ID in the {vocab.name} gene-name dictionary and are ignored.",
                UserWarning,
                stacklevel=4,
            )
        ids = np.array([m if m is not None else "" for m in mapped], dtype=object)
    elif n_ens < 0.5 * n:
        examples = ", ".join(repr(s) for s in ids[:3])
        n_sym = sum(1 for s in ids if s in vocab.symbol_to_id)
        alt = [
            c
            for c in var.columns
            if c != gene_id_col
            and var[c].dtype == object
            and np.mean(
                [
                    bool(_ANY_ENSEMBL_RE.match(_VERSIONED_RE.sub(r"\1", str(v))))
                    for v in var[c].iloc[:200]
                ]
            )
            > 0.5
        ]
        alt_txt = (
            f" adata.var['{alt[0]}'] looks like Ensembl IDs: pass gene_id_col='{alt[0]}'."
            if alt
            else ""
        )
        raise CourseInputError(
            f"The gene IDs in {where} look like gene symbols, not Ensembl IDs: only {n_ens} of {n} "
            f"look like 'ENSG...' (first ones: {examples}). Geneformer's vocabulary is keyed by "
            f"Ensembl gene IDs. Fix: pass map_symbols=True to map symbols through the vocabulary's "
            f"gene-name dictionary ({n_sym} of your {n} names are in it), or store Ensembl IDs in "
            f"adata.var['ensembl_id'].{alt_txt}"
        )
    return ids


def _resolve_mapping(gene_mapping, vocab: GeneVocab) -> tuple[dict | None, str | None]:
    """(mapping restricted to vocabulary genes, its description) or (None, None)."""
    from .vocab import read_mapping

    if gene_mapping is None or gene_mapping is False:
        return None, None
    if isinstance(gene_mapping, str) and gene_mapping == "auto":
        m = getattr(vocab, "ensembl_mapping", None)
        return (m, f"{vocab.name} Ensembl ID mapping dictionary") if m is not None else (None, None)
    if gene_mapping is True:
        m = getattr(vocab, "ensembl_mapping", None)
        if m is None:
            raise CourseInputError(
                f"gene_mapping=True but the vocabulary {vocab.name!r} has no Ensembl ID mapping "
                "dictionary. Fix: load the vocabulary with it (GeneVocab.geneformer_v1() / "
                "geneformer_v2() download it; or GeneVocab.from_files(..., ensembl_mapping="
                "'ensembl_mapping_dict_gc30M.pkl')), pass the dictionary itself "
                "(gene_mapping='path/to/ensembl_mapping_dict_gc30M.pkl'), or gene_mapping=None."
            )
        return m, f"{vocab.name} Ensembl ID mapping dictionary"
    if isinstance(gene_mapping, (str, Path)):
        raw = read_mapping(gene_mapping, "mapping")
        desc = Path(gene_mapping).name
    elif isinstance(gene_mapping, dict):
        raw, desc = gene_mapping, "the dict passed as gene_mapping"
    else:
        raise CourseInputError(
            "gene_mapping must be 'auto', None, True, a dict {input Ensembl ID: vocabulary "
            f"Ensembl ID}} or the path of a mapping dictionary, not {type(gene_mapping).__name__}."
        )
    genes = vocab.medians
    return {str(k): str(v) for k, v in raw.items() if str(v) in genes}, desc


def _prepare(
    adata_or_path,
    vocab,
    model_version,
    cell_attrs,
    gene_id_col,
    counts_col,
    model_input_size,
    map_symbols,
    layer,
    gene_mapping="auto",
) -> _Plan:
    vocab = _resolve_vocab(vocab)
    mapping, mapping_desc = _resolve_mapping(gene_mapping, vocab)
    mv = str(model_version).upper()
    if mv not in MODEL_INPUT_SIZE:
        raise CourseInputError(
            f"model_version must be 'V1' or 'V2', got {model_version!r}. "
            "(The teaching model uses 'V1'.)"
        )
    if vocab.version != mv:
        what = (
            "has no <cls> token (a V1 dictionary)"
            if vocab.version == "V1"
            else "has <cls>/<eos> tokens (a V2 dictionary)"
        )
        raise CourseInputError(
            f"Vocabulary/model version mismatch: the vocabulary '{vocab.name}' {what} but "
            f"model_version={model_version!r}. Mixing dictionaries of one model version with "
            "another model is the most common tokenization error: the token ids would mean "
            "different genes to the model. Fix: use the dictionaries that ship with your model "
            f"(vocab.version == '{mv}'), or pass model_version='{vocab.version}'."
        )
    if model_input_size is None:
        model_input_size = MODEL_INPUT_SIZE[mv]
    n_special = 2 if mv == "V2" else 0
    if (
        not isinstance(model_input_size, (int, np.integer, float))
        or int(model_input_size) != model_input_size
        or model_input_size <= n_special
    ):
        raise CourseInputError(
            f"model_input_size must be an integer > {n_special}, got {model_input_size!r}."
        )
    max_genes = int(model_input_size) - n_special
    if mv == "V2" and (vocab.cls_token_id is None or vocab.eos_token_id is None):
        raise CourseInputError(
            "A V2 vocabulary needs both <cls> and <eos> tokens; this one lacks <eos>."
        )

    adata, X, cleanup = _open_input(adata_or_path, layer)
    ok = False
    try:
        n_cells, n_genes = X.shape
        if n_cells == 0 or n_genes == 0:
            raise CourseInputError(
                f"The expression matrix is empty ({n_cells} cells x {n_genes} genes). Fix: pass a "
                "dataset with cells and genes (check earlier filtering steps)."
            )
        obs = adata.obs
        labels = obs.index
        # n_counts
        if counts_col not in obs.columns:
            raise CourseInputError(
                f"adata.obs['{counts_col}'] is missing. The tokenizer divides every count by the "
                "cell's total raw count. Fix: on the raw counts, before any gene filtering, run "
                f'`adata.obs["{counts_col}"] = adata.X.sum(axis=1).A1` '
                f'(for a dense X: `adata.obs["{counts_col}"] = adata.X.sum(axis=1)`).'
            )
        try:
            n_counts = pd.to_numeric(obs[counts_col], errors="raise").to_numpy(dtype=np.float64)
        except (ValueError, TypeError):
            raise CourseInputError(
                f"adata.obs['{counts_col}'] must be numeric (total raw counts per cell), got "
                f"dtype {obs[counts_col].dtype}."
            ) from None
        # filter_pass
        keep = None
        if "filter_pass" in obs.columns:
            fp = pd.to_numeric(obs["filter_pass"], errors="coerce").to_numpy(dtype=np.float64)
            keep = fp == 1
            if not keep.any():
                raise CourseInputError(
                    "No cell has obs['filter_pass'] == 1, so there is nothing to tokenise. "
                    "Fix: set "
                    "filter_pass to 1 for the cells to keep, or drop the column to keep all cells."
                )
        kept_idx = np.flatnonzero(keep) if keep is not None else np.arange(n_cells)
        nc = n_counts[kept_idx]
        bad = ~np.isfinite(nc)
        if bad.any():
            raise CourseInputError(
                f"adata.obs['{counts_col}'] is NaN or infinite for {int(bad.sum())} cell(s) (e.g. "
                f"{labels[kept_idx[np.argmax(bad)]]!r}). Fix: recompute it from the raw counts: "
                f'`adata.obs["{counts_col}"] = adata.X.sum(axis=1).A1`.'
            )
        bad = nc <= 0
        if bad.any():
            raise CourseInputError(
                _zero_cells_msg(
                    int(bad.sum()), labels[kept_idx[np.argmax(bad)]], f"obs['{counts_col}'] <= 0"
                )
            )
        # cell attributes
        if isinstance(cell_attrs, str):
            cell_attrs = [cell_attrs]
        if cell_attrs is None:
            cell_attrs = {}
        if not isinstance(cell_attrs, dict):
            cell_attrs = {c: c for c in cell_attrs}
        attrs = {}
        for col, out in cell_attrs.items():
            if out in ("input_ids", "length"):
                raise CourseInputError(f"Cell attribute name '{out}' is reserved. Fix: rename it.")
            if col in obs.columns:
                values = obs[col].to_numpy()[kept_idx] if keep is not None else obs[col]
            elif col == "cell_id":
                values = np.asarray(labels.astype(str))[kept_idx]  # the index is the cell id
            else:
                raise CourseInputError(
                    f"Cell attribute '{col}' is not a column of adata.obs (columns: "
                    f"{list(obs.columns)}). Fix: add it to adata.obs or remove it from cell_attrs."
                )
            attrs[out] = _to_arrow(values)
        # genes
        ids = _gene_ids(adata, gene_id_col, vocab, map_symbols)
        n_changed = 0
        if mapping is not None:
            # the reference (collapse_gene_ids=True): map every upper-cased input ID through the
            # dictionary; IDs it does not hold are dropped, IDs landing on the same gene summed
            mapped = np.array([mapping.get(str(g).upper(), "") for g in ids], dtype=object)
            n_changed = int(sum(1 for a, b in zip(ids, mapped) if b and b != a))
            ids = mapped
        vocab_genes = pd.Index(list(vocab.medians))
        vidx = vocab_genes.get_indexer(pd.Index(ids))
        in_vocab = vidx >= 0
        n_in = int(in_vocab.sum())
        if n_in == 0:
            raise CourseInputError(
                f"None of the {n_genes} genes is in the {vocab.name} vocabulary (your IDs: "
                f"{', '.join(repr(s) for s in ids[:3])}; vocabulary IDs: "
                f"{', '.join(repr(s) for s in vocab_genes[:3])}). Fix: check that var holds human "
                "Ensembl gene IDs of the same kind as the vocabulary (or use map_symbols=True)."
            )
        if n_in < 0.5 * n_genes:
            warnings.warn(
                f"Only {n_in} of {n_genes} genes ({100 * n_in / n_genes:.1f} %) are in the "
                f"{vocab.name} vocabulary; the others are ignored. Check that the gene IDs match "
                "the vocabulary (species, ID type, vocabulary of the right model).",
                UserWarning,
                stacklevel=3,
            )
        codes, uniques = pd.factorize(vidx[in_vocab])
        col_gene = np.full(n_genes, -1, dtype=np.int64)
        col_gene[in_vocab] = codes
        has_dup = len(uniques) < n_in
        if has_dup and mapping is None:
            dup = pd.Series(ids[in_vocab]).value_counts()
            dup = dup[dup > 1]
            warnings.warn(
                f"{len(dup)} gene ID(s) occur in more than one column (e.g. '{dup.index[0]}' x"
                f"{dup.iloc[0]}); their counts are summed per cell, as the reference tokenizer "
                "does (collapse_gene_ids=True).",
                UserWarning,
                stacklevel=3,
            )
        medians = np.fromiter(vocab.medians.values(), dtype=np.float64, count=len(vocab.medians))
        tokens = np.array([vocab.token_to_id[g] for g in vocab_genes], dtype=np.int32)
        col_inv_median = np.zeros(n_genes, dtype=np.float64)
        col_inv_median[in_vocab] = 1.0 / medians[vidx[in_vocab]]
        col_token = np.full(n_genes, -1, dtype=np.int32)
        col_token[in_vocab] = tokens[vidx[in_vocab]]
        hints = []
        if layer is None and "counts" in getattr(adata, "layers", {}):
            hints.append("adata.layers['counts'] may hold them: pass layer='counts'")
        if getattr(adata, "raw", None) is not None:
            hints.append(
                "adata.raw may hold them: tokenize(adata.raw.to_adata(), ...), but check it "
                "first, raw often holds log-normalised values too"
            )
        if "log1p" in getattr(adata, "uns", {}):
            hints.append("adata.uns['log1p'] is set, so X was log-transformed by scanpy")
        plan = _Plan(
            X=X,
            n_cells=n_cells,
            n_counts=n_counts,
            keep=keep,
            labels=labels,
            col_gene=col_gene,
            gene_token=tokens[uniques],
            gene_inv_median=1.0 / medians[uniques],
            has_duplicates=has_dup,
            col_inv_median=col_inv_median,
            col_token=col_token,
            attrs=attrs,
            max_genes=max_genes,
            cls_id=vocab.cls_token_id if mv == "V2" else None,
            eos_id=vocab.eos_token_id if mv == "V2" else None,
            hints="; ".join(hints),
            cleanup=cleanup,
            info={
                "tokenizer": "course_helpers.tokenize",
                "vocab": vocab.name,
                "model_version": mv,
                "model_input_size": int(model_input_size),
                "gene_id_mapping": mapping_desc,
                "n_input_genes": int(n_genes),
                "n_input_genes_used": n_in,
                "n_ids_mapped_to_another_id": n_changed,
                "n_ids_summed_into_another_column": int(n_in - len(uniques)),
            },
        )
        ok = True
        return plan
    finally:
        if not ok:
            for f in cleanup:
                f()


def _read_chunk(plan: _Plan, start: int, stop: int):
    """Rows [start, stop) that pass the filter, as CSR, plus their global row indices."""
    x = plan.X[start:stop]
    if not sp.issparse(x):
        x = sp.csr_matrix(np.asarray(x))
    elif not sp.isspmatrix_csr(x):
        x = sp.csr_matrix(x)
    rows = np.arange(start, stop)
    if plan.keep is not None:
        sel = plan.keep[start:stop]
        if not sel.all():
            x = x[np.flatnonzero(sel)]
            rows = rows[sel]
    if not x.has_sorted_indices:
        x = x.copy()
        x.sort_indices()
    return x, rows


def _row_sums(data, indptr):
    n = indptr.size - 1
    out = np.zeros(n, dtype=np.float64)
    lens = np.diff(indptr)
    nz = lens > 0
    if data.size and nz.any():
        out[nz] = np.add.reduceat(data.astype(np.float64, copy=False), indptr[:-1][nz])
    return out


def _validate_chunk(plan: _Plan, x, rows, counts_col):
    data = x.data
    if data.size:
        if data.dtype.kind == "f":
            mn, mx = data.min(), data.max()
            if np.isnan(mn) or np.isnan(mx) or np.isinf(mn) or np.isinf(mx):
                n_nan = int(np.isnan(data).sum())
                n_inf = int(np.isinf(data).sum())
                raise CourseInputError(
                    f"The expression matrix holds {n_nan} NaN and {n_inf} infinite value(s). "
                    "Tokenisation needs raw counts (whole numbers >= 0). Fix: use the raw count "
                    "matrix" + (f" ({plan.hints})" if plan.hints else "") + "."
                )
        else:
            mn = data.min()
        if mn < 0:
            raise CourseInputError(
                f"The expression matrix holds {int((data < 0).sum())} negative value(s) (min "
                f"{float(mn):g}), so it is not raw counts (scaled or batch-corrected data?). Fix: "
                "use the raw count matrix" + (f" ({plan.hints})" if plan.hints else "") + "."
            )
        if data.dtype.kind == "f":
            frac = data != np.rint(data)
            if frac.any():
                fr = np.abs(data - np.rint(data)) > 1e-6
                if fr.any():
                    ex = ", ".join(f"{float(v):.4g}" for v in data[fr][:3])
                    raise CourseInputError(
                        f"The expression matrix does not look like raw counts: "
                        f"{int(fr.sum())} of {data.size} non-zero values in rows "
                        f"{rows[0]}-{rows[-1]} are not whole numbers (e.g. {ex}). It looks "
                        "log-transformed or normalised, and Geneformer normalises raw counts "
                        "itself. Fix: tokenise the raw counts"
                        + (f" ({plan.hints})" if plan.hints else "")
                        + "."
                    )
    sums = _row_sums(data, x.indptr)
    zero = sums <= 0
    if zero.any():
        raise CourseInputError(
            _zero_cells_msg(
                int(zero.sum()), plan.labels[rows[np.argmax(zero)]], "all-zero rows of X"
            )
        )
    nc = plan.n_counts[rows]
    bad = nc < sums * (1 - 1e-9) - 1e-6
    if bad.any():
        i = int(np.argmax(bad))
        raise CourseInputError(
            f"obs['{counts_col}'] is smaller than the sum of the cell's counts in X for "
            f"{int(bad.sum())} cell(s) (e.g. {plan.labels[rows[i]]!r}: {counts_col}={nc[i]:g}, "
            f"row sum={sums[i]:g}). It must be the cell's total raw count (over all genes, before "
            f'any gene filtering). Fix: `adata.obs["{counts_col}"] = adata.X.sum(axis=1).A1` '
            "on the raw counts."
        )


def _tokenize_chunk(plan: _Plan, x, n_counts) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (flat) and lengths of the cells in CSR block ``x`` (already filtered)."""
    n = x.shape[0]
    inv_n = 1.0 / n_counts
    if plan.has_duplicates:
        # sum the counts of columns that share a gene ID (reference: collapse_gene_ids)
        g_all = plan.col_gene[x.indices]
        m = (g_all >= 0) & (x.data != 0)
        cm = np.zeros(m.size + 1, dtype=np.int64)
        np.cumsum(m, out=cm[1:])
        y = sp.csr_matrix(
            (x.data[m].astype(np.float64), g_all[m], cm[x.indptr]), shape=(n, plan.gene_token.size)
        )
        y.sum_duplicates()
        indptr = y.indptr.astype(np.int64)
        genes = y.indices
        values = y.data * np.repeat(inv_n, np.diff(indptr))
        values *= float(TARGET_SUM)
        values *= plan.gene_inv_median[genes]
        labels = plan.gene_token
    else:
        # exactly the reference's float64 arithmetic: ((count * (1/n_counts)) * 10000) * (1/median)
        indptr = x.indptr.astype(np.int64)
        values = np.repeat(inv_n, np.diff(indptr))  # float64
        values *= x.data  # float32 counts are widened exactly to float64 first
        values *= float(TARGET_SUM)
        values *= plan.col_inv_median[x.indices]  # 0 for genes outside the vocabulary
        genes = x.indices
        keep = values > 0  # drops genes outside the vocabulary and stored zeros
        if not keep.all():
            cm = np.zeros(keep.size + 1, dtype=np.int64)
            np.cumsum(keep, out=cm[1:])
            indptr = cm[indptr]
            values = values[keep]
            genes = genes[keep]
        labels = plan.col_token
    ent, lens = _rank_entries(indptr, values, plan.max_genes)
    flat = labels[genes[ent]]
    if plan.cls_id is not None:
        flat, lens = _wrap(flat, lens, plan.cls_id, plan.eos_id)
    return flat, lens


def _wrap(flat, lens, cls_id, eos_id):
    n = lens.size
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens + 2, out=off[1:])
    out = np.empty(int(off[-1]), dtype=flat.dtype)
    out[off[:-1]] = cls_id
    out[off[1:] - 1] = eos_id
    row = np.repeat(np.arange(n), lens)
    out[np.arange(flat.size) + 2 * row + 1] = flat
    return out, lens + 2


def _chunk_arrays(plan: _Plan, start: int, stop: int, validate: bool, counts_col: str):
    """Read, check and tokenise rows [start, stop): (flat ids, lengths, kept global rows)."""
    x, rows = _read_chunk(plan, start, stop)
    if not rows.size:
        return None, None, rows
    if validate:
        _validate_chunk(plan, x, rows, counts_col)
    flat, lens = _tokenize_chunk(plan, x, plan.n_counts[rows])
    return flat, lens, rows


def _n_threads() -> int:
    """Worker threads for chunk tokenisation: at most 2 (NumPy's sort, ufuncs and fancy
    indexing release the GIL, so two chunks overlap well; more threads gain little here)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        n = os.cpu_count() or 1
    return max(1, min(2, n))


def _batches(plan: _Plan, chunk_size: int, validate: bool, show_progress: bool, counts_col: str):
    """Yield one pyarrow RecordBatch per chunk of cells, in input order.

    Chunks are tokenised by up to two threads with a bounded look-ahead, so memory stays
    constant in the number of cells; an input error is raised for the first bad chunk in order.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    kept_before = 0
    starts = range(0, plan.n_cells, chunk_size)
    n_threads = _n_threads() if len(starts) > 1 else 1
    with (
        _progress(total=plan.n_cells, enabled=show_progress, desc="Tokenizing", unit="cell") as bar,
        ThreadPoolExecutor(max_workers=n_threads) as pool,
    ):
        pending = deque()
        it = iter(starts)

        def submit_next():
            s = next(it, None)
            if s is not None:
                e = min(s + chunk_size, plan.n_cells)
                pending.append(
                    (e - s, pool.submit(_chunk_arrays, plan, s, e, validate, counts_col))
                )

        try:
            for _ in range(n_threads + 1):
                submit_next()
            while pending:
                n_in, fut = pending.popleft()
                flat, lens, rows = fut.result()
                submit_next()
                if rows.size:
                    offsets = np.zeros(lens.size + 1, dtype=np.int32)
                    np.cumsum(lens, out=offsets[1:])
                    cols = [
                        pa.ListArray.from_arrays(
                            pa.array(offsets), pa.array(flat.astype(np.int32, copy=False))
                        ),
                        pa.array(lens.astype(np.int64)),
                    ]
                    names = ["input_ids", "length"]
                    for name, arr in plan.attrs.items():
                        cols.append(arr.slice(kept_before, rows.size))
                        names.append(name)
                    kept_before += rows.size
                    yield pa.RecordBatch.from_arrays(cols, names=names)
                bar.update(n_in)
        finally:
            for _, fut in pending:
                fut.cancel()


_INFO_KEY = "course_helpers.tokenize"


def _dataset_from_table(table, info: dict | None = None):
    import json

    import datasets
    from datasets.fingerprint import generate_random_fingerprint

    ds_info = None
    if info:
        ds_info = datasets.DatasetInfo(description=json.dumps({_INFO_KEY: info}))
    # a random fingerprint, as datasets itself uses for unhashable inputs; hashing the whole
    # table would cost more than tokenising it
    return datasets.Dataset(table, info=ds_info, fingerprint=generate_random_fingerprint())


def tokenization_info(dataset) -> dict:
    """How a dataset was tokenised: vocabulary, model version, gene ID mapping, gene counts.

    ``gene_id_mapping`` is ``None`` when input IDs were used as they are, else which mapping
    dictionary mapped them (and IDs landing on the same gene were summed). Datasets not made by
    :func:`tokenize` give ``{}``.

    Examples
    --------
    >>> tokenization_info(ds)["gene_id_mapping"]  # doctest: +SKIP
    'geneformer-v1 Ensembl ID mapping dictionary'
    """
    import json

    desc = getattr(getattr(dataset, "info", None), "description", "") or ""
    try:
        return dict(json.loads(desc).get(_INFO_KEY, {}))
    except (ValueError, AttributeError):
        return {}


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def tokenize(
    adata_or_path,
    vocab,
    model_version: str = "V1",
    cell_attrs=("cell_id",),
    gene_id_col: str | None = "ensembl_id",
    counts_col: str = "n_counts",
    model_input_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    map_symbols: bool = False,
    progress: bool = True,
    layer: str | None = None,
    *,
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
    >>> from course_helpers.vocab import GeneVocab
    >>> vocab = GeneVocab.teaching()  # doctest: +SKIP
    >>> ds = tokenize(adata, vocab, cell_attrs=["cell_id", "cell_type"])  # doctest: +SKIP
    >>> vocab.symbols(ds[0]["input_ids"][:5])  # the cell's five top-ranked genes  # doctest: +SKIP
    """
    import pyarrow as pa

    chunk_size = _check_chunk_size(chunk_size)
    plan = _prepare(
        adata_or_path,
        vocab,
        model_version,
        cell_attrs,
        gene_id_col,
        counts_col,
        model_input_size,
        map_symbols,
        layer,
        gene_mapping,
    )
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


def _check_target(path, overwrite) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CourseInputError(
            f"{path} exists and is a file. Fix: choose a folder path for the dataset."
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CourseInputError(
            f"{path} already exists and is not empty. "
            "Fix: choose another path or pass overwrite=True."
        )
    return path


def save(dataset, path, overwrite: bool = False) -> Path:
    """Save a tokenised dataset to a folder (``datasets.Dataset.save_to_disk``).

    Examples
    --------
    >>> save(ds, "tokenized/pbmc")  # doctest: +SKIP
    PosixPath('tokenized/pbmc')
    """
    import datasets

    if not isinstance(dataset, datasets.Dataset) or "input_ids" not in dataset.column_names:
        raise CourseInputError(
            "save expects a tokenised datasets.Dataset (with an 'input_ids' column)."
        )
    path = _check_target(path, overwrite)
    if path.is_dir() and overwrite:
        shutil.rmtree(path)
    dataset.save_to_disk(str(path))
    return path


def load(path):
    """Load a dataset saved with :func:`save` or :func:`tokenize_to_disk`.

    Examples
    --------
    >>> ds = load("tokenized/pbmc")  # doctest: +SKIP
    """
    import datasets

    path = Path(path)
    if not path.is_dir():
        raise CourseInputError(
            f"No tokenised dataset at {path}. "
            "Fix: check the path, or create it with tokenize_to_disk."
        )
    try:
        return datasets.Dataset.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise CourseInputError(
            f"{path} is not a saved datasets.Dataset ({e}). Fix: check the path."
        ) from e


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
    cell_attrs=("cell_id",),
    gene_id_col: str | None = "ensembl_id",
    counts_col: str = "n_counts",
    model_input_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    map_symbols: bool = False,
    progress: bool = True,
    layer: str | None = None,
    overwrite: bool = False,
    *,
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
    >>> ds = tokenize_to_disk("pbmc.h5ad", "tokenized/pbmc", GeneVocab.teaching())  # doctest: +SKIP
    """
    path = _check_target(path, overwrite)
    chunk_size = _check_chunk_size(chunk_size)
    if not isinstance(adata_or_path, (str, Path)) and not getattr(adata_or_path, "isbacked", False):
        ds = tokenize(
            adata_or_path,
            vocab,
            model_version,
            cell_attrs,
            gene_id_col,
            counts_col,
            model_input_size,
            chunk_size,
            map_symbols,
            progress,
            layer,
            gene_mapping=gene_mapping,
        )
        save(ds, path, overwrite=overwrite)
        return load(path)

    plan = _prepare(
        adata_or_path,
        vocab,
        model_version,
        cell_attrs,
        gene_id_col,
        counts_col,
        model_input_size,
        map_symbols,
        layer,
        gene_mapping,
    )
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


# --------------------------------------------------------------------------------------------
# Reading tokenized cells (the ONE reader: HF Dataset, DataFrame, dict of columns, id lists)
# --------------------------------------------------------------------------------------------
class TokenizedCells:
    """Uniform, lazy access to tokenized cells: their token ids and the other columns.

    The one reader of tokenized cells for every analysis module. Accepts a Hugging Face
    ``datasets.Dataset`` with an ``input_ids`` column (as :func:`tokenize` returns), a pandas
    DataFrame or a dict of columns with ``input_ids``, or a plain list of token-id lists.

    Parameters
    ----------
    dataset
        The tokenized cells.

    Attributes
    ----------
    dataset
        What was passed in.
    n : int
        Number of cells (also ``len(cells)``).
    columns : list of str
        Column names (``["input_ids"]`` for a list of id lists).

    Raises
    ------
    CourseInputError
        If there is no ``input_ids`` column, no cell, or the container type is not supported.

    Examples
    --------
    >>> cells = TokenizedCells({"input_ids": [[5, 6, 7], [8]], "cell_type": ["B", "T"]})
    >>> len(cells), cells.columns, cells.lengths().tolist()
    (2, ['input_ids', 'cell_type'], [3, 1])
    >>> cells.ids([1, 0]), cells.ids_of(0).tolist(), cells.column("cell_type")
    ([[8], [5, 6, 7]], [5, 6, 7], ['B', 'T'])
    >>> cells.get("donor") is None, cells.meta.columns.tolist(), cells.label(1, "cell_type")
    (True, ['cell_type', 'length'], 'cell 1 (T)')
    """

    #: Cells kept by :meth:`ids_of` (least recently used ones are dropped).
    CACHE_SIZE = 256

    def __init__(self, dataset):
        if dataset is None:
            raise CourseInputError(
                "No cells given. Fix: pass a tokenized dataset (course_helpers.tokenize) or a "
                "list of token-id lists."
            )
        self.dataset = dataset
        self._hf = None
        self._cols = None
        self._ids = None
        if hasattr(dataset, "column_names") and hasattr(dataset, "select_columns"):
            cols = dataset.column_names
            if isinstance(cols, Mapping):  # a DatasetDict
                raise CourseInputError(
                    f"The dataset has several splits ({list(cols)}), so it has no 'input_ids' "
                    "column of its own. Fix: pass one split, e.g. dataset['train']."
                )
            if "input_ids" not in cols:
                raise CourseInputError(
                    f"The dataset has no 'input_ids' column (columns: {list(cols)}). Fix: "
                    "tokenize the cells first with course_helpers.tokenize."
                )
            self._hf = dataset.with_format(None)
            self._ids_ds = self._hf.select_columns(["input_ids"])
            self.columns = list(cols)
            self.n = len(dataset)
        elif isinstance(dataset, (pd.DataFrame, Mapping)):
            keys = list(dataset.columns if isinstance(dataset, pd.DataFrame) else dataset.keys())
            if "input_ids" not in keys:
                raise CourseInputError(
                    f"The cells have no 'input_ids' column (columns: {keys}). Fix: pass a "
                    "tokenized dataset (course_helpers.tokenize) or a list of token-id lists."
                )
            self._cols = dataset
            self._ids = list(dataset["input_ids"])
            self.columns = [str(k) for k in keys]
            self.n = len(self._ids)
        elif isinstance(dataset, (list, tuple, np.ndarray)):
            self._ids = list(dataset)
            self.columns = ["input_ids"]
            self.n = len(self._ids)
        else:
            raise CourseInputError(
                f"Cannot read cells from a {type(dataset).__name__}. Fix: pass a tokenized "
                "Hugging Face dataset (with 'input_ids'), a DataFrame or dict of columns with "
                "'input_ids', or a list of token-id lists."
            )
        if self.n == 0:
            raise CourseInputError("The dataset has no cells. Fix: pass at least one cell.")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._all = None
        self._meta = None
        self._labels: dict = {}

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"TokenizedCells(n={self.n}, columns={self.columns})"

    # -- token ids ---------------------------------------------------------------------------
    def ids(self, indices) -> list:
        """Token ids of the cells ``indices``, one sequence per cell (lists for a dataset).

        Examples
        --------
        >>> TokenizedCells([[5, 6], [7]]).ids([1])
        [[7]]
        """
        idx = [int(i) for i in indices]
        if self._hf is not None:
            return self._ids_ds[idx]["input_ids"]
        return [self._ids[i] for i in idx]

    def iter_chunks(self, indices, chunk: int = 2048):
        """Yield :meth:`ids` of ``indices`` in chunks of ``chunk`` cells."""
        for s in range(0, len(indices), int(chunk)):
            yield self.ids(indices[s:s + int(chunk)])

    def ids_of(self, i) -> np.ndarray:
        """Token ids of one cell as an int64 array (recently used cells are cached).

        Examples
        --------
        >>> TokenizedCells([[5, 6], [7]]).ids_of(0)
        array([5, 6])
        """
        i = int(i)
        if not -self.n <= i < self.n:
            raise CourseInputError(f"Cell {i} does not exist (the dataset has {self.n} cells).")
        i %= self.n
        if self._all is not None and i < len(self._all):
            return self._all[i]
        hit = self._cache.get(i)
        if hit is None:
            raw = self._ids_ds[i]["input_ids"] if self._hf is not None else self._ids[i]
            hit = np.asarray(raw, dtype=np.int64).reshape(-1)
            self._cache[i] = hit
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return hit

    def all_ids(self, limit: int = 20000) -> list[np.ndarray]:
        """Token ids of the first ``limit`` cells as int64 arrays, read in bulk once.

        Examples
        --------
        >>> [a.tolist() for a in TokenizedCells([[5, 6], [7], [8]]).all_ids(limit=2)]
        [[5, 6], [7]]
        """
        if self._all is None:
            n = min(self.n, int(limit))
            if self._hf is not None:
                sub = self._ids_ds if n == self.n else self._ids_ds.select(range(n))
                col = sub.with_format("numpy")["input_ids"]
                self._all = [np.asarray(c, dtype=np.int64) for c in col]
            else:
                self._all = [np.asarray(x, dtype=np.int64).reshape(-1) for x in self._ids[:n]]
        return self._all

    def lengths(self) -> np.ndarray:
        """Number of tokens of every cell (the ``length`` column where there is one).

        Examples
        --------
        >>> TokenizedCells([[5, 6], [7]]).lengths()
        array([2, 1])
        """
        if "length" in self.columns:
            return np.asarray(list(self.column("length")), dtype=np.int64)
        ids = self._ids_ds["input_ids"] if self._hf is not None else self._ids
        return np.asarray([len(x) for x in ids], dtype=np.int64)

    # -- other columns -----------------------------------------------------------------------
    def column(self, name: str) -> list:
        """One column as a list; :class:`CourseInputError` naming the columns if it is absent.

        Examples
        --------
        >>> TokenizedCells({"input_ids": [[5]], "cell_type": ["B"]}).column("cell_type")
        ['B']
        """
        if name not in self.columns:
            raise CourseInputError(
                f"The dataset has no column {name!r} (columns: {self.columns}). Fix: keep it when "
                "tokenizing, e.g. tokenize(..., cell_attrs=[...]) / custom_attr_name_dict."
            )
        if self._hf is not None:
            return list(self._hf[name])
        if self._cols is not None:
            return list(self._cols[name])
        return list(self._ids)

    def get(self, name: str) -> list | None:
        """One column as a list, or ``None`` if there is no such column.

        Examples
        --------
        >>> TokenizedCells([[5]]).get("cell_type") is None
        True
        """
        return self.column(name) if name in self.columns else None

    @property
    def meta(self) -> pd.DataFrame:
        """Every column but ``input_ids`` as a DataFrame (built once), plus ``length``.

        Examples
        --------
        >>> TokenizedCells({"input_ids": [[5, 6]], "cell_id": ["c0"]}).meta
          cell_id  length
        0      c0       2
        """
        if self._meta is None:
            if self._hf is not None:
                meta = pd.DataFrame({c: list(self._hf[c]) for c in self.columns
                                     if c != "input_ids"})
            elif isinstance(self._cols, pd.DataFrame):
                meta = self._cols.drop(columns=["input_ids"]).reset_index(drop=True)
            elif self._cols is not None:
                meta = pd.DataFrame({k: list(v) for k, v in self._cols.items()
                                     if k != "input_ids"})
            else:
                meta = pd.DataFrame(index=range(self.n))
            if "length" not in meta:
                meta["length"] = self.lengths()
            self._meta = meta
        return self._meta

    def label(self, i, type_key: str | None = None) -> str:
        """A readable name of cell ``i``: its ``cell_id`` (or ``"cell i"``), with ``(type)``.

        Examples
        --------
        >>> cells = TokenizedCells({"input_ids": [[5]], "cell_id": ["c0"], "cell_type": ["B"]})
        >>> cells.label(0, "cell_type")
        'c0 (B)'
        """
        key = type_key if type_key and type_key in self.meta else None
        if key not in self._labels:
            meta = self.meta
            names = ([str(x) for x in meta["cell_id"]] if "cell_id" in meta
                     else [f"cell {j}" for j in range(self.n)])
            if key is not None:
                names = [f"{c} ({t})" for c, t in zip(names, meta[key].astype(str))]
            self._labels[key] = names
        return self._labels[key][int(i)]

    def subset(self, indices):
        """The cells ``indices`` in the container type that was passed in.

        Examples
        --------
        >>> cells = TokenizedCells({"input_ids": [[5], [6], [7]], "cell_id": ["a", "b", "c"]})
        >>> cells.subset([2, 0])
        {'input_ids': [[7], [5]], 'cell_id': ['c', 'a']}
        """
        idx = [int(i) for i in indices]
        ds = self.dataset
        if self._hf is not None:
            return ds.select(idx)
        if isinstance(ds, pd.DataFrame):
            return ds.iloc[idx].reset_index(drop=True)
        if isinstance(ds, Mapping):
            return {k: [list(v)[i] for i in idx] for k, v in ds.items()}
        return [ds[i] for i in idx]
