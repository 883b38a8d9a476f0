"""Reading a local model folder: ``config.json``, the weights, the matching vocabulary (and the
check that vocabulary and model agree), and building the BERT class the config names."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

from .._utils import CourseInputError, find_stack_level
from ..vocab import (
    GeneVocab,
    check_not_lfs_pointer,
)
from .specs import (
    _V1_DICTIONARIES,
    _V2_DICTIONARIES,
    HUB_REPO,
    KNOWN_MODELS,
    SUPPORTED_ARCHITECTURES,
    V1_VOCAB_SIZE,
    V2_VOCAB_SIZE,
)


def _looks_like_repo_root(folder: Path) -> list[str]:
    """Model folders of a Geneformer repository clone, if ``folder`` is its root."""
    if not (folder / "geneformer").is_dir():
        return []
    subs = [s.subfolder for s in KNOWN_MODELS.values() if (folder / s.subfolder).is_dir()]
    return subs


def _repo_root_message(folder: Path, subs: list[str]) -> str:
    first = next((s for s in subs if s.startswith("Geneformer-V1")), subs[0])
    own = (
        "Its own config.json and model.safetensors are a copy of Geneformer-V2-316M (18 layers, "
        "hidden 1,152, ~316 M parameters, V2 dictionaries), so loading the root would silently "
        "give you the largest V2 model. "
        if (folder / "config.json").is_file() else ""
    )
    return (
        f"{folder} is the root of a clone of the Geneformer repository, not a model folder. "
        f"{own}Fix: pass the folder of the model you want, e.g. "
        f"load_model({str(folder / first)!r}); model folders here: {subs}. (The 316M model is "
        f"load_model({str(folder / 'Geneformer-V2-316M')!r}).)"
    )


def _read_config(folder: Path) -> dict:
    cfg = folder / "config.json"
    subs = _looks_like_repo_root(folder)
    if subs:
        raise CourseInputError(_repo_root_message(folder, subs))
    if not cfg.is_file():
        subs = sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file()) \
            if folder.is_dir() else []
        extra = (
            f" It contains model folders {subs}; pass one of them, e.g. "
            f"load_model({str(folder / subs[0])!r})." if subs else ""
        )
        raise CourseInputError(
            f"{folder} has no config.json, so it is not a model folder.{extra} Fix: point "
            "load_model at a folder saved with model.save_pretrained(...), which holds config.json "
            "and model.safetensors."
        )
    check_not_lfs_pointer(cfg, "config.json")
    try:
        return json.loads(cfg.read_text())
    except ValueError as err:
        raise CourseInputError(f"{cfg} is not valid JSON ({err}). Fix: re-download the model.") \
            from err


def _vocab_from_dictionaries(root: Path, dictionaries: Mapping[str, str]) -> GeneVocab:
    paths = {k: root / v for k, v in dictionaries.items()}
    missing = [str(p) for k, p in paths.items()
               if k not in ("gene_names", "ensembl_mapping") and not p.is_file()]
    if missing:
        raise CourseInputError(
            f"Dictionary file(s) missing: {missing}. Fix: download them together with the model "
            f"(same repository layout as {HUB_REPO}) or pass vocab=GeneVocab.from_tsv(...)."
        )
    names = paths.get("gene_names")
    mapping = paths.get("ensembl_mapping")
    return GeneVocab.from_files(
        paths["token_dictionary"],
        paths["gene_medians"],
        names if names is not None and names.is_file() else None,
        ensembl_mapping=mapping if mapping is not None and mapping.is_file() else None,
    )


def _candidate_vocabs(folder: Path) -> list[tuple[str, callable]]:
    """Vocabulary sources found in or beside a model folder, in order of preference.

    Looks in the folder, its parent and grandparent (a model folder of a clone, or a fine-tuned
    model under ``fine_tuned_models/``), for dictionaries laid out as in the Hub repository, and
    for upstream file names lying directly in the folder (``*_gc30M.pkl``, ``*_gc104M.pkl`` and
    the older, byte-identical ``*_gc95M.pkl``).
    """
    found: list[tuple[str, callable]] = []
    tsv = folder / "vocab.tsv"
    if tsv.is_file():
        found.append((str(tsv), lambda p=tsv: GeneVocab.from_tsv(p)))
    for root in (folder, folder.parent, folder.parent.parent):
        for dicts in (_V1_DICTIONARIES, _V2_DICTIONARIES):
            tok = root / dicts["token_dictionary"]
            if tok.is_file():
                found.append((str(tok), lambda r=root, d=dicts: _vocab_from_dictionaries(r, d)))
    for suffix in ("gc30M", "gc104M", "gc95M"):
        tok = folder / f"token_dictionary_{suffix}.pkl"
        med = folder / f"gene_median_dictionary_{suffix}.pkl"
        if tok.is_file() and med.is_file():
            names = folder / f"gene_name_id_dict_{suffix}.pkl"
            mapping = folder / f"ensembl_mapping_dict_{suffix}.pkl"
            found.append((str(tok), lambda t=tok, m=med, n=names, e=mapping: GeneVocab.from_files(
                t, m, n if n.is_file() else None,
                ensembl_mapping=e if e.is_file() else None)))
    return found


def _resolve_vocab_arg(vocab) -> GeneVocab:
    if isinstance(vocab, GeneVocab):
        return vocab
    path = Path(vocab).expanduser()
    if path.is_file() and path.suffix.lower() in {".tsv", ".txt"}:
        return GeneVocab.from_tsv(path)
    if path.is_dir():
        found = _candidate_vocabs(path)
        if found:
            return found[0][1]()
    raise CourseInputError(
        f"vocab={vocab!r} is neither a GeneVocab, a vocabulary .tsv file, nor a folder with "
        "vocab.tsv or Geneformer dictionary .pkl files. Fix: pass GeneVocab.from_tsv('vocab.tsv')."
    )


def _local_vocab(folder: Path, vocab_size: int) -> GeneVocab:
    found = _candidate_vocabs(folder)
    if not found:
        raise CourseInputError(
            f"No vocabulary found for the model in {folder}: expected vocab.tsv in the folder, or "
            "Geneformer dictionaries laid out as in the Hub repository (e.g. "
            f"{_V1_DICTIONARIES['token_dictionary']} beside the model folder). Fix: pass the "
            "matching vocabulary explicitly, load_model(folder, vocab=GeneVocab.from_tsv(...))."
        )
    first = None
    for _, make in found:
        v = make()
        if first is None:
            first = v
        if len(v) == vocab_size:
            return v
    return first  # mismatch: the consistency check explains it


def check_vocab_matches_model(vocab: GeneVocab, config, source: str = "the model") -> None:
    """Raise :class:`CourseInputError` unless ``vocab`` fits a model with this ``config``.

    The token count must equal ``config.vocab_size``. Mixing V1 dictionaries with a V2 model (or
    the reverse) is the most common Geneformer mistake and gets its own message.

    Examples
    --------
    >>> vocab = GeneVocab.teaching()                          # V1 rules, 2,002 tokens
    >>> check_vocab_matches_model(vocab, {"vocab_size": 2002})   # fits: nothing happens
    >>> check_vocab_matches_model(vocab, {"vocab_size": 20275})  # a V2-sized model
    Traceback (most recent call last):
    ...
    course_helpers._utils.CourseInputError: You are mixing Geneformer dictionaries: ...
    """
    n_vocab = len(vocab)
    n_model = int(getattr(config, "vocab_size", n_vocab) if not isinstance(config, dict)
                  else config.get("vocab_size", n_vocab))
    if n_vocab == n_model:
        return
    version = getattr(vocab, "version", "?")
    model_family = {V1_VOCAB_SIZE: "V1", V2_VOCAB_SIZE: "V2"}.get(n_model)
    if model_family is not None and model_family != version:
        raise CourseInputError(
            f"You are mixing Geneformer dictionaries: the vocabulary is {version} ({n_vocab} "
            f"tokens) but {source} is a {model_family} model ({n_model} tokens). V1 dictionaries "
            "(gc30M) only work with V1 models and V2 dictionaries (gc104M) only with V2 models; "
            "mixing them gives index errors or, worse, silently wrong genes. Fix: load the "
            f"{model_family} dictionaries for this model (and tokenize your cells again with "
            "them), or load a model of the vocabulary's family."
        )
    raise CourseInputError(
        f"The vocabulary has {n_vocab} tokens but {source} expects {n_model} "
        "(config.vocab_size). They do not belong together. Fix: use the vocabulary the model "
        "was trained with (vocab.tsv saved beside it), e.g. load_model(folder, "
        "vocab=GeneVocab.from_tsv('.../vocab.tsv'))."
    )


def _weights_kwargs(folder: Path) -> dict:
    st = sorted(folder.glob("*.safetensors"))
    if st:
        for f in st:
            check_not_lfs_pointer(f, "weight file")
        return {"use_safetensors": True}
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if bins:
        for f in bins:
            check_not_lfs_pointer(f, "weight file")
        warnings.warn(
            f"{folder.name} has only pickle-based PyTorch weights ({bins[0].name}, no "
            ".safetensors); they are read with weights-only loading (torch.load(weights_only="
            "True)), which accepts tensors only and cannot run code from the file. To store a "
            "copy as safetensors: model.save_pretrained(new_folder).",
            UserWarning,
            stacklevel=find_stack_level(),
        )
        return {"use_safetensors": False, "weights_only": True}
    raise CourseInputError(
        f"{folder} has config.json but no weights (model.safetensors or pytorch_model.bin). Fix: "
        "download the weights too, or save the model with model.save_pretrained(folder)."
    )


def _model_class(config: dict, folder: Path):
    import transformers

    archs = config.get("architectures") or ["BertForMaskedLM"]
    arch = str(archs[0])
    if config.get("model_type", "bert") != "bert" or arch not in SUPPORTED_ARCHITECTURES:
        raise CourseInputError(
            f"{folder}/config.json describes a {arch} ({config.get('model_type', '?')}) model; "
            f"load_model builds {', '.join(SUPPORTED_ARCHITECTURES)} (Geneformer's BERT "
            "encoder with a masked-LM, cell-classification or gene-classification head). Fix: "
            "point load_model at a Geneformer model folder."
        )
    return getattr(transformers, arch)


def _load_bert(folder: Path, output_attentions: bool, config: dict | None = None):
    import torch

    model_cls = _model_class(config if config is not None else _read_config(folder), folder)
    kwargs = _weights_kwargs(folder)
    if output_attentions:
        # SDPA/flash attention return no attention weights: only eager attention does.
        kwargs.update(attn_implementation="eager", output_attentions=True)
    from transformers.utils import logging as hf_logging

    # transformers >= 4.5x shows a "Loading weights" bar for every load; it is noise in a
    # notebook. Switch it off for this call only and restore the user's setting.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = model_cls.from_pretrained(str(folder), **kwargs)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if model.dtype != torch.float32:
        model = model.float()
    return model
