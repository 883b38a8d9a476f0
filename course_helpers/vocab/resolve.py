"""Gene lookup with suggestions: :func:`close_matches` (the course's one fuzzy "did you mean" rule)
and the bodies of :meth:`GeneVocab.resolve` / :meth:`GeneVocab.suggest`.
"""

from __future__ import annotations

import difflib

import numpy as np

from .._utils import CourseInputError
from .readers import _looks_ensembl, _strip_version

#: Smallest :func:`difflib.SequenceMatcher` ratio (on upper-cased names) of a suggestion.
SUGGEST_CUTOFF = 0.6

#: Named gene groups, by symbol prefix (upper case): mitochondrially encoded genes and ribosomal
#: proteins, the usual quality-control and attention-sink groups.
GENE_GROUPS = {"mito": ("MT-",), "ribo": ("RPL", "RPS")}


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


def _vocab_names(vocab, ensembl: bool) -> list[str]:
    """Gene symbols (``ensembl=False``) or Ensembl IDs of the gene tokens (cached)."""
    cache = vocab.__dict__.setdefault("_name_cache", {})
    if ensembl not in cache:
        if ensembl:
            cache[ensembl] = vocab.genes
        else:
            cache[ensembl] = [s for s, e in vocab.symbol_to_id.items()
                              if e in vocab.token_to_id and not vocab._is_special(e)]
    return cache[ensembl]


def _suggest_genes(vocab, name, n: int = 4) -> list[str]:
    """Body of :meth:`GeneVocab.suggest` (the one "did you mean" rule for genes)."""
    name = str(name)
    ensembl = _looks_ensembl(_strip_version(name)) or not vocab.symbol_to_id
    return close_matches(name, _vocab_names(vocab, ensembl), n)


def _token_of_name(vocab, name: str) -> int | None:
    """Token id of a symbol or Ensembl ID: exact first, then upper case, then any case."""
    e = vocab._resolve(name)
    if e is None:
        folded = vocab.__dict__.get("_casefold")
        if folded is None:
            folded = {}
            for s, g in vocab.symbol_to_id.items():
                if g in vocab.token_to_id:
                    folded.setdefault(s.casefold(), g)
            vocab._casefold = folded
        e = folded.get(name.casefold())
    return None if e is None else vocab.token_to_id[e]


def _resolve_genes(vocab, genes, *, argname: str = "genes") -> list[int]:
    """Body of :meth:`GeneVocab.resolve` (the one gene lookup)."""
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
    specials = set(vocab.special_tokens.values())
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
            (bad_ids if t not in vocab.id_to_token or t in specials else tokens).append(t)
        elif isinstance(g, str):
            t = _token_of_name(vocab, g)
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
            sugg = _suggest_genes(vocab, g)
            if sugg:
                hints.append(f"{g!r}: did you mean {', '.join(map(repr, sugg))}?")
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise CourseInputError(
            f"Unknown gene(s) in {argname}, not in the model's vocabulary: {unknown[:5]!r}"
            f"{more} (vocabulary {vocab.name!r}).{' ' + ' '.join(hints) if hints else ''} "
            "Fix: check the spelling (human symbols are upper case), use the Ensembl ID, or "
            "pick genes the model knows (vocab.genes)."
        )
    if bad_ids:
        raise CourseInputError(
            f"Token id(s) {bad_ids[:5]} in {argname} are not gene tokens of this vocabulary "
            f"(valid: {min(vocab.id_to_token)}..{max(vocab.id_to_token)}, excluding special "
            f"tokens {sorted(specials)}). Fix: pass gene symbols or Ensembl IDs, or token "
            "ids from model.gene_vocab."
        )
    return list(dict.fromkeys(tokens))


def _group_tokens(vocab, name: str) -> list[int]:
    """Body of :meth:`GeneVocab.group`."""
    if name not in GENE_GROUPS:
        raise CourseInputError(
            f"Unknown gene group {name!r}. Fix: use one of {sorted(GENE_GROUPS)}, or list the "
            "genes."
        )
    ids = list(vocab.id_to_token)
    return sorted(int(i) for i, s in zip(ids, vocab.symbols(ids))
                  if isinstance(s, str) and s.upper().startswith(GENE_GROUPS[name]))
