"""The genes of the input: which vocabulary to use, the Ensembl IDs of the columns (symbols mapped
when asked), and the reference's Ensembl ID mapping dictionary.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import CourseInputError, find_stack_level
from ..vocab import ENSEMBL_ID_RE, VERSIONED_ID_RE, GeneVocab

_HUMAN_RE = re.compile(r"^ENSGR?\d{11}$")
_MOUSE_RE = re.compile(r"^ENSMUSG\d{11}$")


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
        stripped = ser.str.replace(VERSIONED_ID_RE, r"\1", regex=True)
        changed = np.flatnonzero((stripped != ser).to_numpy())
        if changed.size:
            i = changed[0]
            warnings.warn(
                f"Removed Ensembl version suffixes from {changed.size} gene IDs in {where} (e.g. "
                f"'{ser.iloc[i]}' -> '{stripped.iloc[i]}'); the vocabulary uses unversioned IDs. "
                "(The reference tokenizer silently drops versioned IDs.)",
                UserWarning,
                stacklevel=find_stack_level(),
            )
            ser = stripped
    ids = ser.to_numpy(dtype=object)
    n = ids.size
    is_mouse = ser.str.match(_MOUSE_RE).to_numpy(dtype=bool)
    n_human = int(ser.str.match(_HUMAN_RE).sum())
    n_mouse = int(is_mouse.sum())
    n_ens = int(ser.str.match(ENSEMBL_ID_RE).sum())
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
                stacklevel=find_stack_level(),
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
                    bool(ENSEMBL_ID_RE.match(VERSIONED_ID_RE.sub(r"\1", str(v))))
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
    from ..vocab import read_mapping

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
