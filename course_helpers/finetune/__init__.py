"""Transfer learning: fine-tune a pretrained Geneformer-family model on labelled cells or genes.

The Geneformer paper's claim is that a model pretrained once on many unlabelled cells can be
*fine-tuned* on a small labelled set. Two tasks, as in the reference ``Classifier``:

* :func:`cell_classifier` - one label per cell (disease state, cell type, ...): a
  ``transformers.BertForSequenceClassification`` on top of the pretrained encoder. With
  ``group_key="donor"`` whole donors are held out, so the score measures generalisation to new
  people rather than to new cells of the same people.
* :func:`gene_classifier` - one label per gene (e.g. targets of a regulator vs other genes): a
  ``transformers.BertForTokenClassification`` that labels gene tokens, cross-validated **over
  genes** (no gene is in both the training and the test part of a fold).

Both train with the Hugging Face :class:`transformers.Trainer` (what the reference and every HF
user know), on a GPU when there is one and on the CPU otherwise, deterministically for a given
``seed``. ``freeze_layers=N`` freezes the first ``N`` encoder layers as the reference does, and (by
default, whenever ``N > 0``) the embeddings too; ``lora=r`` trains low-rank adapters instead of the
full encoder (needs ``peft``: ``pip install 'course_helpers[finetune]'``).

A fine-tuned model keeps ``model.gene_vocab`` and ``model.model_version``, and its label names in
``model.config.id2label``; :func:`save_classifier` (``result.save(path)``) writes ``config.json``,
``model.safetensors`` and ``vocab.tsv``, the layout :func:`course_helpers.model.load_model` reads.
Its encoder (``model.bert``) is used by ``embed``, ``attention`` and ``perturb`` exactly like a
pretrained model's (reference ``model_type="CellClassifier"``).

Files
-----

==================  ==============================================================================
File                What lives there
==================  ==============================================================================
inputs.py           CELL_DEFAULTS, GENE_DEFAULTS; input checks shared by the entry points
freezing.py         freeze (first N encoder layers, embeddings)
heads.py            new_classifier (a fresh cell or gene head on a copy of the encoder)
lora.py             low-rank adapters (peft) for lora=r
training.py         one Hugging Face Trainer run (collator, progress, arguments)
inference.py        predict_cells
saving.py           save_classifier (safetensors + config + vocab)
cell_classifier.py  CellClassifierResult, cell_classifier (held-out cells or donors)
gene_classifier.py  GeneClassifierResult, gene_classifier (cross-validated over genes)
==================  ==============================================================================
"""
from __future__ import annotations

from .cell_classifier import CellClassifierResult, cell_classifier
from .freezing import freeze
from .gene_classifier import GeneClassifierResult, gene_classifier
from .heads import new_classifier
from .inference import predict_cells
from .inputs import CELL_DEFAULTS, GENE_DEFAULTS  # noqa: F401 - importable as before, not in __all__
from .saving import save_classifier

__all__ = [
    "CellClassifierResult",
    "GeneClassifierResult",
    "cell_classifier",
    "freeze",
    "gene_classifier",
    "new_classifier",
    "predict_cells",
    "save_classifier",
]
