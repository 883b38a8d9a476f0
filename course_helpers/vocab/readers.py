"""Plain-text and pickle readers of the dictionary files (TSV/CSV/JSON/PKL) and small parsing
helpers (Ensembl ID patterns, integer token ids).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from pathlib import Path

from .._utils import CourseInputError
from .pickles import safe_load_pickle

TSV_COLUMNS = ("ensembl_id", "token_id", "gene_median", "gene_symbols")
SPECIAL_TOKENS = ("<pad>", "<mask>", "<cls>", "<eos>")


#: An Ensembl gene ID of any species (``ENSG00000141510``, ``ENSMUSG...``), without version.
ENSEMBL_ID_RE = re.compile(r"^ENS[A-Z]*G[R]?\d{6,}$")
#: An Ensembl gene ID with a version suffix (``ENSG00000141510.17``); group 1 is the bare ID.
VERSIONED_ID_RE = re.compile(r"^(ENS[A-Z]*G[R]?\d{6,})\.\d+(_PAR_Y)?$")


def _read_rows(path: Path) -> list[list[str]]:
    delim = "," if path.suffix.lower() == ".csv" else "\t"
    with open(path, encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f, delimiter=delim, quoting=csv.QUOTE_NONE) if row]


def read_mapping(source, kind: str) -> dict:
    r"""Read one dictionary from a mapping or a file (``.tsv``/``.csv``/``.json``/``.pkl``).

    Parameters
    ----------
    source
        A mapping (returned as a plain dict) or the path of a dictionary file. Pickles are read
        with :func:`~course_helpers.vocab.safe_load_pickle`.
    kind
        ``"token"`` (Ensembl ID -> token id), ``"median"`` (Ensembl ID -> gene median),
        ``"names"`` (symbol -> Ensembl ID) or ``"mapping"`` (Ensembl ID -> Ensembl ID); picks
        the columns of a table with a header.

    Returns
    -------
    dict
        Keys and values as read (strings from text files; convert as needed).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "names.tsv"
    >>> _ = p.write_text("gene_symbol\tensembl_id\nTP53\tENSG00000141510\n")
    >>> read_mapping(p, "names")
    {'TP53': 'ENSG00000141510'}
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.is_file():
        raise CourseInputError(
            f"The {kind} dictionary file does not exist: {path}. Fix: check the path."
        )
    suffix = path.suffix.lower()
    if suffix == ".pkl" or suffix == ".pickle":
        return safe_load_pickle(path)
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        if not isinstance(obj, dict):
            raise CourseInputError(
                f"{path} must hold a JSON object (a dictionary), not {type(obj).__name__}."
            )
        return obj
    if suffix not in (".tsv", ".txt", ".csv"):
        raise CourseInputError(
            f"Unknown dictionary format '{suffix}' for {path}. Fix: use .tsv, .csv, .json or .pkl."
        )
    rows = _read_rows(path)
    if not rows:
        raise CourseInputError(f"{path} is empty. Fix: pass a non-empty {kind} dictionary.")
    header = [h.strip() for h in rows[0]]
    cols = {h: i for i, h in enumerate(header)}
    wanted = {
        "token": ("ensembl_id", "token_id"),
        "median": ("ensembl_id", "gene_median"),
        "names": ("gene_symbol", "ensembl_id"),
        "mapping": ("ensembl_id", "mapped_ensembl_id"),
    }[kind]
    out: dict = {}
    if all(w in cols for w in wanted):
        k, v = cols[wanted[0]], cols[wanted[1]]
        for row in rows[1:]:
            if len(row) > max(k, v) and row[v] != "":
                out[row[k]] = row[v]
        return out
    if kind == "names" and "gene_symbols" in cols and "ensembl_id" in cols:  # combined vocab TSV
        s, e = cols["gene_symbols"], cols["ensembl_id"]
        for row in rows[1:]:
            if len(row) > s and row[s]:
                for sym in row[s].split(","):
                    out[sym] = row[e]
        return out
    if kind == "median" and "gene_median" not in cols and "token_id" in cols:
        raise CourseInputError(
            f"{path} has no gene_median column. Fix: pass the gene median dictionary."
        )
    # two-column file, with or without a header line
    body = rows
    if kind in ("token", "median"):
        try:
            float(rows[0][1])
        except (IndexError, ValueError):
            body = rows[1:]
    elif header[:2] == ["gene_symbol", "ensembl_id"] or header[0].lower() in (
        "symbol",
        "gene_symbol",
    ):
        body = rows[1:]
    for row in body:
        if len(row) < 2:
            raise CourseInputError(
                f"{path}: expected two columns (key, value) per line, got {row!r}. Fix: use the "
                "tab-separated layout key<TAB>value, or the combined vocab TSV "
                "(ensembl_id, token_id, gene_median, gene_symbols)."
            )
        if row[1] != "":
            out[row[0]] = row[1]
    return out


def _as_int(v, key) -> int:
    try:
        f = float(v)
        i = int(f)
    except (TypeError, ValueError):
        raise CourseInputError(f"Token id of {key!r} is not an integer: {v!r}.") from None
    if i != f:
        raise CourseInputError(f"Token id of {key!r} is not an integer: {v!r}.")
    return i


def _looks_ensembl(s: str) -> bool:
    return bool(ENSEMBL_ID_RE.match(s))


def _strip_version(s: str) -> str:
    m = VERSIONED_ID_RE.match(s)
    return m.group(1) if m else s


def read_vocab_tsv(path) -> tuple[dict[str, int], dict[str, float], dict[str, str]]:
    r"""Read the combined vocabulary TSV into (token ids, medians, symbol -> Ensembl ID).

    The columns are :data:`TSV_COLUMNS`; medians are parsed with ``float()`` (exact round trip).

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "vocab.tsv")
    >>> with open(p, "w") as f:
    ...     _ = f.write("ensembl_id\ttoken_id\tgene_median\tgene_symbols\n<pad>\t0\t\t\n"
    ...                 "ENSG00000141510\t1\t2.5\tTP53\n")
    >>> read_vocab_tsv(p)
    ({'<pad>': 0, 'ENSG00000141510': 1}, {'ENSG00000141510': 2.5}, {'TP53': 'ENSG00000141510'})
    """
    path = Path(path)
    if not path.is_file():
        raise CourseInputError(f"Vocabulary file not found: {path}. Fix: check the path.")
    rows = _read_rows(path)
    if not rows or [h.strip() for h in rows[0][:4]] != list(TSV_COLUMNS):
        raise CourseInputError(
            f"{path} does not have the vocabulary TSV header "
            f"{' | '.join(TSV_COLUMNS)} (found {rows[0] if rows else 'an empty file'}). Fix: "
            "write it with GeneVocab.to_tsv, or load separate dictionaries with "
            "GeneVocab.from_files."
        )
    tok: dict[str, int] = {}
    med: dict[str, float] = {}
    syms: dict[str, str] = {}
    for n, row in enumerate(rows[1:], start=2):
        row = row + [""] * (4 - len(row))
        e, t, m, s = row[:4]
        tok[e] = _as_int(t, e)
        if m != "":
            try:
                med[e] = float(m)
            except ValueError:
                raise CourseInputError(
                    f"{path}, line {n}: gene_median {m!r} is not a number."
                ) from None
        if s:
            for sym in s.split(","):
                syms[sym] = e
    return tok, med, syms
