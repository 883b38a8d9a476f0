"""Gene vocabularies: token ids, gene medians and symbol <-> Ensembl ID mapping.

A Geneformer model is always used together with three dictionaries:

* the **token dictionary** (Ensembl gene ID -> token id, plus special tokens such as ``<pad>``),
* the **gene median dictionary** (Ensembl gene ID -> the gene's non-zero median expression across
  the pretraining corpus; the tokenizer divides by it),
* the **gene name dictionary** (gene symbol -> Ensembl gene ID), only for convenience.

:class:`GeneVocab` holds all three. It reads plain-text exports (TSV/JSON) or, where only pickles
exist, reads them through a *restricted* unpickler that refuses anything but plain dictionaries of
numbers and strings (a pickle can otherwise run arbitrary code when it is loaded).

Examples
--------
>>> vocab = GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2},
...                              {"ENSG00000141510": 2.5}, {"TP53": "ENSG00000141510"})
>>> vocab.version, len(vocab), vocab.tokens(["TP53"]), vocab.symbols([2])
('V1', 3, [2], ['TP53'])
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from ._utils import CourseInputError

__all__ = [
    "GENEFORMER_REPO",
    "GENEFORMER_REVISION",
    "HUB_DICTIONARIES",
    "V1_HUB_FILES",
    "V2_HUB_FILES",
    "GeneVocab",
    "check_not_lfs_pointer",
    "close_matches",
    "hub_download",
    "safe_load_pickle",
]

#: Hugging Face repository of the reference Geneformer models and dictionaries.
GENEFORMER_REPO = "ctheodoris/Geneformer"
#: Pinned revision (upstream commit) of :data:`GENEFORMER_REPO` used for every download. The
#: models and dictionaries are identical at every upstream commit from ``ff551ee4`` (2025-06-27)
#: to this one (2026-02-06, "Update geneformer/mtl/train.py (#582)"). Pass ``revision="main"``
#: for the newest files.
GENEFORMER_REVISION = "05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28"
#: Files of the V1 (gc30M) dictionaries inside :data:`GENEFORMER_REPO`.
V1_HUB_FILES = {
    "token_dictionary": "geneformer/gene_dictionaries_30m/token_dictionary_gc30M.pkl",
    "gene_medians": "geneformer/gene_dictionaries_30m/gene_median_dictionary_gc30M.pkl",
    "gene_names": "geneformer/gene_dictionaries_30m/gene_name_id_dict_gc30M.pkl",
    "ensembl_mapping": "geneformer/gene_dictionaries_30m/ensembl_mapping_dict_gc30M.pkl",
}
#: Files of the V2 (gc104M) dictionaries inside :data:`GENEFORMER_REPO`.
V2_HUB_FILES = {
    "token_dictionary": "geneformer/token_dictionary_gc104M.pkl",
    "gene_medians": "geneformer/gene_median_dictionary_gc104M.pkl",
    "gene_names": "geneformer/gene_name_id_dict_gc104M.pkl",
    "ensembl_mapping": "geneformer/ensembl_mapping_dict_gc104M.pkl",
}
#: Dictionary files per model version.
HUB_DICTIONARIES = {"V1": V1_HUB_FILES, "V2": V2_HUB_FILES}
#: Plain-text exports of the V1 dictionaries (preferred over the pickles when both are present).
V1_TSV_FILES = {"vocab": "vocab_gc30M.tsv", "gene_names": "gene_name_id_gc30M.tsv"}
V1_PKL_FILES = {k: v.rsplit("/", 1)[-1] for k, v in V1_HUB_FILES.items()}
V2_PKL_FILES = {k: v.rsplit("/", 1)[-1] for k, v in V2_HUB_FILES.items()}
#: Suffix of the V2 dictionaries in clones from before 2025-06-18 (byte-identical to gc104M).
V2_LEGACY_SUFFIX = "gc95M"
#: First line of a git-lfs pointer file (what a clone without git-lfs holds instead of the data).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"

TSV_COLUMNS = ("ensembl_id", "token_id", "gene_median", "gene_symbols")
SPECIAL_TOKENS = ("<pad>", "<mask>", "<cls>", "<eos>")

_TEACHING_VOCAB = Path(__file__).resolve().parent / "assets" / "teaching_model" / "vocab.tsv"
_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G[R]?\d{6,}$")
_VERSIONED_RE = re.compile(r"^(ENS[A-Z]*G[R]?\d{6,})\.\d+(_PAR_Y)?$")


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------
def _numpy_scalar():
    try:  # numpy >= 2
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


def _latin1_encode(text, encoding="latin1"):
    """The only use of ``_codecs.encode`` a protocol-2 pickle of numpy scalars makes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CourseInputError(
            "A pickled dictionary asked to encode something other than latin-1 text; it was NOT "
            "loaded. Fix: use the plain-text (TSV/JSON) export of the dictionary."
        )
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals plain numpy-scalar dictionaries need.

    Admitted: ``numpy.dtype`` and ``numpy[._]core.multiarray.scalar`` (numpy integer and float
    scalars as values, any pickle protocol) and ``_codecs.encode`` restricted to latin-1 text
    (protocol 2 stores the scalars' bytes that way). Python ints, floats and strings need no
    globals. Everything else is refused before it can run.
    """

    _ALLOWED: ClassVar[frozenset] = frozenset(
        {
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            if name == "dtype":
                return np.dtype
            if name == "encode":
                return _latin1_encode
            return _numpy_scalar()
        raise CourseInputError(
            f"{self._source} is not a plain dictionary file and may be unsafe: it asks to load "
            f"'{module}.{name}', which a dictionary of gene IDs and numbers never needs. "
            "It was NOT loaded. Fix: use the plain-text (TSV/JSON) export of the dictionary, or "
            "check the file's origin and SHA-256 checksum before using it."
        )

    def persistent_load(self, pid):  # pragma: no cover - plain dict pickles have none
        raise CourseInputError(
            f"{self._source} is not a plain dictionary file and may be unsafe (persistent ids). "
            "It was NOT loaded. Fix: use the plain-text (TSV/JSON) export of the dictionary."
        )


def check_not_lfs_pointer(path, what: str = "file") -> None:
    r"""Raise :class:`CourseInputError` if ``path`` is a git-lfs pointer instead of real data.

    A clone of the Geneformer repository made without git-lfs holds small text files whose first
    line is ``version https://git-lfs.github.com/spec/v1`` in place of every ``.pkl`` and weight
    file. Reading them fails with baffling errors (``invalid load key 'v'``, "header too
    large"); this check names the real cause.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "token_dictionary_gc104M.pkl")
    >>> with open(p, "w") as f:
    ...     _ = f.write("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 425590\n")
    >>> check_not_lfs_pointer(p)
    Traceback (most recent call last):
    ...
    course_helpers._utils.CourseInputError: ... is a git-lfs pointer file ...
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return
    if not head.startswith(LFS_POINTER_PREFIX):
        return
    size = re.search(rb"size (\d+)", head)
    real = f" (the real {what} has {int(size.group(1)):,} bytes)" if size else ""
    raise CourseInputError(
        f"{path} is a git-lfs pointer file ({path.stat().st_size} bytes of text starting with "
        f"'version https://git-lfs.github.com/spec/v1'), not the {what} itself{real}: the "
        "repository was cloned without git-lfs, so every .pkl and weight file is such a "
        "pointer. Fix: install git-lfs and fetch the real files inside the clone: "
        "`git lfs install` then `git lfs pull` (or download with load_model(<name>) / "
        "GeneVocab.geneformer_v1() / GeneVocab.geneformer_v2(), which use the Hugging Face Hub)."
    )


def safe_load_pickle(path) -> dict:
    """Read a pickled dictionary with a restricted unpickler.

    Values may be Python ints, floats and strings or numpy integer/float scalars (as the V1 and
    V2 Geneformer dictionaries use): only ``numpy.dtype``, ``numpy.core.multiarray.scalar``
    (``numpy._core.multiarray.scalar``) and latin-1 ``_codecs.encode`` may be referenced;
    anything else (functions, classes, arrays, ``os.system`` ...) raises
    :class:`~course_helpers._utils.CourseInputError` before it can run. A git-lfs pointer file
    in place of the pickle gets its own message (:func:`check_not_lfs_pointer`).

    Parameters
    ----------
    path
        Path of a ``.pkl`` file holding one dictionary.

    Returns
    -------
    dict
        The dictionary, exactly as pickled (numpy scalars stay numpy scalars).

    Examples
    --------
    >>> import pickle, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "d.pkl")
    >>> with open(p, "wb") as f:
    ...     pickle.dump({"ENSG00000141510": 2}, f)
    >>> safe_load_pickle(p)
    {'ENSG00000141510': 2}
    """
    path = Path(path)
    if not path.is_file():
        raise CourseInputError(f"Dictionary file not found: {path}. Fix: check the path.")
    check_not_lfs_pointer(path, "dictionary")
    with open(path, "rb") as f:
        try:
            obj = _RestrictedUnpickler(f, source=str(path)).load()
        except CourseInputError:
            raise
        except Exception as e:  # truncated / not a pickle at all
            raise CourseInputError(
                f"Could not read {path} as a pickled dictionary ({type(e).__name__}: {e}). "
                "Fix: check that the file is complete, or use its TSV/JSON export."
            ) from e
    if not isinstance(obj, dict):
        raise CourseInputError(
            f"{path} holds a {type(obj).__name__}, not a dictionary. Fix: pass the token, "
            "median or gene-name dictionary file."
        )
    return obj


# --------------------------------------------------------------------------------------------
# Plain-text readers
# --------------------------------------------------------------------------------------------
def _read_rows(path: Path) -> list[list[str]]:
    delim = "," if path.suffix.lower() == ".csv" else "\t"
    with open(path, encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f, delimiter=delim, quoting=csv.QUOTE_NONE) if row]


def _read_mapping(source, kind: str) -> dict:
    """Read one dictionary (``kind`` in token/median/names) from a mapping or a file."""
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
    return bool(_ENSEMBL_RE.match(s))


def _strip_version(s: str) -> str:
    m = _VERSIONED_RE.match(s)
    return m.group(1) if m else s


# --------------------------------------------------------------------------------------------
# Fuzzy name matching (the ONE rule for "did you mean ...?")
# --------------------------------------------------------------------------------------------
#: Smallest :func:`difflib.SequenceMatcher` ratio (on upper-cased names) of a suggestion.
SUGGEST_CUTOFF = 0.6


def close_matches(word, choices, n: int = 4) -> list[str]:
    """Names from ``choices`` that ``word`` probably meant, best first (at most ``n``).

    The one fuzzy rule of the course (gene names, cell types, states): first a match that differs
    only in case, then the closest names by :func:`difflib.get_close_matches` on upper-cased
    text (ratio >= :data:`SUGGEST_CUTOFF`), then names that start with ``word`` (when it has at
    least three characters: completions of a partly typed name).

    Parameters
    ----------
    word
        What was typed.
    choices
        The valid names.
    n
        At most this many suggestions.

    Returns
    -------
    list of str
        Unique names from ``choices`` (their own spelling); empty if nothing is close.

    Examples
    --------
    >>> close_matches("fibroblst", ["fibroblast", "endothelial", "cardiomyocyte"])
    ['fibroblast']
    >>> close_matches("cd79ax", ["CD79A", "CD79B", "TP53"])
    ['CD79A', 'CD79B']
    >>> close_matches("XYZ", ["CD79A"])
    []
    """
    word = str(word)
    n = int(n)
    if n < 1 or not word:
        return []
    up: dict[str, str] = {}
    for c in choices:
        up.setdefault(str(c).upper(), str(c))
    key = word.upper()
    out = [up[key]] if key in up and up[key] != word else []
    out += [up[m] for m in difflib.get_close_matches(key, list(up), n=n + 1, cutoff=SUGGEST_CUTOFF)]
    if len(word) >= 3:
        out += [c for u, c in up.items() if u.startswith(key)][:n + 1]
    return [c for c in dict.fromkeys(out) if c != word][:n]


# --------------------------------------------------------------------------------------------
# GeneVocab
# --------------------------------------------------------------------------------------------
class GeneVocab:
    """Token dictionary, gene medians and gene-name dictionary of one Geneformer model.

    Build it with one of the constructors (:meth:`geneformer_v1`, :meth:`teaching`,
    :meth:`from_tsv`, :meth:`from_files`, :meth:`from_dicts`) rather than directly.

    Attributes
    ----------
    token_to_id : dict[str, int]
        Ensembl ID (or special token such as ``"<pad>"``) -> token id.
    id_to_token : dict[int, str]
        The inverse of ``token_to_id``.
    medians : dict[str, float]
        Ensembl ID -> the gene's non-zero median expression in the pretraining corpus.
    symbol_to_id : dict[str, str]
        Gene symbol -> Ensembl ID (may include IDs that are not in the vocabulary).
    id_to_symbol : dict[str, str]
        Ensembl ID -> gene symbol (the first symbol if several map to one ID).
    pad_token_id, mask_token_id, cls_token_id, eos_token_id : int or None
        Special token ids as found in the dictionary (``None`` where absent; V1 has no
        ``<cls>``/``<eos>``).
    version : str
        ``"V1"`` if the dictionary has no ``<cls>`` token, else ``"V2"``.
    ensembl_mapping : dict[str, str] or None
        The version's Ensembl ID mapping dictionary (``ensembl_mapping_dict_gc30M.pkl`` /
        ``_gc104M.pkl``: input Ensembl ID -> vocabulary Ensembl ID, only entries whose target is
        a gene token), when it was loaded; :func:`course_helpers.tokenize.tokenize` then maps
        input IDs through it and sums IDs that land on the same gene, as the reference does.

    Examples
    --------
    >>> vocab = GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2},
    ...                              {"ENSG00000141510": 2.5}, {"TP53": "ENSG00000141510"})
    >>> vocab.pad_token_id, vocab.cls_token_id, vocab.medians["ENSG00000141510"]
    (0, None, 2.5)
    """

    def __init__(
        self,
        token_to_id: Mapping[str, int],
        medians: Mapping[str, float],
        symbol_to_id: Mapping[str, str] | None = None,
        *,
        name: str = "custom",
        ensembl_mapping: Mapping[str, str] | None = None,
    ):
        tok: dict[str, int] = {}
        for k, v in token_to_id.items():
            tok[str(k)] = _as_int(v, k)
        if not tok:
            raise CourseInputError(
                "The token dictionary is empty. Fix: pass a non-empty dictionary."
            )
        id_to_token: dict[int, str] = {}
        for k, i in tok.items():
            if i < 0:
                raise CourseInputError(
                    f"Token id of {k!r} is negative ({i}). Token ids must be >= 0."
                )
            if i in id_to_token:
                raise CourseInputError(
                    f"Token id {i} is used twice ({id_to_token[i]!r} and {k!r}). "
                    "Fix: each token needs its own id."
                )
            id_to_token[i] = k
        med: dict[str, float] = {}
        bad = []
        for k, v in medians.items():
            k = str(k)
            if k not in tok:
                continue  # medians of genes without a token are never used
            try:
                f = float(v)
            except (TypeError, ValueError):
                bad.append((k, v))
                continue
            if not (math.isfinite(f) and f > 0):
                bad.append((k, v))
                continue
            med[k] = f
        if bad:
            raise CourseInputError(
                f"{len(bad)} gene medians are not positive finite numbers (e.g. {bad[0][0]}: "
                f"{bad[0][1]!r}). The tokenizer divides by them. Fix: use the gene median "
                "dictionary that belongs to this token dictionary."
            )
        genes = [k for k in tok if not self._is_special(k)]
        missing = [g for g in genes if g not in med]
        if missing and len(missing) == len(genes):
            raise CourseInputError(
                "None of the genes in the token dictionary has a median in the gene median "
                f"dictionary (e.g. {missing[0]}). Fix: pass the median dictionary that belongs to "
                "this token dictionary (same model version)."
            )
        self.token_to_id = tok
        self.id_to_token = dict(sorted(id_to_token.items()))
        # keep medians in token order for a stable, readable layout
        self.medians = {k: med[k] for k in tok if k in med}
        self.symbol_to_id = {str(s): str(e) for s, e in (symbol_to_id or {}).items()}
        self.id_to_symbol: dict[str, str] = {}
        for s, e in self.symbol_to_id.items():
            self.id_to_symbol.setdefault(e, s)
        self.name = name
        self.genes_without_median = missing
        # Ensembl ID -> Ensembl ID of the vocabulary (the reference's ensembl_mapping_dict), kept
        # only where the target is a gene token, as the reference tokenizer does.
        self.ensembl_mapping: dict[str, str] | None = None
        if ensembl_mapping is not None:
            self.ensembl_mapping = {
                str(k): str(v) for k, v in ensembl_mapping.items() if str(v) in self.medians
            }

    # -- special tokens ----------------------------------------------------------------------
    @staticmethod
    def _is_special(token: str) -> bool:
        return token.startswith("<") and token.endswith(">")

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special tokens (``<...>``) present in the dictionary, with their ids."""
        return {k: v for k, v in self.token_to_id.items() if self._is_special(k)}

    @property
    def pad_token_id(self) -> int | None:
        return self.token_to_id.get("<pad>")

    @property
    def mask_token_id(self) -> int | None:
        return self.token_to_id.get("<mask>")

    @property
    def cls_token_id(self) -> int | None:
        return self.token_to_id.get("<cls>")

    @property
    def eos_token_id(self) -> int | None:
        return self.token_to_id.get("<eos>")

    @property
    def version(self) -> str:
        """``"V1"`` (no ``<cls>`` token) or ``"V2"``."""
        return "V2" if "<cls>" in self.token_to_id else "V1"

    @property
    def genes(self) -> list[str]:
        """Ensembl IDs of the gene tokens, in token-id order."""
        return [t for t in self.id_to_token.values() if not self._is_special(t)]

    def __len__(self) -> int:
        return len(self.token_to_id)

    def __contains__(self, gene) -> bool:
        return gene in self.token_to_id

    def __repr__(self) -> str:
        return (
            f"GeneVocab(name={self.name!r}, version={self.version!r}, tokens={len(self)}, "
            f"genes_with_median={len(self.medians)}, symbols={len(self.symbol_to_id)})"
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, GeneVocab):
            return NotImplemented
        return (
            self.token_to_id == other.token_to_id
            and self.medians == other.medians
            and self.symbol_to_id == other.symbol_to_id
        )

    # -- look-ups ----------------------------------------------------------------------------
    def symbols(self, token_ids: Iterable[int]) -> list[str]:
        """Gene symbols of token ids (the Ensembl ID where a gene has no symbol).

        Special tokens come back as themselves (``"<pad>"``).

        Parameters
        ----------
        token_ids
            Token ids (list, numpy array or 1-D tensor).

        Returns
        -------
        list of str

        Examples
        --------
        >>> vocab = GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2,
        ...                               "ENSG00000000003": 3}, {"ENSG00000141510": 2.5,
        ...                               "ENSG00000000003": 1.0}, {"TP53": "ENSG00000141510"})
        >>> vocab.symbols([2, 3, 0])
        ['TP53', 'ENSG00000000003', '<pad>']
        """
        if isinstance(token_ids, (int, np.integer)):
            token_ids = [token_ids]
        out = []
        for t in token_ids:
            try:
                tok = self.id_to_token[int(t)]
            except (KeyError, TypeError, ValueError):
                raise CourseInputError(
                    f"Token id {t!r} is not in this vocabulary (ids {min(self.id_to_token)}–"
                    f"{max(self.id_to_token)}). Fix: use ids produced with the same vocabulary."
                ) from None
            out.append(self.id_to_symbol.get(tok, tok))
        return out

    def _resolve(self, gene: str) -> str | None:
        """Ensembl ID in the vocabulary for a symbol or Ensembl ID, or None."""
        if gene in self.token_to_id:
            return gene
        stripped = _strip_version(gene)
        if stripped in self.token_to_id:
            return stripped
        e = self.symbol_to_id.get(gene)
        if e is None:
            e = self.symbol_to_id.get(gene.upper())
        if e is not None and e in self.token_to_id:
            return e
        return None

    def tokens(self, genes) -> list[int]:
        """Token ids of genes given as symbols or Ensembl IDs.

        Parameters
        ----------
        genes
            A gene or a list of genes; each a symbol (``"TP53"``) or an Ensembl ID
            (``"ENSG00000141510"``, version suffixes such as ``.17`` are ignored).

        Returns
        -------
        list of int

        Raises
        ------
        CourseInputError
            If a gene is not in the vocabulary.

        Examples
        --------
        >>> vocab = GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2},
        ...                              {"ENSG00000141510": 2.5}, {"TP53": "ENSG00000141510"})
        >>> vocab.tokens(["TP53", "ENSG00000141510.17"])
        [2, 2]
        """
        if isinstance(genes, str):
            genes = [genes]
        out, unknown = [], []
        for g in genes:
            e = self._resolve(str(g))
            if e is None:
                unknown.append(g)
            else:
                out.append(self.token_to_id[e])
        if unknown:
            raise CourseInputError(
                f"{len(unknown)} gene(s) not in the {self.name} vocabulary: "
                f"{', '.join(map(str, unknown[:5]))}{' ...' if len(unknown) > 5 else ''}. "
                "Fix: check the spelling (human symbols are upper case), use Ensembl IDs, or "
                "pick genes that the model knows (see vocab.genes)."
            )
        return out

    def _names(self, ensembl: bool) -> list[str]:
        """Gene symbols (``ensembl=False``) or Ensembl IDs of the gene tokens (cached)."""
        cache = self.__dict__.setdefault("_name_cache", {})
        if ensembl not in cache:
            if ensembl:
                cache[ensembl] = self.genes
            else:
                cache[ensembl] = [s for s, e in self.symbol_to_id.items()
                                  if e in self.token_to_id and not self._is_special(e)]
        return cache[ensembl]

    def suggest(self, name, n: int = 4) -> list[str]:
        """Gene names of this vocabulary that ``name`` probably meant (the "did you mean" list).

        Symbols are compared with symbols and Ensembl IDs with Ensembl IDs, by
        :func:`close_matches` (the course's one fuzzy rule).

        Parameters
        ----------
        name
            A gene symbol or Ensembl ID that was not found.
        n
            At most this many suggestions.

        Returns
        -------
        list of str

        Examples
        --------
        >>> vocab = GeneVocab.teaching()
        >>> vocab.suggest("VWFX")
        ['VWF']
        >>> vocab.suggest("gata3")
        ['GATA3', 'GATA4', 'SPATA13', 'GGA3']
        """
        name = str(name)
        ensembl = _looks_ensembl(_strip_version(name)) or not self.symbol_to_id
        return close_matches(name, self._names(ensembl), n)

    def _token_of_name(self, name: str) -> int | None:
        """Token id of a symbol or Ensembl ID: exact first, then upper case, then any case."""
        e = self._resolve(name)
        if e is None:
            folded = self.__dict__.get("_casefold")
            if folded is None:
                folded = {}
                for s, g in self.symbol_to_id.items():
                    if g in self.token_to_id:
                        folded.setdefault(s.casefold(), g)
                self._casefold = folded
            e = folded.get(name.casefold())
        return None if e is None else self.token_to_id[e]

    def resolve(self, genes, *, argname: str = "genes") -> list[int]:
        """Token ids of genes given as symbols, Ensembl IDs or token ids (the one gene lookup).

        Symbols match exactly first, then in any case (``"gata3"`` finds ``GATA3``); Ensembl IDs
        may carry a version suffix (``.17``); integers are token ids. The result keeps the given
        order and drops repeats. Special tokens (``<pad>``, ``<cls>`` ...) and ids the vocabulary
        does not hold are refused; unknown names raise an error that suggests close names
        (:meth:`suggest`).

        Parameters
        ----------
        genes
            One gene or a list of genes.
        argname
            Name of the argument the genes came from, for error messages.

        Returns
        -------
        list of int

        Raises
        ------
        CourseInputError
            Empty input, unknown names ("did you mean ...?"), special or unknown token ids,
            or items that are neither names nor ids.

        Examples
        --------
        >>> vocab = GeneVocab.teaching()
        >>> vocab.resolve(["VWF", "gata3", "ENSG00000110799.4", 5])
        [439, 391, 5]
        >>> vocab.resolve("VWFX")
        Traceback (most recent call last):
        ...
        course_helpers._utils.CourseInputError: Unknown gene(s) in genes, ... 'VWFX': did you mean 'VWF'? ...
        """
        if isinstance(genes, (str, int, np.integer)):
            genes = [genes]
        try:
            genes = list(genes)
        except TypeError as err:
            raise CourseInputError(
                f"{argname} must be a gene or a list of gene symbols, Ensembl IDs or token ids, "
                f"not {type(genes).__name__}."
            ) from err
        if not genes:
            raise CourseInputError(
                f"{argname} is empty. Fix: pass at least one gene symbol, Ensembl ID or token id."
            )
        specials = set(self.special_tokens.values())
        tokens: list[int] = []
        unknown: list[str] = []
        bad_ids: list[int] = []
        for g in genes:
            if isinstance(g, (bool, np.bool_)):
                raise CourseInputError(
                    f"{argname} holds a boolean ({g!r}); pass gene names or token ids."
                )
            if isinstance(g, (int, np.integer)):
                t = int(g)
                (bad_ids if t not in self.id_to_token or t in specials else tokens).append(t)
            elif isinstance(g, str):
                t = self._token_of_name(g)
                if t is None:
                    unknown.append(g)
                else:
                    (bad_ids if t in specials else tokens).append(t)
            else:
                raise CourseInputError(
                    f"{argname} holds {g!r} ({type(g).__name__}); pass gene symbols, Ensembl "
                    "IDs or token ids."
                )
        if unknown:
            hints = []
            for g in unknown[:5]:
                sugg = self.suggest(g)
                if sugg:
                    hints.append(f"{g!r}: did you mean {', '.join(map(repr, sugg))}?")
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise CourseInputError(
                f"Unknown gene(s) in {argname}, not in the model's vocabulary: {unknown[:5]!r}"
                f"{more} (vocabulary {self.name!r}).{' ' + ' '.join(hints) if hints else ''} "
                "Fix: check the spelling (human symbols are upper case), use the Ensembl ID, or "
                "pick genes the model knows (vocab.genes)."
            )
        if bad_ids:
            raise CourseInputError(
                f"Token id(s) {bad_ids[:5]} in {argname} are not gene tokens of this vocabulary "
                f"(valid: {min(self.id_to_token)}..{max(self.id_to_token)}, excluding special "
                f"tokens {sorted(specials)}). Fix: pass gene symbols or Ensembl IDs, or token "
                "ids from model.gene_vocab."
            )
        return list(dict.fromkeys(tokens))

    def map_symbols(self, symbols: Iterable[str]) -> list[str | None]:
        """Map gene symbols to Ensembl IDs with the gene-name dictionary.

        Ensembl IDs pass through (without version suffix). Unknown symbols give ``None``.
        The returned ID may lie outside the token vocabulary (the name dictionary is larger).

        Examples
        --------
        >>> vocab = GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2},
        ...                              {"ENSG00000141510": 2.5}, {"TP53": "ENSG00000141510"})
        >>> vocab.map_symbols(["TP53", "NOTAGENE", "ENSG00000141510.3"])
        ['ENSG00000141510', None, 'ENSG00000141510']
        """
        if isinstance(symbols, str):
            symbols = [symbols]
        out: list[str | None] = []
        for s in symbols:
            s = str(s)
            st = _strip_version(s)
            if _looks_ensembl(st):
                out.append(st)
                continue
            e = self.symbol_to_id.get(s)
            if e is None:
                e = self.symbol_to_id.get(s.upper())
            out.append(e)
        return out

    # -- writers -----------------------------------------------------------------------------
    def to_tsv(self, path) -> Path:
        """Write the vocabulary as one TSV (``ensembl_id, token_id, gene_median, gene_symbols``).

        Rows are ordered by token id; medians are written as the shortest decimal that reads
        back to the identical float64; special tokens have an empty median. Gene symbols that
        map to the same ID are joined with commas. (Symbols whose ID is not in the vocabulary
        are not written; keep the full name dictionary separately if you need them.)

        Examples
        --------
        >>> import tempfile, os
        >>> vocab = GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2},
        ...                              {"ENSG00000141510": 2.5}, {"TP53": "ENSG00000141510"})
        >>> p = vocab.to_tsv(os.path.join(tempfile.mkdtemp(), "vocab.tsv"))
        >>> GeneVocab.from_tsv(p) == vocab
        True
        """
        path = Path(path)
        syms: dict[str, list[str]] = {}
        for s, e in self.symbol_to_id.items():
            if e in self.token_to_id:
                syms.setdefault(e, []).append(s)
        buf = io.StringIO()
        buf.write("\t".join(TSV_COLUMNS) + "\n")
        for i, tok in self.id_to_token.items():
            m = self.medians.get(tok)
            buf.write(
                f"{tok}\t{i}\t{'' if m is None else repr(m)}\t{','.join(syms.get(tok, []))}\n"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(buf.getvalue())
        return path

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_dicts(
        cls, token_dictionary, gene_medians, gene_names=None, *, name="custom",
        ensembl_mapping=None,
    ) -> GeneVocab:
        """Build a vocabulary from in-memory dictionaries.

        Examples
        --------
        >>> GeneVocab.from_dicts({"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3,
        ...                       "ENSG00000141510": 4}, {"ENSG00000141510": 2.5}).version
        'V2'
        """
        return cls(token_dictionary, gene_medians, gene_names, name=name,
                   ensembl_mapping=ensembl_mapping)

    @classmethod
    def from_files(
        cls, token_dictionary, gene_medians, gene_names=None, *, name=None, ensembl_mapping=None
    ) -> GeneVocab:
        """Load a vocabulary from dictionary files.

        Parameters
        ----------
        token_dictionary, gene_medians, gene_names
            Paths (or already-loaded dicts). Accepted formats: ``.pkl`` (read with a restricted
            unpickler that admits only numpy scalars), ``.json`` (one object), ``.tsv``/``.csv``
            (two columns key/value, or the combined vocab TSV layout, or a ``gene_symbol,
            ensembl_id`` table for the names).
        ensembl_mapping
            Optional Ensembl ID mapping dictionary (path or dict), e.g.
            ``ensembl_mapping_dict_gc30M.pkl``; see :attr:`ensembl_mapping`.

        Examples
        --------
        >>> vocab = GeneVocab.from_files("token_dictionary_gc30M.pkl",  # doctest: +SKIP
        ...                              "gene_median_dictionary_gc30M.pkl",
        ...                              "gene_name_id_dict_gc30M.pkl")
        """
        tok = _read_mapping(token_dictionary, "token")
        med = _read_mapping(gene_medians, "median")
        names = _read_mapping(gene_names, "names") if gene_names is not None else None
        mapping = (
            _read_mapping(ensembl_mapping, "mapping") if ensembl_mapping is not None else None
        )
        if name is None:
            name = (
                Path(token_dictionary).stem
                if not isinstance(token_dictionary, Mapping)
                else "custom"
            )
        return cls(tok, med, names, name=name, ensembl_mapping=mapping)

    @classmethod
    def from_tsv(cls, path, gene_names=None, *, name=None, ensembl_mapping=None) -> GeneVocab:
        """Load the combined TSV (``ensembl_id, token_id, gene_median, gene_symbols``).

        Medians are parsed with Python ``float()``, so they round-trip exactly.

        Parameters
        ----------
        path
            The vocabulary TSV.
        gene_names
            Optional full gene-name dictionary (file or dict: symbol -> Ensembl ID). Without it,
            symbols come from the ``gene_symbols`` column.

        Examples
        --------
        >>> vocab = GeneVocab.from_tsv(  # doctest: +SKIP
        ...     "vocab_gc30M.tsv", "gene_name_id_gc30M.tsv")
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
        if gene_names is not None:
            syms = _read_mapping(gene_names, "names")
        mapping = (
            _read_mapping(ensembl_mapping, "mapping") if ensembl_mapping is not None else None
        )
        return cls(tok, med, syms, name=name or path.stem, ensembl_mapping=mapping)

    @classmethod
    def _from_folder(cls, folder: Path, name: str, version: str = "V1") -> GeneVocab | None:
        """The ``version`` dictionaries in ``folder`` (or in its Hub-layout subfolder)."""
        if version == "V1":
            tsv = folder / V1_TSV_FILES["vocab"]
            mapping = folder / V1_PKL_FILES["ensembl_mapping"]
            mapping = mapping if mapping.is_file() else None
            if tsv.is_file():
                names = folder / V1_TSV_FILES["gene_names"]
                return cls.from_tsv(tsv, names if names.is_file() else None, name=name,
                                    ensembl_mapping=mapping)
            candidates = [V1_PKL_FILES]
            sub = folder / "geneformer" / "gene_dictionaries_30m"
        else:
            legacy = {k: v.replace("gc104M", V2_LEGACY_SUFFIX) for k, v in V2_PKL_FILES.items()}
            candidates = [V2_PKL_FILES, legacy]
            sub = folder / "geneformer"
        for files in candidates:
            pk = {k: folder / v for k, v in files.items()}
            if pk["token_dictionary"].is_file() and pk["gene_medians"].is_file():
                return cls.from_files(
                    pk["token_dictionary"],
                    pk["gene_medians"],
                    pk["gene_names"] if pk["gene_names"].is_file() else None,
                    name=name,
                    ensembl_mapping=(
                        pk["ensembl_mapping"] if pk["ensembl_mapping"].is_file() else None
                    ),
                )
        if sub.is_dir():  # a folder laid out like the Hub repository (a clone)
            return cls._from_folder(sub, name, version)
        return None

    @classmethod
    def _published(cls, version: str, path, revision) -> GeneVocab:
        """Shared body of :meth:`geneformer_v1` and :meth:`geneformer_v2`."""
        name = f"geneformer-{version.lower()}"
        env_var = f"GENEFORMER_{version}_DIR"
        files = HUB_DICTIONARIES[version]
        if version == "V1":
            expected = (f"{V1_TSV_FILES['vocab']} or {V1_PKL_FILES['token_dictionary']} + "
                        f"{V1_PKL_FILES['gene_medians']}")
        else:
            expected = (f"{V2_PKL_FILES['token_dictionary']} + {V2_PKL_FILES['gene_medians']} "
                        f"(or the older *_{V2_LEGACY_SUFFIX}.pkl names)")
        how = (
            f"Fix: pass a local folder holding the {version} dictionaries "
            f"(GeneVocab.geneformer_{version.lower()}('path/to/folder') with {expected}, or the "
            f"root of a clone of {GENEFORMER_REPO} made with git-lfs), or set the environment "
            f"variable {env_var} to such a folder, or use the course's teaching vocabulary "
            "GeneVocab.teaching()."
        )
        if path is not None:
            folder = Path(path).expanduser()
            if folder.is_file():
                folder = folder.parent
            if not folder.is_dir():
                raise CourseInputError(f"Geneformer {version} folder not found: {folder}. {how}")
            v = cls._from_folder(folder, name, version)
            if v is None:
                raise CourseInputError(
                    f"No {version} dictionaries in {folder}: expected {expected}. {how}"
                )
            return v
        env = os.environ.get(env_var)
        if env:
            folder = Path(env).expanduser()
            v = cls._from_folder(folder, name, version) if folder.is_dir() else None
            if v is None:
                raise CourseInputError(
                    f"{env_var}={env} does not hold the {version} dictionaries ({expected}). "
                    f"{how}"
                )
            return v
        root = hub_download(
            list(files.values()),
            revision=revision,
            what=f"the Geneformer {version} dictionaries",
            required=[files["token_dictionary"], files["gene_medians"]],
            fix=how,
        )
        paths = {k: root / f for k, f in files.items()}
        return cls.from_files(
            paths["token_dictionary"],
            paths["gene_medians"],
            paths["gene_names"] if paths["gene_names"].is_file() else None,
            name=name,
            ensembl_mapping=paths["ensembl_mapping"] if paths["ensembl_mapping"].is_file() else None,
        )

    @classmethod
    def geneformer_v1(cls, path=None, *, revision: str | None = None) -> GeneVocab:
        """The Geneformer V1 (gc30M) vocabulary: 25,424 genes plus ``<pad>``/``<mask>``.

        Looks, in order, in

        1. ``path`` (a folder holding ``vocab_gc30M.tsv`` [+ ``gene_name_id_gc30M.tsv``], or the
           ``*_gc30M.pkl`` files, or a clone of the Hub repository; the TSV is preferred),
        2. the folder in the environment variable ``GENEFORMER_V1_DIR``,
        3. the Hugging Face Hub (``ctheodoris/Geneformer`` at ``revision``, default the pinned
           :data:`GENEFORMER_REVISION`, cached by ``huggingface_hub``; pickles are read with
           the restricted unpickler).

        The Ensembl ID mapping dictionary (``ensembl_mapping_dict_gc30M.pkl``) is loaded too
        when it is there (:attr:`ensembl_mapping`).

        Parameters
        ----------
        path
            Local folder, or ``None``.
        revision
            Hub revision (commit, branch or tag) for the download; default the pinned one.

        Raises
        ------
        CourseInputError
            When none of these works, naming the cause (offline, revision or file not found,
            git-lfs pointer files) and how to fix it.

        Examples
        --------
        >>> vocab = GeneVocab.geneformer_v1("../shared/geneformer-v1")  # doctest: +SKIP
        >>> vocab.version, len(vocab)  # doctest: +SKIP
        ('V1', 25426)
        """
        return cls._published("V1", path, revision)

    @classmethod
    def geneformer_v2(cls, path=None, *, revision: str | None = None) -> GeneVocab:
        """The Geneformer V2 (gc104M) vocabulary: 20,271 genes plus ``<pad>``, ``<mask>``,
        ``<cls>``, ``<eos>`` (for the V2-104M and V2-316M models).

        Looks in ``path`` (a folder holding the ``*_gc104M.pkl`` files, or the older
        byte-identical ``*_gc95M.pkl`` names, or a clone of the Hub repository), then the folder
        in ``GENEFORMER_V2_DIR``, then the Hugging Face Hub at ``revision`` (default the pinned
        :data:`GENEFORMER_REVISION`). Otherwise as :meth:`geneformer_v1`.

        Examples
        --------
        >>> vocab = GeneVocab.geneformer_v2()  # needs the Hub the first time  # doctest: +SKIP
        >>> vocab.version, vocab.cls_token_id  # doctest: +SKIP
        ('V2', 2)
        """
        return cls._published("V2", path, revision)

    @classmethod
    def teaching(cls) -> GeneVocab:
        """The vocabulary of the course's teaching model (``assets/teaching_model/vocab.tsv``).

        Examples
        --------
        >>> vocab = GeneVocab.teaching()  # doctest: +SKIP
        >>> vocab.version  # doctest: +SKIP
        'V1'
        """
        if not _TEACHING_VOCAB.is_file():
            raise CourseInputError(
                f"The teaching model is not yet available: {_TEACHING_VOCAB} is missing. Fix: "
                "reinstall course_helpers from the course repository (the file ships with it), "
                "or use GeneVocab.geneformer_v1(...) with the real dictionaries."
            )
        return cls.from_tsv(_TEACHING_VOCAB, name="teaching")


