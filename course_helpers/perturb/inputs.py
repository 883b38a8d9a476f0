"""What the perturbation functions need to know about the model, and their argument checks.

The model's special tokens, input size and hidden size (:class:`_ModelInfo`), gene names to
token ids with suggestions (:func:`_resolve_genes`), token ids to symbols, and the checks of
``perturb_type`` / ``emb_mode`` shared by every public function.
"""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import numpy as np

from .._utils import CourseInputError
from ..model import resolve_layer
from .rule import _check_perturb_type
from .warnings import EmbModeFallbackWarning

_EMB_MODES = ("cls", "cell", "cls_and_gene", "cell_and_gene")


@dataclass
class _ModelInfo:
    model: object
    vocab: object | None
    pad_id: int
    cls_id: int | None
    eos_id: int | None
    specials: np.ndarray  # token ids that are not genes
    vocab_size: int
    max_len: int
    hidden: int
    device: object
    layer: int  # reference emb_layer (0 = last, -1 = second-to-last)


def _model_info(model, emb_layer) -> _ModelInfo:
    import torch

    if not hasattr(model, "config") or not isinstance(model, torch.nn.Module):
        raise CourseInputError(
            f"model must be a transformers BertForMaskedLM (got {type(model).__name__}). Fix: "
            "model = course_helpers.model.load_model('teaching') (or another model name/folder)."
        )
    cfg = model.config
    resolve_layer(model, emb_layer)  # validates the layer, with a helpful message
    vocab = getattr(model, "gene_vocab", None)
    pad_id = getattr(cfg, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(vocab, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    cls_id = getattr(vocab, "cls_token_id", None) if vocab is not None else None
    eos_id = getattr(vocab, "eos_token_id", None) if vocab is not None else None
    mask_id = getattr(vocab, "mask_token_id", None) if vocab is not None else None
    specials = sorted({int(t) for t in (pad_id, cls_id, eos_id, mask_id) if t is not None})
    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        device = torch.device("cpu")
    return _ModelInfo(
        model=model,
        vocab=vocab,
        pad_id=pad_id,
        cls_id=None if cls_id is None else int(cls_id),
        eos_id=None if eos_id is None else int(eos_id),
        specials=np.asarray(specials, dtype=np.int64),
        vocab_size=int(cfg.vocab_size),
        max_len=int(getattr(cfg, "max_position_embeddings", 10**9)),
        hidden=int(cfg.hidden_size),
        device=device,
        layer=int(emb_layer),
    )


def _vocab_names(vocab) -> list[str]:
    """Gene symbols and Ensembl IDs that resolve to a token of ``vocab``."""
    tok = getattr(vocab, "token_to_id", None) or {}
    sym = getattr(vocab, "symbol_to_id", None) or {}
    names = [str(s) for s, e in sym.items() if e in tok]
    names += [str(k) for k in tok if not str(k).startswith("<")]
    return list(dict.fromkeys(names))


def _suggest(name: str, vocab) -> list[str]:
    names = _vocab_names(vocab)
    upper = {n.upper(): n for n in names}
    out = []
    if name.upper() in upper:
        out.append(upper[name.upper()])
    out += difflib.get_close_matches(name, names, n=4, cutoff=0.75)
    if len(out) < 3:
        out += [
            upper[m] for m in difflib.get_close_matches(name.upper(), list(upper), n=3, cutoff=0.75)
        ]
    return list(dict.fromkeys(out))[:4]


def _lookup_gene(name: str, vocab) -> int | None:
    tok = getattr(vocab, "token_to_id", {}).get(name)
    if tok is not None:
        return int(tok)
    try:
        found = vocab.tokens([name])
    except (CourseInputError, KeyError, ValueError, TypeError):
        return None
    return int(found[0]) if len(found) else None


def _resolve_genes(genes, info: _ModelInfo, argname: str = "genes") -> list[int]:
    """Token ids of gene symbols / Ensembl IDs / token ids, in the given order, unique."""
    if isinstance(genes, (str, int, np.integer)):
        genes = [genes]
    try:
        genes = list(genes)
    except TypeError as err:
        raise CourseInputError(
            f"{argname} must be 'all' or a list of gene symbols, Ensembl IDs or token ids, not "
            f"{type(genes).__name__}."
        ) from err
    if not genes:
        raise CourseInputError(
            f"{argname} is empty. Fix: pass at least one gene symbol, Ensembl ID or token id "
            "(or genes='all')."
        )
    tokens: list[int] = []
    unknown: list[str] = []
    bad_ids: list[int] = []
    for g in genes:
        if isinstance(g, (bool, np.bool_)):
            raise CourseInputError(f"{argname} holds a boolean ({g!r}); pass gene names or ids.")
        if isinstance(g, (int, np.integer)):
            t = int(g)
            if not 0 <= t < info.vocab_size or t in set(info.specials.tolist()):
                bad_ids.append(t)
            else:
                tokens.append(t)
        elif isinstance(g, str):
            if info.vocab is None:
                raise CourseInputError(
                    f"Gene {g!r} is a name, but this model has no gene vocabulary attached "
                    "(model.gene_vocab), so names cannot be translated into tokens. Fix: load the "
                    "model with course_helpers.model.load_model(...), or pass token ids."
                )
            t = _lookup_gene(g, info.vocab)
            if t is None:
                unknown.append(g)
            elif t in set(info.specials.tolist()):
                bad_ids.append(t)
            else:
                tokens.append(t)
        else:
            raise CourseInputError(
                f"{argname} holds {g!r} ({type(g).__name__}); pass gene symbols, Ensembl IDs or "
                "token ids."
            )
    if unknown:
        parts = []
        for g in unknown[:5]:
            sugg = _suggest(g, info.vocab)
            hint = f" (did you mean {', '.join(repr(s) for s in sugg)}?)" if sugg else ""
            parts.append(f"{g!r}{hint}")
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise CourseInputError(
            f"Unknown gene(s) in {argname}: {'; '.join(parts)}{more}. They are not in the "
            "model's vocabulary. Fix: check the spelling (human symbols are upper case), or use the "
            "Ensembl ID."
        )
    if bad_ids:
        raise CourseInputError(
            f"Token id(s) {bad_ids[:5]} in {argname} are not gene tokens of this model (valid: "
            f"0..{info.vocab_size - 1}, excluding special tokens {info.specials.tolist()}). "
            "Fix: pass gene symbols or Ensembl IDs, or token ids from model.gene_vocab."
        )
    return list(dict.fromkeys(tokens))


def _symbols(tokens, vocab) -> list[str] | None:
    if vocab is None or not hasattr(vocab, "symbols"):
        return None
    tokens = np.asarray(tokens, dtype=np.int64)
    uniq, inv = np.unique(tokens, return_inverse=True)
    names = np.asarray(list(vocab.symbols([int(t) for t in uniq])), dtype=object)
    return names[inv].tolist()


def _check_common(perturb_type, emb_mode):
    _check_perturb_type(perturb_type)
    if emb_mode is not None and emb_mode not in _EMB_MODES:
        raise CourseInputError(
            f"emb_mode={emb_mode!r} is not supported. Fix: use 'cell' (the mean of the gene "
            "embeddings), 'cls' (the <cls> embedding, V2 models), or 'cell_and_gene' / "
            "'cls_and_gene' (the same, plus the change of every other gene's embedding); or "
            "leave it out for the reference default ('cls' for V2, 'cell' for V1)."
        )


def _resolve_emb_mode(emb_mode, info: _ModelInfo) -> str:
    """The reference defaults: ``"cls"`` for models with ``<cls>`` (V2), else ``"cell"``."""
    if emb_mode is None:
        return "cls" if info.cls_id is not None else "cell"
    if emb_mode.startswith("cls") and info.cls_id is None:
        new = emb_mode.replace("cls", "cell")
        warnings.warn(
            EmbModeFallbackWarning(
                f"emb_mode={emb_mode!r} needs a <cls> token, which this model (V1 or the teaching "
                f"model) does not have; using emb_mode={new!r} (the mean of the gene embeddings), "
                "as the reference does.",
                emb_mode,
                new,
            ),
            stacklevel=3,
        )
        return new
    return emb_mode
