"""The models the course knows by name (:data:`KNOWN_MODELS`, :class:`ModelSpec`): where each lives
on the Hub, its version and dictionaries, and the architectures :func:`load_model` builds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..vocab import (
    GENEFORMER_REPO,
    GENEFORMER_REVISION,
    V1_HUB_FILES,
    V2_HUB_FILES,
)

#: Hugging Face Hub repository that holds the Geneformer models and their dictionaries.
HUB_REPO = GENEFORMER_REPO  # "ctheodoris/Geneformer"
#: Pinned revision (upstream commit) of :data:`HUB_REPO` (models and dictionaries are identical
#: from upstream ``ff551ee4`` on). Pass ``revision="main"`` to :func:`load_model` for the newest
#: files.
HUB_REVISION = GENEFORMER_REVISION  # same pin as the dictionaries in course_helpers.vocab

#: Vocabulary sizes of the two published dictionary families.
V1_VOCAB_SIZE = 25_426  # 25,424 genes + <pad>, <mask>
V2_VOCAB_SIZE = 20_275  # genes + <pad>, <mask>, <cls>, <eos>

_TEACHING_DIR = Path(__file__).resolve().parent.parent / "assets" / "teaching_model"

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

    Examples
    --------
    >>> spec = KNOWN_MODELS["geneformer-v1"]
    >>> spec.subfolder, spec.version
    ('Geneformer-V1-10M', 'V1')
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


def _known_spec(name: str) -> tuple[str, ModelSpec] | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    spec = KNOWN_MODELS.get(key)
    return (key, spec) if spec is not None else None


def _names_help() -> str:
    names = ", ".join(repr(n) for n in ["teaching", *KNOWN_MODELS])
    return f"Known names: {names}; or the path of a local folder with config.json and weights."
