"""Load Geneformer-family models and run their encoder efficiently.

One call loads any model the course uses::

    model = load_model("teaching")            # shipped with the course, works offline
    model = load_model("geneformer-v1")       # Geneformer V1-10M from the Hugging Face Hub
    model = load_model("geneformer-v2-104m")  # Geneformer V2-104M from the Hugging Face Hub
    model = load_model("geneformer-v1-cardiomyopathy")  # the published fine-tuned classifier
    model = load_model("path/to/folder")      # any local Geneformer-style BERT folder

The returned model is a plain ``transformers`` BERT (``BertForMaskedLM``, or
``BertForSequenceClassification`` / ``BertForTokenClassification`` for fine-tuned models, as
``config.json`` says) in ``eval()`` mode on the chosen device, with two extra attributes:
``model.gene_vocab`` (the matching :class:`~course_helpers.vocab.GeneVocab`) and
``model.model_version`` (``"V1"``, ``"V2"`` or ``"teaching"``; the teaching model follows the V1
rules).

The package also holds what the analysis modules share: :func:`model_facts`, :func:`pick_device`,
:func:`pad_batch`, :func:`length_sorted_batches`, :func:`hidden_states` and
:func:`forward_memory_bytes`.

Files
-----
- ``load.py``: load_model (teaching model, published models from the Hub, local folders)
- ``specs.py``: KNOWN_MODELS / ModelSpec (the models known by name), HUB_REPO, HUB_REVISION
- ``folder.py``: reading a model folder (config, weights, vocabulary), check_vocab_matches_model
- ``device.py``: pick_device
- ``facts.py``: ModelFacts / model_facts (special tokens, sizes, device, layer; resolve_genes)
- ``hidden.py``: resolve_layer (the emb_layer convention) and hidden_states
- ``batching.py``: pad_batch, length_sorted_batches, forward_memory_bytes
- ``mlm.py``: masked_gene_accuracy
"""

from __future__ import annotations

from .batching import forward_memory_bytes, length_sorted_batches, pad_batch
from .device import pick_device
from .facts import ModelFacts, model_facts
from .folder import check_vocab_matches_model
from .hidden import hidden_states, resolve_layer
from .load import load_model
from .mlm import masked_gene_accuracy as masked_gene_accuracy
from .specs import HUB_REPO, HUB_REVISION, KNOWN_MODELS, ModelSpec
from .specs import SUPPORTED_ARCHITECTURES as SUPPORTED_ARCHITECTURES
from .specs import V1_VOCAB_SIZE as V1_VOCAB_SIZE
from .specs import V2_VOCAB_SIZE as V2_VOCAB_SIZE

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
