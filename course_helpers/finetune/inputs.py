"""Default training settings and the checks every fine-tuning entry point runs on its inputs
(model, dataset, columns, numbers).
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from .._utils import CourseInputError
from ..model import model_facts

#: Default training settings. The reference uses 10 epochs (cells) / 1 epoch (genes), batch 12 and
#: lr 5e-5 with 500 warm-up steps for V1-10M on a GPU; the teaching model is ~80x smaller and the
#: chapters run on a CPU, so a higher learning rate and fewer epochs reach the same place faster.
CELL_DEFAULTS = {"epochs": 3, "learning_rate": 5e-4, "batch_size": 16}
GENE_DEFAULTS = {"epochs": 1, "learning_rate": 5e-4, "batch_size": 16}
_IGNORE = -100  # label of unlabelled positions (PyTorch's cross-entropy ignore_index)


def _require_accelerate() -> None:
    try:
        import accelerate  # noqa: F401
    except ImportError as err:
        raise CourseInputError(
            "Fine-tuning uses the Hugging Face Trainer, which needs the 'accelerate' package. "
            "Fix: pip install 'course_helpers[finetune]' (or pip install accelerate)."
        ) from err


def _encoder_owner(model):
    """Check ``model`` is a BERT model with an encoder at ``model.bert``."""
    if getattr(model, "bert", None) is None or getattr(model, "config", None) is None:
        raise CourseInputError(
            f"Expected a Geneformer-family BERT model (from course_helpers.model.load_model), got "
            f"a {type(model).__name__}. Fix: model = ch.load_model('teaching') (or another name "
            "or folder) and pass it as the first argument."
        )
    return model


def _vocab_of(model):
    vocab = model_facts(model).vocab
    if vocab is None:
        raise CourseInputError(
            "The model has no gene_vocab attribute, so its genes cannot be named. Fix: load it "
            "with course_helpers.model.load_model(...), which attaches the vocabulary."
        )
    return vocab


def _as_dataset(dataset):
    """Return a ``datasets.Dataset`` (HF dataset or pandas DataFrame / dict of columns in)."""
    import datasets as _ds

    if isinstance(dataset, _ds.Dataset):
        out = dataset
    elif isinstance(dataset, pd.DataFrame):
        out = _ds.Dataset.from_pandas(dataset.reset_index(drop=True), preserve_index=False)
    elif isinstance(dataset, Mapping):
        out = _ds.Dataset.from_dict(dict(dataset))
    else:
        raise CourseInputError(
            f"Cannot read cells from a {type(dataset).__name__}. Fix: pass the tokenized "
            "datasets.Dataset from course_helpers.tokenize.tokenize (with an 'input_ids' column)."
        )
    if "input_ids" not in out.column_names:
        raise CourseInputError(
            f"The dataset has no 'input_ids' column (columns: {out.column_names}). Fix: tokenize "
            "the cells first with course_helpers.tokenize.tokenize."
        )
    if len(out) == 0:
        raise CourseInputError("The dataset holds no cells. Fix: check the tokenization step.")
    return out.with_format(None)


def _column(ds, key: str, what: str, fix: str) -> list:
    if key not in ds.column_names:
        raise CourseInputError(
            f"The dataset has no {what} column {key!r} (columns: {ds.column_names}). Fix: {fix}"
        )
    return list(ds[key])


def _check_int(value, name: str, minimum: int) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"{name} must be an integer, got {value!r}.") from err
    if out != value or out < minimum:
        raise CourseInputError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return out


def _check_training(epochs, learning_rate, batch_size) -> tuple[float, float, int]:
    try:
        epochs = float(epochs)
        learning_rate = float(learning_rate)
    except (TypeError, ValueError) as err:
        raise CourseInputError(
            f"epochs and learning_rate must be numbers, got {epochs!r} and {learning_rate!r}."
        ) from err
    if not epochs > 0:
        raise CourseInputError(f"epochs must be > 0, got {epochs}. Fix: e.g. epochs=3.")
    if not 0 < learning_rate < 1:
        raise CourseInputError(
            f"learning_rate must be between 0 and 1, got {learning_rate}. Fix: e.g. 5e-4 for the "
            "teaching model, 5e-5 for Geneformer V1-10M."
        )
    return epochs, learning_rate, _check_int(batch_size, "batch_size", 1)


def _model_version(model) -> str:
    return str(getattr(model, "model_version", None)
               or getattr(model.config, "model_version", None) or "V1")


def _n_layers(model) -> int:
    return int(model.config.num_hidden_layers)
