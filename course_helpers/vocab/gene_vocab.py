"""The :class:`GeneVocab` class: token dictionary, gene medians and gene-name dictionary of one
model, with look-ups (tokens, symbols, resolve, suggest), the TSV writer and the constructors.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .._utils import CourseInputError
from .published import _find_in_folder, _load_published, _load_teaching
from .readers import (
    TSV_COLUMNS,
    _as_int,
    _looks_ensembl,
    _strip_version,
    read_mapping,
    read_vocab_tsv,
)
from .resolve import _group_tokens, _resolve_genes, _suggest_genes


def _special_token_id(token: str) -> property:
    """A read-only property: the id of special ``token`` in the dictionary, or ``None``."""
    return property(lambda self: self.token_to_id.get(token),
                    doc=f"Token id of ``{token}`` (``None`` if the dictionary has none).")


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

    pad_token_id = _special_token_id("<pad>")
    mask_token_id = _special_token_id("<mask>")
    cls_token_id = _special_token_id("<cls>")
    eos_token_id = _special_token_id("<eos>")

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
            One token id per gene, in order (repeats kept). :meth:`resolve` also takes token
            ids, drops repeats and suggests close names for unknown ones.

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
        return _suggest_genes(self, name, n)

    def group(self, name: str) -> list[int]:
        """Token ids of a named gene group: ``"mito"`` (``MT-`` genes) or ``"ribo"`` (``RPL``/``RPS``).

        The groups are :data:`course_helpers.vocab.GENE_GROUPS` (symbol prefixes); the result is
        sorted and may be empty when the vocabulary has none of them.

        Examples
        --------
        >>> vocab = GeneVocab.teaching()
        >>> mito = vocab.group("mito")
        >>> len(mito) > 0, all(s.startswith("MT-") for s in vocab.symbols(mito))
        (True, True)
        >>> vocab.group("mitochondria")
        Traceback (most recent call last):
        ...
        course_helpers._utils.CourseInputError: Unknown gene group 'mitochondria'. Fix: use one of ['mito', 'ribo'], or list the genes.
        """
        return _group_tokens(self, name)

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
            Unique token ids, in the given order.

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
        course_helpers._utils.CourseInputError: Unknown gene(s) ... did you mean 'VWF'? ...
        """
        return _resolve_genes(self, genes, argname=argname)

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
        >>> import os, pickle, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> files = {"token_dictionary_gc30M.pkl": {"<pad>": 0, "<mask>": 1, "ENSG00000141510": 2},
        ...          "gene_median_dictionary_gc30M.pkl": {"ENSG00000141510": 2.5},
        ...          "gene_name_id_dict_gc30M.pkl": {"TP53": "ENSG00000141510"}}
        >>> for name, d in files.items():
        ...     with open(os.path.join(folder, name), "wb") as f:
        ...         pickle.dump(d, f)
        >>> vocab = GeneVocab.from_files(*(os.path.join(folder, n) for n in files))
        >>> vocab.name, vocab.tokens(["TP53"])
        ('token_dictionary_gc30M', [2])
        """
        tok = read_mapping(token_dictionary, "token")
        med = read_mapping(gene_medians, "median")
        names = read_mapping(gene_names, "names") if gene_names is not None else None
        mapping = (
            read_mapping(ensembl_mapping, "mapping") if ensembl_mapping is not None else None
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
        >>> import os, tempfile
        >>> path = GeneVocab.teaching().to_tsv(os.path.join(tempfile.mkdtemp(), "vocab.tsv"))
        >>> vocab = GeneVocab.from_tsv(path)
        >>> vocab.name, len(vocab), vocab.symbols([439])
        ('vocab', 2002, ['VWF'])

        With a separate gene-name dictionary (for the published vocabulary that is
        ``GeneVocab.from_tsv("vocab_gc30M.tsv", "gene_name_id_gc30M.tsv")``), symbols come from
        it; IDs it does not name show as themselves:

        >>> names = os.path.join(os.path.dirname(path), "names.tsv")
        >>> _ = open(names, "w").write("gene_symbol\\tensembl_id\\nVWF\\tENSG00000110799\\n")
        >>> GeneVocab.from_tsv(path, names).symbols([439, 5])
        ['VWF', 'ENSG00000002586']
        """
        path = Path(path)
        tok, med, syms = read_vocab_tsv(path)
        if gene_names is not None:
            syms = read_mapping(gene_names, "names")
        mapping = (
            read_mapping(ensembl_mapping, "mapping") if ensembl_mapping is not None else None
        )
        return cls(tok, med, syms, name=name or path.stem, ensembl_mapping=mapping)

    @classmethod
    def from_folder(cls, folder, version: str = "V1", *,
                    name: str | None = None) -> GeneVocab | None:
        """The ``version`` (``"V1"``/``"V2"``) dictionaries in a local folder, or ``None``.

        The folder may hold the TSV export or the pickles under their published names, or be a
        clone of the Hugging Face repository (the dictionaries in its ``geneformer/`` subfolder).

        Examples
        --------
        >>> import tempfile
        >>> GeneVocab.from_folder(tempfile.mkdtemp()) is None
        True
        """
        name = name or f"geneformer-{version.lower()}"
        return _find_in_folder(cls, Path(folder), name, version)

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

        A folder is searched for the published file names; here one holding the teaching
        vocabulary saved under the V1 TSV name:

        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = GeneVocab.teaching().to_tsv(os.path.join(folder, "vocab_gc30M.tsv"))
        >>> vocab = GeneVocab.geneformer_v1(folder)
        >>> vocab.name, vocab.version, len(vocab)
        ('geneformer-v1', 'V1', 2002)
        """
        return _load_published(cls, "V1", path, revision)

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
        return _load_published(cls, "V2", path, revision)

    @classmethod
    def teaching(cls) -> GeneVocab:
        """The vocabulary of the course's teaching model (``assets/teaching_model/vocab.tsv``).

        Examples
        --------
        >>> vocab = GeneVocab.teaching()
        >>> vocab.version, len(vocab), vocab.tokens(["VWF"])
        ('V1', 2002, [439])
        """
        return _load_teaching(cls)
