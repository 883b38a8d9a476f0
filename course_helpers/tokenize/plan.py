"""The tokenization plan: everything checked once before any cell is tokenized (counts, gene IDs,
vocabulary version, filter, attributes), held in :class:`_Plan`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._utils import CourseInputError, find_stack_level
from .dataset import _to_arrow
from .genes import _gene_ids, _resolve_mapping, _resolve_vocab
from .inputs import _open_input, _zero_cells_msg

TARGET_SUM = 10_000
#: Default model input sizes (tokens, special tokens included) per model version.
MODEL_INPUT_SIZE = {"V1": 2048, "V2": 4096}
DEFAULT_CHUNK_SIZE = 512  # cells; keeps the temporary arrays small (faster, less memory)


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


def _prepare(adata_or_path, vocab, model_version, cell_attrs, *, gene_id_col, counts_col,
             model_input_size, map_symbols, layer, gene_mapping="auto") -> _Plan:
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
                stacklevel=find_stack_level(),
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
                stacklevel=find_stack_level(),
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
