"""Load Geneformer-family models and run their encoder efficiently.

One call loads any model the course uses::

    model = load_model("teaching")            # shipped with the course, works offline
    model = load_model("geneformer-v1")       # Geneformer V1-10M from the Hugging Face Hub
    model = load_model("geneformer-v2-104m")  # Geneformer V2-104M from the Hugging Face Hub
    model = load_model("geneformer-v1-cardiomyopathy")  # the published fine-tuned classifier
    model = load_model("path/to/folder")      # any local Geneformer-style BERT folder

The returned model is a plain ``transformers`` BERT (``BertForMaskedLM``, or
``BertForSequenceClassification`` / ``BertForTokenClassification`` for fine-tuned models, as
``config.json`` says) in ``eval()`` mode on the chosen device, with two extra attributes: ``model.gene_vocab`` (the matching
:class:`~course_helpers.vocab.GeneVocab`) and ``model.model_version`` (``"V1"``, ``"V2"`` or
``"teaching"``; the teaching model follows the V1 rules).

The module also holds the small helpers the analysis modules share: :func:`pick_device`,
:func:`pad_batch`, :func:`length_sorted_batches`, :func:`hidden_states` and
:func:`forward_memory_bytes`.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import vocab as _vocab_mod
from ._utils import CourseInputError
from .vocab import (
    GENEFORMER_REPO,
    GENEFORMER_REVISION,
    V1_HUB_FILES,
    V2_HUB_FILES,
    GeneVocab,
    check_not_lfs_pointer,
)

__all__ = [
    "HUB_REPO",
    "HUB_REVISION",
    "KNOWN_MODELS",
    "ModelFacts",
    "ModelSpec",
    "check_vocab_matches_model",
    "forward_memory_bytes",
    "hidden_states",
    "length_sorted_batches",
    "load_model",
    "model_facts",
    "pad_batch",
    "pick_device",
    "resolve_layer",
]

#: Hugging Face Hub repository that holds the Geneformer models and their dictionaries.
HUB_REPO = GENEFORMER_REPO  # "ctheodoris/Geneformer"
#: Pinned revision (upstream commit) of :data:`HUB_REPO` (models and dictionaries are identical
#: from upstream ``ff551ee4`` on). Pass ``revision="main"`` to :func:`load_model` for the newest
#: files.
HUB_REVISION = GENEFORMER_REVISION  # same pin as the dictionaries in course_helpers.vocab

#: Vocabulary sizes of the two published dictionary families.
V1_VOCAB_SIZE = 25_426  # 25,424 genes + <pad>, <mask>
V2_VOCAB_SIZE = 20_275  # genes + <pad>, <mask>, <cls>, <eos>

_TEACHING_DIR = Path(__file__).resolve().parent / "assets" / "teaching_model"

_V1_DICTIONARIES = dict(V1_HUB_FILES)
_V2_DICTIONARIES = dict(V2_HUB_FILES)
#: Model classes load_model builds, by ``config.json``'s ``architectures[0]``.
SUPPORTED_ARCHITECTURES = (
    "BertForMaskedLM", "BertForSequenceClassification", "BertForTokenClassification",
)


@dataclass(frozen=True)
class ModelSpec:
    """Where a named model lives in the Hub repository and which dictionaries it needs.

    Attributes
    ----------
    subfolder
        Folder of the model inside :data:`HUB_REPO` (``config.json`` + ``model.safetensors``).
    version
        ``"V1"`` or ``"V2"``: which dictionary family the model was trained with.
    dictionaries
        Repository paths of the token, gene-median and gene-name dictionaries.
    description
        One line for humans.
    weights
        The weight file to download (``model.safetensors``; the fine-tuned classifier has only
        the pickle-based ``pytorch_model.bin``, loaded with weights-only loading).
    """

    subfolder: str
    version: str
    dictionaries: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    weights: str = "model.safetensors"


#: Named models that :func:`load_model` can fetch from the Hub (keys are lower case).
KNOWN_MODELS: dict[str, ModelSpec] = {
    "geneformer-v1": ModelSpec(
        "Geneformer-V1-10M", "V1", _V1_DICTIONARIES,
        "Geneformer V1-10M (gf-6L-30M-i2048): 6 layers, 4 heads, hidden 256, 2,048 genes",
    ),
    "geneformer-v2-104m": ModelSpec(
        "Geneformer-V2-104M", "V2", _V2_DICTIONARIES,
        "Geneformer V2-104M: 12 layers, 12 heads, hidden 768, 4,096 tokens",
    ),
    "geneformer-v2-104m-clcancer": ModelSpec(
        "Geneformer-V2-104M_CLcancer", "V2", _V2_DICTIONARIES,
        "Geneformer V2-104M after continual learning on ~14 M cancer cells",
    ),
    "geneformer-v1-cardiomyopathy": ModelSpec(
        "fine_tuned_models/Geneformer-V1-10M_CellClassifier_cardiomyopathies_220224", "V1",
        _V1_DICTIONARIES,
        "Geneformer V1-10M fine-tuned to classify cardiomyocytes as non-failing, hypertrophic or "
        "dilated cardiomyopathy (BertForSequenceClassification, 3 labels)",
        weights="pytorch_model.bin",
    ),
    "geneformer-v2-316m": ModelSpec(
        "Geneformer-V2-316M", "V2", _V2_DICTIONARIES,
        "Geneformer V2-316M: 18 layers, 18 heads, hidden 1,152, 4,096 tokens",
    ),
}
_ALIASES = {
    "geneformer-v1-10m": "geneformer-v1",
    "gf-6l-30m-i2048": "geneformer-v1",
    "geneformer-v2": "geneformer-v2-104m",
    "geneformer-v1-10m-cardiomyopathy": "geneformer-v1-cardiomyopathy",
}
for _key, _spec in list(KNOWN_MODELS.items()):
    _ALIASES.setdefault(_spec.subfolder.rsplit("/", 1)[-1].lower(), _key)


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------
def pick_device(device=None):
    """Choose the torch device to run on: CUDA, then Apple MPS, then CPU.

    Parameters
    ----------
    device
        ``None`` (choose automatically) or anything ``torch.device`` accepts (``"cpu"``,
        ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``).

    Returns
    -------
    torch.device

    Raises
    ------
    CourseInputError
        If a device is requested that this machine does not have.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')
    >>> pick_device().type in {"cuda", "mps", "cpu"}
    True
    """
    import torch

    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise CourseInputError(
            f"{device!r} is not a device name. Fix: use device=None (automatic), 'cpu', 'cuda' "
            f"or 'mps'."
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CourseInputError(
            "device='cuda' was requested but no CUDA GPU is available here (torch "
            f"{torch.__version__}). Fix: use device=None to pick the best available device, or "
            "device='cpu'; on Colab choose Runtime > Change runtime type > GPU."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CourseInputError(
            f"device={device!r} does not exist: this machine has {torch.cuda.device_count()} "
            "CUDA device(s). Fix: use device='cuda' or device=None."
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise CourseInputError(
                "device='mps' was requested but Apple MPS is not available here. Fix: use "
                "device=None to pick the best available device, or device='cpu'."
            )
    return dev


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _known_spec(name: str) -> tuple[str, ModelSpec] | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    spec = KNOWN_MODELS.get(key)
    return (key, spec) if spec is not None else None


def _names_help() -> str:
    names = ", ".join(repr(n) for n in ["teaching", *KNOWN_MODELS])
    return f"Known names: {names}; or the path of a local folder with config.json and weights."


def _saved_version(config: dict, vocab: GeneVocab) -> str | None:
    """``model_version`` recorded by course_helpers.finetune.save_classifier, if consistent."""
    meta = config.get("course_helpers")
    saved = meta.get("model_version") if isinstance(meta, dict) else None
    if saved == vocab.version or (saved == "teaching" and vocab.version == "V1"):
        return saved
    return None


def _hub_fix(name: str, spec: ModelSpec) -> str:
    return (
        "Other ways to get the model:\n"
        "  * the model that ships with the course works offline: load_model('teaching');\n"
        f"  * a local copy: clone https://huggingface.co/{HUB_REPO} WITH git-lfs (`git lfs install` "
        f"before `git clone`, or `git lfs pull` after), then load_model('/path/to/Geneformer/"
        f"{spec.subfolder}'); the {spec.version} dictionaries are found in the clone."
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
    >>> vocab = GeneVocab.geneformer_v1(None)                 # doctest: +SKIP
    >>> check_vocab_matches_model(vocab, {"vocab_size": 20275})  # doctest: +SKIP
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
            stacklevel=4,
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


def load_model(
    name_or_path="teaching",
    *,
    output_attentions: bool = False,
    device=None,
    revision: str | None = None,
    vocab=None,
):
    """Load a Geneformer-family model with its matching gene vocabulary.

    Parameters
    ----------
    name_or_path
        ``"teaching"`` (the small model shipped with the course; works offline),
        ``"geneformer-v1"`` (Geneformer V1-10M), ``"geneformer-v2-104m"`` (V2-104M),
        ``"geneformer-v1-cardiomyopathy"`` (the published V1 cell classifier; see
        :data:`KNOWN_MODELS` for all names), or the path of a local folder holding
        ``config.json`` and weights. For a local folder the vocabulary is taken from
        ``vocab=``, else ``vocab.tsv`` in the folder, else Geneformer dictionaries laid out as in
        the Hub repository (``geneformer/gene_dictionaries_30m/*.pkl`` for V1,
        ``geneformer/*_gc104M.pkl`` for V2) in the folder, its parent or grandparent. The
        class built is ``config.json``'s ``architectures[0]``: ``BertForMaskedLM``,
        ``BertForSequenceClassification`` or ``BertForTokenClassification``; every analysis
        function uses ``model.bert``, so a fine-tuned classifier works wherever a pretrained
        model does. Weights: ``model.safetensors``, else ``pytorch_model.bin`` read with
        weights-only loading (a warning says so).
    output_attentions
        If True the model uses eager attention and returns attention weights from every
        forward pass (needed by :mod:`course_helpers.attention`). Otherwise the faster default
        attention (SDPA) is used, which returns none.
    device
        ``None`` picks CUDA, then MPS, then CPU (:func:`pick_device`).
    revision
        Hub revision for named models; default :data:`HUB_REVISION` (pinned).
    vocab
        Optional :class:`~course_helpers.vocab.GeneVocab` (or path to a vocabulary TSV) that
        overrides the automatic choice.

    Returns
    -------
    transformers.BertForMaskedLM (or BertForSequenceClassification / BertForTokenClassification)
        In ``eval()`` mode, float32, on ``device``, with ``model.gene_vocab`` and
        ``model.model_version`` (``"V1"``, ``"V2"`` or ``"teaching"``).

    Raises
    ------
    CourseInputError
        Unknown name or folder; a Hub download that fails (offline, revision or file not found
        at that revision: the message names which); git-lfs pointer files instead of weights or
        dictionaries; the root of a repository clone instead of a model folder;
        vocabulary/model mismatch (e.g. V1 dictionaries with a V2 model); missing weights;
        unavailable device.

    Examples
    --------
    >>> model = load_model("teaching")                     # doctest: +SKIP
    >>> model.model_version, model.config.num_hidden_layers  # doctest: +SKIP
    ('teaching', 4)
    >>> attn_model = load_model("teaching", output_attentions=True)   # doctest: +SKIP
    >>> v1 = load_model("geneformer-v1")   # needs internet the first time  # doctest: +SKIP
    """
    dev = pick_device(device)
    explicit_vocab = _resolve_vocab_arg(vocab) if vocab is not None else None
    name = str(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else None
    if name is None:
        raise CourseInputError(
            f"load_model expects a model name or a folder path, not {type(name_or_path).__name__}. "
            + _names_help()
        )

    if isinstance(name_or_path, str) and name.strip().lower() == "teaching":
        folder = _TEACHING_DIR
        if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
            raise CourseInputError(
                f"The teaching model is not yet available: {folder} has no config.json + "
                "model.safetensors. Fix: train it with `python data_scripts/"
                "pretrain_teaching_model.py` (writes course_helpers/assets/teaching_model/), or "
                "reinstall the course package from the repository; meanwhile a local model "
                "folder works too: load_model('/path/to/model_folder')."
            )
        config = _read_config(folder)
        gene_vocab = explicit_vocab or (
            GeneVocab.from_tsv(folder / "vocab.tsv") if (folder / "vocab.tsv").is_file()
            else GeneVocab.teaching()
        )
        source, version = "the teaching model", "teaching"
    elif isinstance(name_or_path, str) and _known_spec(name) is not None:
        key, spec = _known_spec(name)
        config_path = f"{spec.subfolder}/config.json"
        weights_path = f"{spec.subfolder}/{spec.weights}"
        root = _vocab_mod.hub_download(
            [config_path, weights_path, *spec.dictionaries.values()],
            revision=revision,
            what=f"model {key!r} (folder {spec.subfolder})",
            required=[config_path, weights_path, spec.dictionaries["token_dictionary"],
                      spec.dictionaries["gene_medians"]],
            fix=_hub_fix(key, spec),
        )
        folder = root / spec.subfolder
        config = _read_config(folder)
        gene_vocab = explicit_vocab or _vocab_from_dictionaries(root, spec.dictionaries)
        source, version = f"model {key!r}", None
    else:
        folder = Path(name).expanduser()
        if not folder.exists():
            raise CourseInputError(
                f"{name!r} is neither a known model name nor an existing folder. " + _names_help()
            )
        if not folder.is_dir():
            folder = folder.parent  # e.g. the path of config.json or model.safetensors
        config = _read_config(folder)
        if explicit_vocab is None and revision is not None:
            warnings.warn("revision= only applies to named Hub models; ignored.", stacklevel=2)
        gene_vocab = explicit_vocab or _local_vocab(folder, int(config.get("vocab_size", -1)))
        source, version = f"the model in {folder}", _saved_version(config, gene_vocab)

    # check before loading any weights
    check_vocab_matches_model(gene_vocab, config, source)
    model = _load_bert(folder, output_attentions, config)
    model.eval()
    model.to(dev)
    model.gene_vocab = gene_vocab
    model.model_version = version or gene_vocab.version
    return model


# --------------------------------------------------------------------------------------------
# batching and forward helpers
# --------------------------------------------------------------------------------------------
def pad_batch(list_of_id_lists: Sequence[Sequence[int]], pad_token_id: int = 0, device=None):
    """Right-pad token id sequences into one batch.

    Parameters
    ----------
    list_of_id_lists
        Sequences of token ids (lists, numpy arrays or 1-D tensors), possibly of different
        lengths.
    pad_token_id
        Id written into the padding positions (``vocab.pad_token_id``; 0 for Geneformer).
    device
        Where to put the tensors (default CPU).

    Returns
    -------
    input_ids, attention_mask : torch.Tensor
        Both ``(batch, max_length)`` and ``torch.long``; the mask is 1 on real tokens and 0 on
        padding.

    Examples
    --------
    >>> ids, mask = pad_batch([[5, 6, 7], [8]], pad_token_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    import torch

    seqs = [torch.as_tensor(np.asarray(s, dtype=np.int64)).reshape(-1) for s in list_of_id_lists]
    if not seqs:
        raise CourseInputError("pad_batch got no sequences. Fix: pass at least one cell.")
    max_len = max(int(s.numel()) for s in seqs)
    input_ids = torch.full((len(seqs), max_len), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), max_len), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = int(s.numel())
        input_ids[i, :n] = s
        attention_mask[i, :n] = 1
    if device is not None:
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    return input_ids, attention_mask


def length_sorted_batches(lengths, batch_size: int) -> list[np.ndarray]:
    """Group indices into batches of similar length, longest first.

    Sorting by length keeps padding (wasted compute) small, and putting the longest batch first
    makes an out-of-memory error happen at once rather than at the end. Ties keep their original
    order (stable sort), as the reference does.

    Parameters
    ----------
    lengths
        Length of every item.
    batch_size
        Maximum items per batch.

    Returns
    -------
    list of numpy.ndarray
        Indices into ``lengths``; together they cover every index once.

    Examples
    --------
    >>> [b.tolist() for b in length_sorted_batches([3, 10, 5, 10], 2)]
    [[1, 3], [2, 0]]
    """
    if int(batch_size) < 1:
        raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
    lengths = np.asarray(lengths).reshape(-1)
    order = np.argsort(-lengths.astype(np.int64), kind="stable")
    bs = int(batch_size)
    return [order[i:i + bs] for i in range(0, len(order), bs)]


def resolve_layer(model, layer: int = -1) -> int:
    """Index into ``hidden_states`` for the reference ``emb_layer`` convention.

    With N encoder layers, ``hidden_states`` has N + 1 entries (embeddings, then each layer).
    ``layer=0`` is the last layer (index N), ``layer=-1`` the second-to-last (index N - 1, the
    reference default) and ``layer=-N`` the embedding output (index 0).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> m = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=6))
    >>> resolve_layer(m, -1), resolve_layer(m, 0), resolve_layer(m, -6)
    (5, 6, 0)
    """
    n_layers = int(model.config.num_hidden_layers)
    try:
        layer = int(layer)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"layer must be an integer, got {layer!r}.") from err
    if not -n_layers <= layer <= 0:
        raise CourseInputError(
            f"layer={layer} is out of range for a model with {n_layers} layers. Layers count back "
            f"from the last one: 0 = last layer, -1 = second-to-last (the usual choice), ..., "
            f"-{n_layers} = the input embeddings. Fix: pass an integer from -{n_layers} to 0."
        )
    return n_layers + layer


def hidden_states(model, input_ids, attention_mask=None, layer: int = -1):
    """Per-position embeddings from one encoder layer (no MLM head).

    Runs only ``model.bert`` (the MLM head would cost ~73 % of the forward pass for nothing) and
    stops after the requested layer: with ``layer=-1`` the last encoder layer is never computed.
    The result equals ``hidden_states[N + layer]`` of a full forward pass with
    ``output_hidden_states=True``. Call it inside ``torch.inference_mode()`` /
    ``torch.no_grad()``.

    The early stop is a forward hook on that layer, registered for the call and removed after
    it; do not call this function on the same model from two threads at once.

    Parameters
    ----------
    model
        A ``BertForMaskedLM`` (or ``BertModel``).
    input_ids, attention_mask
        ``(batch, L)`` tensors, e.g. from :func:`pad_batch`, on the model's device.
    layer
        ``-1`` = second-to-last layer (reference default), ``0`` = last layer, other negative
        values count back from there (see :func:`resolve_layer`).

    Returns
    -------
    torch.Tensor
        ``(batch, L, hidden)``.

    Examples
    --------
    >>> import torch
    >>> model = load_model("teaching")                          # doctest: +SKIP
    >>> ids, mask = pad_batch([[5, 6, 7], [8]], 0, model.device)  # doctest: +SKIP
    >>> with torch.inference_mode():                            # doctest: +SKIP
    ...     h = hidden_states(model, ids, mask, layer=-1)
    >>> h.shape                                                 # doctest: +SKIP
    torch.Size([2, 3, 128])
    """
    idx = resolve_layer(model, layer)
    encoder = getattr(model, "bert", model)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    stop_at = None
    if layers is not None and len(layers) == int(model.config.num_hidden_layers):
        stop_at = encoder.embeddings if idx == 0 else layers[idx - 1]
    if stop_at is None or idx == len(layers):  # last layer wanted, or an unfamiliar model
        out = encoder(input_ids=input_ids, attention_mask=attention_mask,
                      output_hidden_states=True, output_attentions=False, return_dict=True)
        return out.hidden_states[idx]
    caught = []

    def hook(_module, _inputs, output):
        caught.append(output[0] if isinstance(output, (tuple, list)) else output)
        raise _StopForward

    handle = stop_at.register_forward_hook(hook)
    try:
        encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=False,
                output_attentions=False, return_dict=True)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not caught:  # pragma: no cover - the hooked module was not called
        raise RuntimeError("hidden_states: the requested layer was never reached.")
    return caught[0]


class _StopForward(Exception):
    """Raised by :func:`hidden_states`' hook once the requested layer has run."""

# --------------------------------------------------------------------------------------------
# model facts (special tokens, sizes, device: the ONE place that reads them off a model)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFacts:
    """What the analysis modules need to know about a loaded model, read in one place.

    Build it with :func:`model_facts`.

    Attributes
    ----------
    model
        The model itself.
    vocab : GeneVocab or None
        ``model.gene_vocab`` (set by :func:`load_model`), or ``None``.
    version : str or None
        ``model.model_version`` (``"V1"``, ``"V2"``, ``"teaching"``), else the vocabulary's.
    pad_id, mask_id, cls_id, eos_id : int or None
        Special token ids (``pad_id`` is always an int: the vocabulary's, else the config's,
        else 0).
    special_ids : numpy.ndarray
        Sorted int64 ids that are not genes: pad/mask/cls/eos and every ``<...>`` token of the
        vocabulary.
    vocab_size, max_len, hidden : int
        ``config.vocab_size``, ``config.max_position_embeddings``, ``config.hidden_size``.
    device : torch.device
        Where the model's weights are.
    emb_layer : int
        The validated hidden-state layer (reference ``emb_layer``: 0 = last, -1 =
        second-to-last); ``hidden_index`` is its index into ``hidden_states``.
    """

    model: object
    vocab: GeneVocab | None
    version: str | None
    pad_id: int
    mask_id: int | None
    cls_id: int | None
    eos_id: int | None
    special_ids: np.ndarray
    vocab_size: int
    max_len: int
    hidden: int
    device: object
    emb_layer: int
    hidden_index: int

    @property
    def n_layers(self) -> int:
        """Number of encoder layers."""
        return int(self.model.config.num_hidden_layers)

    def is_special(self, token_ids) -> np.ndarray:
        """Boolean mask: which of ``token_ids`` are special (non-gene) tokens.

        Examples
        --------
        >>> facts = model_facts(load_model("teaching"))
        >>> facts.is_special([0, 1, 5]).tolist()
        [True, True, False]
        """
        return np.isin(np.asarray(token_ids, dtype=np.int64), self.special_ids)

    def resolve_genes(self, genes, *, argname: str = "genes") -> list[int]:
        """Token ids of genes for this model: :meth:`GeneVocab.resolve` with the model's checks.

        Names need the model's vocabulary; token ids must be gene tokens below ``vocab_size``
        (without a vocabulary, ids are checked against ``vocab_size`` and ``special_ids``).

        Examples
        --------
        >>> facts = model_facts(load_model("teaching"))
        >>> facts.resolve_genes(["VWF", 5])
        [439, 5]
        >>> facts.resolve_genes([0])
        Traceback (most recent call last):
        ...
        course_helpers._utils.CourseInputError: Token id(s) [0] in genes are not gene tokens ...
        """
        if isinstance(genes, (str, int, np.integer)):
            genes = [genes]
        if self.vocab is not None:
            tokens = self.vocab.resolve(genes, argname=argname)
        else:
            try:
                genes = list(genes)
            except TypeError as err:
                raise CourseInputError(
                    f"{argname} must be a gene or a list of token ids, not "
                    f"{type(genes).__name__}."
                ) from err
            if not genes:
                raise CourseInputError(
                    f"{argname} is empty. Fix: pass at least one gene token id."
                )
            names = [g for g in genes if isinstance(g, str)]
            if names:
                raise CourseInputError(
                    f"Gene {names[0]!r} is a name, but this model has no gene vocabulary attached "
                    "(model.gene_vocab), so names cannot be translated into tokens. Fix: load the "
                    "model with course_helpers.model.load_model(...), or pass token ids."
                )
            tokens = []
            for g in genes:
                if isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)):
                    raise CourseInputError(
                        f"{argname} holds {g!r} ({type(g).__name__}); pass token ids."
                    )
                tokens.append(int(g))
            tokens = list(dict.fromkeys(tokens))
        specials = set(self.special_ids.tolist())
        bad = [t for t in tokens if not 0 <= t < self.vocab_size or t in specials]
        if bad:
            raise CourseInputError(
                f"Token id(s) {bad[:5]} in {argname} are not gene tokens of this model (valid: "
                f"0..{self.vocab_size - 1}, excluding special tokens {sorted(specials)}). "
                "Fix: pass gene symbols or Ensembl IDs, or token ids from model.gene_vocab."
            )
        return tokens


def model_facts(model, *, emb_layer: int = -1) -> ModelFacts:
    """Special tokens, sizes, device and the chosen layer of a model, checked once.

    Parameters
    ----------
    model
        A Geneformer-family BERT from :func:`load_model` (any ``torch.nn.Module`` with a
        ``config``).
    emb_layer
        Hidden-state layer in the reference convention (see :func:`resolve_layer`).

    Returns
    -------
    ModelFacts

    Raises
    ------
    CourseInputError
        If ``model`` is not a model with a ``config``, or ``emb_layer`` is out of range.

    Examples
    --------
    >>> facts = model_facts(load_model("teaching"))
    >>> facts.version, facts.pad_id, facts.mask_id, facts.cls_id, facts.special_ids.tolist()
    ('teaching', 0, 1, None, [0, 1])
    >>> facts.vocab_size, facts.hidden, facts.emb_layer, facts.hidden_index, str(facts.device)
    (2002, 128, -1, 3, 'cpu')
    """
    import torch

    if not isinstance(model, torch.nn.Module) or getattr(model, "config", None) is None:
        raise CourseInputError(
            f"model must be a transformers BertForMaskedLM (got {type(model).__name__}). Fix: "
            "model = course_helpers.model.load_model('teaching') (or another model name/folder)."
        )
    cfg = model.config
    idx = resolve_layer(model, emb_layer)
    vocab = getattr(model, "gene_vocab", None)

    def _vid(name):
        v = getattr(vocab, name, None) if vocab is not None else None
        return None if v is None else int(v)

    pad_id = _vid("pad_token_id")
    if pad_id is None:
        pad_id = getattr(cfg, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    mask_id, cls_id, eos_id = _vid("mask_token_id"), _vid("cls_token_id"), _vid("eos_token_id")
    specials = {t for t in (pad_id, mask_id, cls_id, eos_id) if t is not None}
    t2i = getattr(vocab, "token_to_id", None) or {}
    specials.update(int(i) for t, i in t2i.items()
                    if isinstance(t, str) and t.startswith("<") and t.endswith(">"))
    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without weights
        device = torch.device("cpu")
    version = getattr(model, "model_version", None) or getattr(vocab, "version", None)
    return ModelFacts(
        model=model,
        vocab=vocab,
        version=None if version is None else str(version),
        pad_id=pad_id,
        mask_id=mask_id,
        cls_id=cls_id,
        eos_id=eos_id,
        special_ids=np.asarray(sorted(specials), dtype=np.int64),
        vocab_size=int(cfg.vocab_size),
        max_len=int(getattr(cfg, "max_position_embeddings", None) or 10**9),
        hidden=int(cfg.hidden_size),
        device=device,
        emb_layer=int(emb_layer),
        hidden_index=idx,
    )


def forward_memory_bytes(model_or_config, batch_size: int, seq_len: int,
                         output_attentions: bool = False, bytes_per_value: int = 4) -> int:
    """Rough peak activation memory of one encoder forward pass, in bytes.

    Counts the kept hidden states of every layer, one layer's intermediate (feed-forward)
    activations and attention scores, and, if ``output_attentions``, the attention maps of all
    layers (``layers x heads x L x L`` per cell, the dominant term for long cells). Weights are
    not included. Use it to pick a batch size or to refuse requests that cannot fit.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(num_hidden_layers=6, num_attention_heads=4, hidden_size=256,
    ...                       intermediate_size=512)
    >>> forward_memory_bytes(cfg, 1, 2048, output_attentions=True) / 2**20 > 400
    True
    """
    cfg = getattr(model_or_config, "config", model_or_config)
    n_layers = int(cfg.num_hidden_layers)
    heads = int(cfg.num_attention_heads)
    hidden = int(cfg.hidden_size)
    inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
    b, seq = int(batch_size), int(seq_len)
    values = (n_layers + 1) * b * seq * hidden  # hidden states kept
    values += b * seq * (inter + 4 * hidden)  # one layer's working set
    values += b * heads * seq * seq  # one layer's attention scores
    if output_attentions:
        values += n_layers * b * heads * seq * seq
    return int(values * bytes_per_value)


def masked_gene_accuracy(model, dataset, n_cells: int | None = 100, mask_prob: float = 0.15,
                         k: int = 10, batch_size: int = 16, seed: int = 0,
                         progress: bool = False):
    """Masked-gene prediction accuracy vs a position-frequency baseline.

    In each of ``n_cells`` cells (a seeded random sample), ``mask_prob`` of the genes are replaced
    by ``<mask>`` (at least one per cell) and the model predicts them from the rest, as in
    pretraining. The baseline guesses, for each masked rank position, the genes most often seen
    at that position among the same cells — a strong guess, because rank-value encoding puts
    similar genes at similar positions. Special tokens are never predicted.

    Returns
    -------
    pandas.DataFrame
        Rows ``model`` and ``position baseline``; columns ``top1``, ``top{k}`` and
        ``n_masked``.

    Examples
    --------
    >>> model = load_model("teaching")                                   # doctest: +SKIP
    >>> masked_gene_accuracy(model, ds, n_cells=50)                      # doctest: +SKIP
    """
    import pandas as pd
    import torch

    vocab = getattr(model, "gene_vocab", None)
    mask_id = vocab.mask_token_id if vocab is not None else 1
    pad_id = model.config.pad_token_id or 0
    special = [i for i in (vocab.token_to_id.get(t) for t in ("<pad>", "<mask>", "<cls>", "<eos>"))
               if i is not None] if vocab is not None else [0, 1]
    n_total = len(dataset)
    if n_total == 0:
        raise CourseInputError("The dataset is empty. Fix: tokenize some cells first.")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n_total, size=min(n_cells or n_total, n_total), replace=False))
    cells = [np.asarray(dataset[int(i)]["input_ids"], dtype=np.int64) for i in rows]
    masks = []
    for ids in cells:
        n_mask = max(1, round(mask_prob * len(ids)))
        masks.append(np.sort(rng.choice(len(ids), size=n_mask, replace=False)))
    # position-frequency baseline: top-k genes per rank position over these cells
    freq: dict[int, list[int]] = {}
    by_pos: dict[int, dict[int, int]] = {}
    for ids in cells:
        for p, t in enumerate(ids.tolist()):
            by_pos.setdefault(p, {}).setdefault(t, 0)
            by_pos[p][t] += 1
    for p, counts in by_pos.items():
        freq[p] = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
    hits = {"model": [0, 0], "position baseline": [0, 0]}
    n_masked = 0
    device = next(model.parameters()).device
    order = length_sorted_batches([len(c) for c in cells], batch_size)
    from ._utils import progress as _progress

    with torch.inference_mode():
        for batch in _progress(order, enabled=progress, desc="masked-gene eval"):
            seqs = []
            for i in batch:
                ids = cells[i].copy()
                ids[masks[i]] = mask_id
                seqs.append(ids.tolist())
            input_ids, att = pad_batch(seqs, pad_id, device)
            logits = model(input_ids=input_ids, attention_mask=att).logits
            logits[..., special] = -torch.inf
            for b, i in enumerate(batch):
                pos = torch.as_tensor(masks[i], device=logits.device)
                topk = torch.topk(logits[b, pos], k, dim=-1).indices.cpu().numpy()
                truth = cells[i][masks[i]]
                hits["model"][0] += int((topk[:, 0] == truth).sum())
                hits["model"][1] += int((topk == truth[:, None]).any(1).sum())
                for p, t in zip(masks[i], truth):
                    guess = freq.get(int(p), [])
                    hits["position baseline"][0] += int(bool(guess) and guess[0] == t)
                    hits["position baseline"][1] += int(t in guess)
                n_masked += len(truth)
    return pd.DataFrame({name: {"top1": h[0] / n_masked, f"top{k}": h[1] / n_masked,
                                "n_masked": n_masked} for name, h in hits.items()}).T
