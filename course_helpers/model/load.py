""":func:`load_model`: one call for the teaching model, the published Geneformer models (Hub) and
any local Geneformer-style folder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .. import vocab as _vocab
from .._utils import CourseInputError, find_stack_level
from ..vocab import (
    GeneVocab,
)
from .device import pick_device
from .folder import (
    _load_bert,
    _local_vocab,
    _read_config,
    _resolve_vocab_arg,
    _vocab_from_dictionaries,
    check_vocab_matches_model,
)
from .specs import _TEACHING_DIR, HUB_REPO, ModelSpec, _known_spec, _names_help


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
    >>> model = load_model("teaching")
    >>> model.model_version, model.config.num_hidden_layers, len(model.gene_vocab)
    ('teaching', 4, 2002)
    >>> attn_model = load_model("teaching", output_attentions=True)
    >>> attn_model.config._attn_implementation
    'eager'
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
        # looked up on the package at call time: replacing course_helpers.vocab.hub_download
        # (as chapter 5 does to stand in for the network) reaches this call
        root = _vocab.hub_download(
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
            warnings.warn("revision= only applies to named Hub models; ignored.",
                          stacklevel=find_stack_level())
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