# --------------------------------------------------------------------------------------------
# Hugging Face Hub downloads (one code path for every model and dictionary)
# --------------------------------------------------------------------------------------------
def _download_hub_snapshot(repo_id: str, revision: str, allow_patterns: list[str]) -> Path:
    """Download (or reuse from the cache) the files of ``repo_id`` matching ``allow_patterns``.

    Returns the local folder that mirrors the repository layout. The one place that talks to
    the Hub; tests replace it.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub ships with transformers
        raise CourseInputError(
            "huggingface_hub is not installed, so nothing can be downloaded from the Hub. Fix: "
            "`pip install huggingface_hub`, or use load_model('teaching') / a local folder."
        ) from err
    return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns))


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_error_message(err: BaseException, what: str, revision: str, files: list[str],
                       fix: str = "") -> str:
    """Name the real cause of a failed Hub download (offline, bad revision, missing file ...)."""
    kinds = {c.__name__ for c in type(err).__mro__}
    first = str(err).strip().splitlines()[0][:240] if str(err).strip() else ""
    detail = f"[{type(err).__name__}: {first}]"
    where = f"{GENEFORMER_REPO} at revision {revision}"
    generic = not kinds & {"RevisionNotFoundError", "RepositoryNotFoundError", "EntryNotFoundError"}
    if kinds & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or (generic and _offline_env()):
        if _offline_env():
            cause = (
                "offline mode is on (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1) and these files "
                "are not in the local Hugging Face cache. Fix: unset HF_HUB_OFFLINE and run once "
                "where the Hub is reachable (they are cached after that)"
            )
        else:
            cause = (
                "you appear to be offline: the Hugging Face Hub could not be reached (no "
                "network, a proxy or firewall, or the Hub is down) and the files are not in the "
                "local cache. Fix: run once where "
                "https://huggingface.co is reachable (e.g. Colab) so they are cached"
            )
        cause += "; or use a local copy (see below)."
    elif "RevisionNotFoundError" in kinds:
        cause = (
            f"the revision {revision!r} does not exist in {GENEFORMER_REPO} on the Hugging Face "
            "Hub (a commit of a fork or of a GitHub mirror is not a Hub commit). Fix: use the "
            f"course's pinned revision {GENEFORMER_REVISION[:12]} (the default: leave revision= "
            "out), revision='main' for the newest files, or a commit listed at "
            f"https://huggingface.co/{GENEFORMER_REPO}/commits/main."
        )
    elif "RepositoryNotFoundError" in kinds:
        cause = (
            f"the repository {GENEFORMER_REPO} was not found (renamed, private, or a token "
            "problem). Fix: check https://huggingface.co/" + GENEFORMER_REPO + " in a browser."
        )
    elif kinds & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:  # not Local...
        cause = (
            f"a file was not found at that revision ({', '.join(files[:4])}): the repository's "
            "layout differs there. Fix: use the course's pinned revision (leave revision= out) "
            "or pass a local folder."
        )
    elif kinds & {"ConnectionError", "ConnectError", "TimeoutException", "Timeout",
                  "ConnectTimeout", "ReadTimeout", "gaierror", "URLError", "ProxyError"}:
        cause = (
            "you appear to be offline: the Hugging Face Hub could not be reached (no network, a "
            "proxy or firewall). Fix: "
            "run where https://huggingface.co is reachable, or use a local copy (see below)."
        )
    else:
        cause = "the download failed. Fix: retry; if it keeps failing, use a local copy (below)."
    return f"Could not download {what} from {where}: {cause} {detail}" + (
        f"\n{fix}" if fix else ""
    )


def hub_download(files, *, revision: str | None = None, what: str = "files",
                 required=None, fix: str = "") -> Path:
    """Download (or reuse from the cache) files of :data:`GENEFORMER_REPO`; return the local root.

    ``files`` are repository paths or glob patterns (``"Geneformer-V1-10M/config.json"``). The
    result mirrors the repository layout. Every failure raises
    :class:`~course_helpers._utils.CourseInputError` naming the real cause: offline (or
    ``HF_HUB_OFFLINE``), a revision that does not exist, a file that does not exist at that
    revision (``required`` paths missing after the download), or git-lfs pointers.

    Parameters
    ----------
    files
        Repository paths or patterns to fetch.
    revision
        Commit, branch or tag; default the pinned :data:`GENEFORMER_REVISION`.
    what
        Words for messages (``"model 'geneformer-v1'"``).
    required
        Paths that must exist afterwards (default: every entry of ``files`` without wildcards).
    fix
        Extra advice appended to error messages.

    Examples
    --------
    >>> root = hub_download(list(V1_HUB_FILES.values()), what="the V1 dictionaries")  # doctest: +SKIP
    >>> (root / V1_HUB_FILES["token_dictionary"]).is_file()  # doctest: +SKIP
    True
    """
    rev = revision or GENEFORMER_REVISION
    files = [str(f) for f in files]
    if required is None:
        required = [f for f in files if not any(c in f for c in "*?[")]
    try:
        root = Path(_download_hub_snapshot(GENEFORMER_REPO, rev, files))
    except CourseInputError:
        raise
    except Exception as err:  # network, offline mode, missing revision, ...
        raise CourseInputError(_hub_error_message(err, what, rev, files, fix)) from err
    missing = [f for f in required if not (root / f).is_file()]
    if missing:
        raise CourseInputError(
            f"Could not download {what}: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in {GENEFORMER_REPO} at revision "
            f"{rev} (the repository's layout is different there; upstream renamed its model "
            "folders and dictionaries on 2025-06-18). Fix: use the course's pinned revision "
            f"{GENEFORMER_REVISION[:12]} (leave revision= out), or a local folder."
            + (f"\n{fix}" if fix else "")
        )
    return root
