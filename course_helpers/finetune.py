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
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._utils import CourseInputError
from ._utils import progress as _progress
from .model import length_sorted_batches, pad_batch, pick_device

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

#: Default training settings. The reference uses 10 epochs (cells) / 1 epoch (genes), batch 12 and
#: lr 5e-5 with 500 warm-up steps for V1-10M on a GPU; the teaching model is ~80x smaller and the
#: chapters run on a CPU, so a higher learning rate and fewer epochs reach the same place faster.
CELL_DEFAULTS = {"epochs": 3, "learning_rate": 5e-4, "batch_size": 16}
GENE_DEFAULTS = {"epochs": 1, "learning_rate": 5e-4, "batch_size": 16}
_IGNORE = -100  # label of unlabelled positions (PyTorch's cross-entropy ignore_index)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
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
    vocab = getattr(model, "gene_vocab", None)
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


def freeze(model, freeze_layers: int = 0, freeze_embeddings: bool | None = None):
    """Freeze the embeddings and the first ``freeze_layers`` encoder layers of ``model``.

    The reference ``Classifier`` freezes ``model.bert.encoder.layer[:freeze_layers]``. Here the
    embeddings are frozen as well whenever ``freeze_layers > 0`` (``freeze_embeddings=None``):
    otherwise every backward pass still runs through the frozen layers to reach the embeddings,
    and freezing saves almost no time. Pass ``freeze_embeddings=False`` for the reference's exact
    behaviour. ``freeze_layers`` equal to the number of layers trains only the classification head
    (a linear probe on frozen features).

    Parameters
    ----------
    model
        A ``BertForSequenceClassification`` / ``BertForTokenClassification`` (changed in place).
    freeze_layers
        Number of encoder layers to freeze, from the input side, ``0 .. num_hidden_layers``.
    freeze_embeddings
        ``None``: freeze them when ``freeze_layers > 0``; ``True``/``False``: always / never.

    Returns
    -------
    dict
        ``{"trainable": n, "total": n}`` parameter counts after freezing.

    Examples
    --------
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> m = BertForSequenceClassification(BertConfig(vocab_size=20, hidden_size=8,
    ...     num_hidden_layers=2, num_attention_heads=2, intermediate_size=16))
    >>> counts = freeze(m, 2)
    >>> counts["trainable"] < counts["total"]
    True
    >>> any(p.requires_grad for p in m.bert.encoder.layer[1].parameters())
    False
    """
    _encoder_owner(model)
    n_layers = _n_layers(model)
    try:
        n = int(freeze_layers)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"freeze_layers must be an integer, got {freeze_layers!r}.") from err
    if n != freeze_layers or not 0 <= n <= n_layers:
        raise CourseInputError(
            f"freeze_layers={freeze_layers!r} is out of range: the model has {n_layers} encoder "
            f"layers. Fix: pass an integer from 0 (train everything) to {n_layers} (train only the "
            "classification head)."
        )
    if freeze_embeddings is None:
        freeze_embeddings = n > 0
    if freeze_embeddings:
        for p in model.bert.embeddings.parameters():
            p.requires_grad = False
    for layer in model.bert.encoder.layer[:n]:
        for p in layer.parameters():
            p.requires_grad = False
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": int(trainable), "total": int(total)}


def _make_classifier(model, task: str, classes: list[str], seed: int):
    """A new classifier whose encoder is a copy of ``model``'s (the caller's model is untouched)."""
    from transformers import BertForSequenceClassification, BertForTokenClassification
    from transformers import set_seed as hf_set_seed

    _encoder_owner(model)
    cls = BertForSequenceClassification if task == "cell" else BertForTokenClassification
    n = len(classes)
    id2label = {i: c for i, c in enumerate(classes)}
    label2id = {c: i for i, c in enumerate(classes)}
    existing = int(getattr(model.config, "num_labels", 0) or 0)
    if isinstance(model, cls) and existing != n:
        old = [model.config.id2label[i] for i in sorted(model.config.id2label)]
        raise CourseInputError(
            f"The model is already a {cls.__name__} with {existing} labels {old}, but the data "
            f"have {n} classes {classes}. Fix: fine-tune the pretrained model instead "
            "(ch.load_model('teaching')), or pass labels with the same classes."
        )
    hf_set_seed(seed)
    config = copy.deepcopy(model.config)
    config.num_labels = n
    config.id2label = id2label
    config.label2id = label2id
    config.architectures = [cls.__name__]
    if task == "cell":
        config.problem_type = "single_label_classification"
    config.output_attentions = False
    clf = cls(config)
    if isinstance(model, cls):
        old = [model.config.id2label[i] for i in sorted(model.config.id2label)]
        if [str(c) for c in old] != classes:
            raise CourseInputError(
                f"The model is already a classifier for the classes {old}, but the data have "
                f"{classes}. Fix: use labels with the same names, or fine-tune the pretrained "
                "model instead."
            )
        clf.load_state_dict(model.state_dict())
    else:
        missing, unexpected = clf.bert.load_state_dict(model.bert.state_dict(), strict=False)
        bad = [k for k in missing if not k.startswith("pooler.")]
        if bad or unexpected:
            raise CourseInputError(  # pragma: no cover - only for unusual architectures
                f"Could not copy the encoder weights into the classifier (missing {bad[:5]}, "
                f"unexpected {list(unexpected)[:5]}). Fix: pass a model from load_model()."
            )
    clf.gene_vocab = getattr(model, "gene_vocab", None)
    clf.model_version = _model_version(model)
    return clf


def new_classifier(model, classes: Sequence[str], task: str = "cell", *, seed: int = 0):
    """A new, untrained classifier on a copy of ``model``'s encoder (what the fine-tunes start from).

    Parameters
    ----------
    model
        A pretrained model from :func:`course_helpers.model.load_model`.
    classes
        Class names, in order (class 0 first).
    task
        ``"cell"`` (``BertForSequenceClassification``) or ``"gene"``
        (``BertForTokenClassification``).
    seed
        Seeds the new head's initialisation.

    Returns
    -------
    transformers.BertForSequenceClassification or transformers.BertForTokenClassification
        With ``gene_vocab``, ``model_version`` and ``config.id2label`` set.

    Examples
    --------
    >>> clf = new_classifier(model, ["healthy", "diseased"])          # doctest: +SKIP
    >>> freeze(clf, 2)["trainable"]                                   # doctest: +SKIP
    """
    if task not in ("cell", "gene"):
        raise CourseInputError(f"task must be 'cell' or 'gene', got {task!r}.")
    classes = [str(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise CourseInputError(
            f"classes must name at least two different classes, got {classes}."
        )
    _encoder_owner(model)
    return _make_classifier(model, task, classes, _check_int(seed, "seed", 0))


def _apply_lora(clf, lora, task: str):
    """Wrap ``clf`` with LoRA adapters (peft); returns the peft model."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as err:
        raise CourseInputError(
            "lora=... needs the 'peft' package. Fix: pip install 'course_helpers[finetune]' (or "
            "pip install peft), or leave lora=None to fine-tune the whole model."
        ) from err
    if isinstance(lora, bool) or not isinstance(lora, (int, Mapping)):
        raise CourseInputError(
            f"lora must be None, a rank (e.g. lora=8) or a dict of peft.LoraConfig settings, "
            f"got {lora!r}."
        )
    settings = {"r": int(lora)} if isinstance(lora, int) else dict(lora)
    r = settings.get("r", 8)
    if not isinstance(r, int) or r < 1:
        raise CourseInputError(f"The LoRA rank must be an integer >= 1, got {r!r}.")
    settings.setdefault("r", r)
    settings.setdefault("lora_alpha", 2 * r)
    settings.setdefault("lora_dropout", 0.0)
    settings.setdefault("target_modules", ["query", "key", "value"])
    save = ["classifier"] + (["pooler"] if task == "cell" else [])
    settings.setdefault("modules_to_save", save)
    settings["task_type"] = TaskType.SEQ_CLS if task == "cell" else TaskType.TOKEN_CLS
    try:
        config = LoraConfig(**settings)
    except TypeError as err:
        raise CourseInputError(f"Invalid LoRA settings {settings}: {err}") from err
    return get_peft_model(clf, config)


# --------------------------------------------------------------------------------------------
# Trainer plumbing
# --------------------------------------------------------------------------------------------
class _Collator:
    """Pad ``input_ids`` (and token labels with -100) into a batch; extra keys are ignored."""

    def __init__(self, pad_token_id: int, token_labels: bool):
        self.pad = int(pad_token_id)
        self.token_labels = token_labels

    def __call__(self, features):
        import torch

        input_ids, mask = pad_batch([f["input_ids"] for f in features], self.pad)
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if "labels" in features[0]:
            if self.token_labels:
                labels = torch.full(input_ids.shape, _IGNORE, dtype=torch.long)
                for i, f in enumerate(features):
                    lab = torch.as_tensor(f["labels"], dtype=torch.long)
                    labels[i, : lab.numel()] = lab
            else:
                labels = torch.as_tensor([int(f["labels"]) for f in features], dtype=torch.long)
            batch["labels"] = labels
        return batch


def _progress_callback(enabled: bool, desc: str):
    from transformers import TrainerCallback

    class _Bar(TrainerCallback):
        """One tqdm bar over the optimisation steps (replaces the Trainer's log printing)."""

        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = _progress(total=int(state.max_steps), enabled=enabled, desc=desc,
                                 leave=False)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(1)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return _Bar()


def _training_args(out_dir: str, *, epochs, learning_rate, batch_size, n_train, seed, device,
                   weight_decay: float):
    from transformers import TrainingArguments

    params = inspect.signature(TrainingArguments).parameters
    steps = int(np.ceil(n_train / batch_size) * epochs)
    kwargs = {
        "output_dir": out_dir,
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "weight_decay": weight_decay,
        "lr_scheduler_type": "linear",
        "warmup_steps": int(0.1 * steps),
        "logging_strategy": "epoch",
        "save_strategy": "no",
        "report_to": [],
        "seed": seed,
        "data_seed": seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "length_column_name": "length",
    }
    kwargs["eval_strategy" if "eval_strategy" in params else "evaluation_strategy"] = "no"
    if "train_sampling_strategy" in params:  # transformers >= 5
        kwargs["train_sampling_strategy"] = "group_by_length"
    elif "group_by_length" in params:  # pragma: no cover - transformers 4.x
        kwargs["group_by_length"] = True
    if device.type == "cpu":
        kwargs["use_cpu" if "use_cpu" in params else "no_cuda"] = True
    return TrainingArguments(**{k: v for k, v in kwargs.items()
                                if k in params or k in {"evaluation_strategy"}})


def _train(clf, train_rows: dict, evaluate=None, *, task, epochs, learning_rate,
           batch_size, seed, device, progress, desc, weight_decay=0.001):
    """Run the Trainer; return (trained model, history DataFrame, training seconds).

    ``evaluate(model) -> float`` (optional) is called at the end of every epoch and its value is
    recorded as ``eval_loss``; its time is not counted in the training seconds.
    """
    import datasets as _ds
    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

    pad = int(clf.config.pad_token_id or 0)
    train_ds = _ds.Dataset.from_dict(train_rows)
    eval_losses: dict[int, float] = {}
    eval_seconds = [0.0]

    class _EpochEval(TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            t = time.perf_counter()
            eval_losses[round(float(state.epoch))] = float(evaluate(model))
            eval_seconds[0] += time.perf_counter() - t

    with tempfile.TemporaryDirectory(prefix="ch-finetune-") as tmp:
        args = _training_args(tmp, epochs=epochs, learning_rate=learning_rate,
                              batch_size=batch_size, n_train=len(train_ds), seed=seed,
                              device=device, weight_decay=weight_decay)
        trainer = Trainer(model=clf, args=args, train_dataset=train_ds,
                          data_collator=_Collator(pad, token_labels=(task == "gene")))
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        trainer.add_callback(_progress_callback(progress, desc))
        if evaluate is not None:
            trainer.add_callback(_EpochEval())
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0 - eval_seconds[0]
        logs = list(trainer.state.log_history)
    model = trainer.model
    model.eval()
    rows: dict[int, dict] = {}
    for entry in logs:
        if "epoch" in entry and "loss" in entry:
            rows.setdefault(round(float(entry["epoch"])), {})["train_loss"] = float(entry["loss"])
    for ep, loss in eval_losses.items():
        rows.setdefault(ep, {})["eval_loss"] = loss
    history = pd.DataFrame.from_dict(rows, orient="index").rename_axis("epoch").sort_index()
    for col in ("train_loss", "eval_loss"):
        if col not in history.columns:
            history[col] = np.nan
    del trainer
    if device.type == "cuda":  # pragma: no cover - GPU only
        torch.cuda.empty_cache()
    return model, history[["train_loss", "eval_loss"]], seconds


def _finish(trained, clf_template, lora):
    """Plain BERT classifier back from a (possibly peft-wrapped) trained model."""
    model = trained
    if lora is not None:
        model = trained.merge_and_unload()
    model.gene_vocab = clf_template.gene_vocab
    model.model_version = clf_template.model_version
    for p in model.parameters():
        p.requires_grad = True
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
def _logits(model, seqs: Sequence, batch_size: int, progress: bool, desc: str,
            token_level: bool = False):
    """Softmax probabilities per cell (n, C) or per position (list of (L_i, C))."""
    import torch

    device = next(model.parameters()).device
    pad = int(model.config.pad_token_id or 0)
    out: list = [None] * len(seqs)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in _progress(length_sorted_batches([len(s) for s in seqs], batch_size),
                               enabled=progress, desc=desc, leave=False):
            ids, mask = pad_batch([seqs[i] for i in batch], pad, device)
            probs = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            probs = probs.cpu().numpy()
            for b, i in enumerate(batch):
                out[i] = probs[b, : len(seqs[i])] if token_level else probs[b]
    if was_training:
        model.train()
    return out if token_level else np.stack(out)


def predict_cells(model, dataset, *, batch_size: int = 32, progress: bool = True) -> pd.DataFrame:
    """Class probabilities of a fine-tuned cell classifier for every cell of ``dataset``.

    Parameters
    ----------
    model
        A ``BertForSequenceClassification`` (e.g. ``cell_classifier(...).model`` or a saved one
        loaded with ``load_model``).
    dataset
        Tokenized cells (``input_ids``).
    batch_size, progress
        Cells per forward pass; progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per cell in dataset order: ``p_<class>`` for every class and ``predicted``
        (``cell_id`` first when the dataset has one).

    Examples
    --------
    >>> res = cell_classifier(model, ds, "state", group_key="donor",
    ...                       test_groups=["H3", "F3"])                 # doctest: +SKIP
    >>> predict_cells(res.model, ds).head()                               # doctest: +SKIP
    """
    from transformers import BertForSequenceClassification

    if not isinstance(model, BertForSequenceClassification):
        raise CourseInputError(
            f"predict_cells needs a fine-tuned cell classifier (BertForSequenceClassification), "
            f"got a {type(model).__name__}. Fix: pass cell_classifier(...).model."
        )
    ds = _as_dataset(dataset)
    seqs = [list(x) for x in ds["input_ids"]]
    probs = _logits(model, seqs, _check_int(batch_size, "batch_size", 1), progress,
                    "predicting cells")
    classes = [str(model.config.id2label[i]) for i in range(probs.shape[1])]
    df = pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])
    df["predicted"] = [classes[i] for i in probs.argmax(1)]
    if "cell_id" in ds.column_names:
        df.insert(0, "cell_id", list(ds["cell_id"]))
    return df


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------
def _quiet_save(model, folder: Path) -> None:
    """``save_pretrained`` as safetensors, without transformers' progress bar for one shard."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        hf_logging = None
    was_on = hf_logging.is_progress_bar_enabled() if hf_logging is not None else False
    if was_on:
        hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def save_classifier(model, path, *, overwrite: bool = False, extra: Mapping | None = None) -> Path:
    """Write a fine-tuned classifier folder that ``load_model(path)`` reads.

    Files: ``config.json`` (with ``architectures``, ``id2label``/``label2id`` and a
    ``"course_helpers"`` entry holding ``model_version`` and how the model was trained),
    ``model.safetensors`` and ``vocab.tsv`` (:meth:`GeneVocab.to_tsv`). The folder is written
    under a temporary name and renamed at the end, so a failure leaves nothing half-written.

    Parameters
    ----------
    model
        A fine-tuned ``BertForSequenceClassification`` / ``BertForTokenClassification`` with
        ``gene_vocab``.
    path
        Folder to create. It must not exist (or be empty) unless ``overwrite=True``.
    overwrite
        Replace an existing folder.
    extra
        JSON-serialisable facts stored under ``config.json["course_helpers"]``.

    Returns
    -------
    pathlib.Path
        The folder.

    Examples
    --------
    >>> save_classifier(result.model, "my_classifier")        # doctest: +SKIP
    PosixPath('my_classifier')
    """
    _encoder_owner(model)
    vocab = _vocab_of(model)
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise CourseInputError(f"{path} exists and is a file. Fix: choose a folder name.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise CourseInputError(
            f"{path} already exists and is not empty. Fix: choose another folder or pass "
            "overwrite=True to replace it."
        )
    meta = {"model_version": _model_version(model)}
    if extra:
        meta.update(dict(extra))
    try:
        json.dumps(meta)
    except TypeError as err:
        raise CourseInputError(f"extra must be JSON-serialisable: {err}") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        _quiet_save(model, tmp)
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["architectures"] = [type(model).__name__]
        cfg["course_helpers"] = meta
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        vocab.to_tsv(tmp / "vocab.tsv")
        if not (tmp / "model.safetensors").is_file():  # pragma: no cover - sharded weights
            raise CourseInputError(f"save_pretrained did not write model.safetensors in {tmp}.")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# --------------------------------------------------------------------------------------------
# cell classification
# --------------------------------------------------------------------------------------------
@dataclass
class CellClassifierResult:
    """What :func:`cell_classifier` returns.

    Attributes
    ----------
    model
        The fine-tuned ``BertForSequenceClassification`` (eval mode) with ``gene_vocab``,
        ``model_version`` and the class names in ``model.config.id2label``.
    metrics
        Held-out scores: row ``"overall"`` (``accuracy``, ``macro_f1``, ``n_cells``) and one row
        per class (``precision``, ``recall``, ``f1``, ``n_cells``).
    predictions
        One row per held-out cell: ``index`` (row in the input dataset), ``cell_id`` and the group
        where available, ``true``, ``predicted`` and ``p_<class>`` probabilities.
    history
        Training and held-out loss per epoch (``train_loss``, ``eval_loss``). The held-out cells
        are only watched, never used to pick a model.
    classes, train_groups, test_groups, train_seconds, settings
        Class order, the groups in each part (``None`` without ``group_key``), wall time of
        training, and the arguments used.
    """

    model: object
    metrics: pd.DataFrame
    predictions: pd.DataFrame
    history: pd.DataFrame
    classes: list[str]
    train_groups: list | None = None
    test_groups: list | None = None
    train_seconds: float = float("nan")
    settings: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Held-out accuracy."""
        return float(self.metrics.loc["overall", "accuracy"])

    @property
    def macro_f1(self) -> float:
        """Held-out macro-averaged F1."""
        return float(self.metrics.loc["overall", "macro_f1"])

    def confusion_matrix(self, normalize: bool = False) -> pd.DataFrame:
        """Held-out confusion matrix: rows = true class, columns = predicted class."""
        cm = pd.crosstab(pd.Categorical(self.predictions["true"], self.classes),
                         pd.Categorical(self.predictions["predicted"], self.classes),
                         dropna=False).astype(float if normalize else int)
        cm.index.name, cm.columns.name = "true", "predicted"
        if normalize:
            cm = cm.div(cm.sum(1).replace(0, np.nan), axis=0)
        return cm

    def save(self, path, *, overwrite: bool = False) -> Path:
        """Write the classifier folder (see :func:`save_classifier`)."""
        return save_classifier(self.model, path, overwrite=overwrite, extra={
            "task": "cell_classifier", **{k: self.settings[k] for k in
                                          ("label_key", "group_key") if k in self.settings},
            "test_groups": [str(g) for g in self.test_groups] if self.test_groups else None,
            "heldout_accuracy": self.accuracy,
        })

    def __repr__(self) -> str:
        held = f", held-out groups {self.test_groups}" if self.test_groups else ""
        return (f"CellClassifierResult(classes={self.classes}, accuracy={self.accuracy:.3f}, "
                f"macro_f1={self.macro_f1:.3f}, n_test={len(self.predictions)}{held})")


def _clean_labels(values, label_key) -> list[str]:
    bad = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and np.isnan(v))]
    if bad:
        raise CourseInputError(
            f"{len(bad)} cell(s) have no value in {label_key!r} (e.g. row {bad[0]}). Fix: remove "
            "them from the dataset first (dataset.filter(...)) or fill the labels in."
        )
    return [str(v) for v in values]


def _class_order(labels: list[str], classes) -> list[str]:
    present = sorted(set(labels))
    if classes is None:
        return present
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise CourseInputError(f"classes={classes} repeats a class. Fix: list each class once.")
    missing = sorted(set(present) - set(classes))
    if missing:
        raise CourseInputError(
            f"The labels contain {missing}, which are not in classes={classes}. Fix: add them to "
            "classes, or filter those cells out first."
        )
    return classes


def _split_cells(labels: np.ndarray, groups: np.ndarray | None, test_groups, test_size: float,
                 seed: int, classes: list[str], group_key: str | None):
    """Indices of training and held-out cells, and the groups of each part."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    if groups is None:
        if test_groups is not None:
            raise CourseInputError(
                "test_groups was given without group_key. Fix: pass group_key='donor' (the "
                "dataset column that holds the groups) together with test_groups."
            )
        counts = pd.Series(labels).value_counts()
        small = counts[counts < 2]
        if len(small):
            raise CourseInputError(
                f"Class(es) {list(small.index)} have fewer than 2 cells, too few to put cells in "
                "both the training and the held-out part. Fix: add cells of that class or drop it."
            )
        from sklearn.model_selection import train_test_split

        n_test = max(round(test_size * n), len(counts))
        if n - n_test < len(counts):
            raise CourseInputError(
                f"test_size={test_size} leaves too few training cells ({n - n_test}) for "
                f"{len(counts)} classes. Fix: use a smaller test_size or more cells."
            )
        train, test = train_test_split(np.arange(n), test_size=n_test, stratify=labels,
                                       random_state=seed)
        return np.sort(train), np.sort(test), None, None
    group_names = sorted(set(groups.tolist()), key=str)
    if test_groups is not None:
        if isinstance(test_groups, (str, bytes)) or not isinstance(test_groups, (Sequence, set,
                                                                                 np.ndarray)):
            test_groups = [test_groups]
        wanted = [str(g) for g in test_groups]
        absent = [g for g in wanted if g not in {str(x) for x in group_names}]
        if absent:
            raise CourseInputError(
                f"Held-out group(s) {absent} do not occur in {group_key!r} (groups present: "
                f"{[str(g) for g in group_names]}). Fix: choose test_groups from those."
            )
        held = sorted(set(wanted))
    else:
        # stratified over groups: each group counts for its majority class
        major = pd.Series(labels).groupby(groups.astype(str)).agg(lambda s: s.value_counts().index[0])
        held = []
        for c in classes:
            gs = sorted(major[major == c].index.tolist())
            if len(gs) >= 2:
                k = max(1, round(test_size * len(gs)))
                held += list(rng.choice(gs, size=min(k, len(gs) - 1), replace=False))
        if not held:
            raise CourseInputError(
                f"Cannot hold out whole {group_key!r} groups: no class has cells from at least 2 "
                "groups. Fix: pass test_groups=[...] explicitly, or leave group_key=None to split "
                "cells at random."
            )
        held = sorted(set(held))
    is_test = np.isin(groups.astype(str), held)
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if len(train) == 0:
        raise CourseInputError(
            f"Holding out {held} leaves no training cells. Fix: hold out fewer groups."
        )
    train_classes = set(labels[train].tolist())
    missing = [c for c in classes if c not in train_classes]
    if missing:
        raise CourseInputError(
            f"After holding out {group_key} {held}, class(es) {missing} have no training cells "
            f"(all their cells are in the held-out groups). Fix: hold out fewer groups, or groups "
            "that leave every class some training cells."
        )
    train_groups = sorted({str(g) for g in groups[train]})
    return train, test, train_groups, held


def _classification_metrics(true: np.ndarray, pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(true, pred, labels=classes, zero_division=0)
    rows = {"overall": {"accuracy": accuracy_score(true, pred),
                        "macro_f1": f1_score(true, pred, labels=classes, average="macro",
                                             zero_division=0),
                        "n_cells": len(true)}}
    for i, c in enumerate(classes):
        rows[c] = {"precision": p[i], "recall": r[i], "f1": f[i], "n_cells": int(s[i])}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df = df[["accuracy", "macro_f1", "precision", "recall", "f1", "n_cells"]]
    df["n_cells"] = df["n_cells"].astype(int)
    return df


def cell_classifier(
    model,
    dataset,
    label_key: str,
    *,
    group_key: str | None = None,
    test_groups=None,
    test_size: float = 0.2,
    freeze_layers: int = 0,
    freeze_embeddings: bool | None = None,
    epochs: float = CELL_DEFAULTS["epochs"],
    learning_rate: float = CELL_DEFAULTS["learning_rate"],
    batch_size: int = CELL_DEFAULTS["batch_size"],
    classes: Sequence[str] | None = None,
    lora=None,
    device=None,
    seed: int = 0,
    progress: bool = True,
) -> CellClassifierResult:
    """Fine-tune a pretrained model to classify cells, and score it on held-out cells.

    A ``BertForSequenceClassification`` is built on a copy of ``model``'s encoder (the model
    you pass is not changed), trained with the Hugging Face ``Trainer`` on the training cells,
    and scored on the held-out cells. As in the reference, the classification head reads the
    first position of the last layer (for V1 that is the cell's top-ranked gene; for V2 the
    ``<cls>`` token) through BERT's pooler.

    Parameters
    ----------
    model
        A pretrained model from :func:`course_helpers.model.load_model` (a fine-tuned cell
        classifier with the same classes is trained further).
    dataset
        Tokenized cells (``datasets.Dataset`` with ``input_ids`` and the label column; tokenize
        with ``cell_attrs=("cell_id", label_key, group_key)``).
    label_key
        Column with each cell's class (e.g. ``"state"``).
    group_key
        Column with groups that must not be split (e.g. ``"donor"``): a group is entirely in the
        training part or entirely held out.
    test_groups
        Groups to hold out (with ``group_key``). ``None``: about ``test_size`` of the groups of
        each class, chosen with ``seed``.
    test_size
        Fraction of cells (no ``group_key``) or of groups per class held out.
    freeze_layers, freeze_embeddings
        Freeze the first ``freeze_layers`` encoder layers (and the embeddings): see :func:`freeze`.
    epochs, learning_rate, batch_size
        Training settings (linear decay after a 10 % warm-up, weight decay 0.001, as the
        reference). Defaults suit the teaching model on a CPU; for Geneformer V1-10M the
        reference uses ``learning_rate=5e-5``, ``batch_size=12``, 10 epochs.
    classes
        Order of the classes (default: sorted). The first is class 0.
    lora
        ``None`` (train the whole model), a LoRA rank (``8``) or a dict of ``peft.LoraConfig``
        settings: only low-rank adapters and the head are trained, then merged back so the result
        is a plain BERT classifier. Needs ``peft``.
    device
        ``None`` (GPU when available), ``"cpu"``, ``"cuda"``, ...
    seed
        Seeds the split, the head's initialisation, the data order and dropout: the same seed
        gives the same model and scores.
    progress
        Show a progress bar over the training steps.

    Returns
    -------
    CellClassifierResult
        ``.model``, ``.metrics``, ``.predictions``, ``.history``, ``.save(path)``.

    Raises
    ------
    CourseInputError
        Missing label or group column, a single class, a class with too few cells (or groups) for
        the split, held-out groups that do not occur, a classifier whose label count differs.

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.load_model("teaching")                                   # doctest: +SKIP
    >>> cm = ch.data.load_tissue()                                          # doctest: +SKIP
    >>> cm = cm[cm.obs.cell_type == "cardiomyocyte"].copy()                 # doctest: +SKIP
    >>> ds = ch.tokenize.tokenize(cm, model.gene_vocab,
    ...                           cell_attrs=("cell_id", "state", "donor")) # doctest: +SKIP
    >>> res = ch.finetune.cell_classifier(model, ds, "state", group_key="donor",
    ...                                   test_groups=["H3", "F3"])        # doctest: +SKIP
    >>> res.metrics.loc["overall", "accuracy"] > 0.5                        # doctest: +SKIP
    True
    """
    _encoder_owner(model)
    ds = _as_dataset(dataset)
    labels = np.asarray(_clean_labels(
        _column(ds, label_key, "label", f"tokenize with cell_attrs=('cell_id', {label_key!r}, "
                "...) so the labels travel with the cells."), label_key), dtype=object)
    classes = _class_order(labels.tolist(), classes)
    if len(classes) < 2:
        raise CourseInputError(
            f"Column {label_key!r} holds a single class ({classes[0]!r}): there is nothing to "
            "tell apart. Fix: include cells of at least two classes."
        )
    groups = None
    if group_key is not None:
        groups = np.asarray([str(g) for g in _column(
            ds, group_key, "group", f"tokenize with cell_attrs=(..., {group_key!r}) or leave "
            "group_key=None.")], dtype=object)
    try:
        test_size = float(test_size)
    except (TypeError, ValueError) as err:
        raise CourseInputError(f"test_size must be a number, got {test_size!r}.") from err
    if not 0 < test_size < 1:
        raise CourseInputError(f"test_size must be between 0 and 1, got {test_size}.")
    epochs, learning_rate, batch_size = _check_training(epochs, learning_rate, batch_size)
    seed = _check_int(seed, "seed", 0)
    if lora is not None and freeze_layers:
        raise CourseInputError(
            "Pass either lora=... or freeze_layers=..., not both: LoRA already keeps the "
            "pretrained weights fixed and trains small adapters."
        )
    train, test, train_groups, held = _split_cells(labels, groups, test_groups, test_size, seed,
                                                   classes, group_key)
    dev = pick_device(device)
    _require_accelerate()

    clf = _make_classifier(model, "cell", classes, seed)
    freeze(clf, freeze_layers, freeze_embeddings)
    trainee = _apply_lora(clf, lora, "cell") if lora is not None else clf
    class_id = {c: i for i, c in enumerate(classes)}
    seqs = [list(x) for x in ds["input_ids"]]

    def rows(idx):
        return {"input_ids": [seqs[i] for i in idx],
                "labels": [class_id[labels[i]] for i in idx],
                "length": [len(seqs[i]) for i in idx]}

    test_seqs = [seqs[i] for i in test]
    test_y = np.asarray([class_id[labels[i]] for i in test])
    last = {}

    def held_out_loss(m):  # also keeps the last epoch's probabilities as the predictions
        p = _logits(m, test_seqs, max(batch_size, 32), False, "")
        last["probs"] = p
        return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), test_y], 1e-12, None))))

    trained, history, seconds = _train(
        trainee, rows(train), held_out_loss, task="cell", epochs=epochs,
        learning_rate=learning_rate, batch_size=batch_size, seed=seed, device=dev,
        progress=progress, desc="fine-tuning (cells)")
    final = _finish(trained, clf, lora)
    if lora is not None or "probs" not in last:  # merged weights: predict again to be exact
        last["probs"] = _logits(final, test_seqs, max(batch_size, 32), False, "")
    probs = last["probs"]
    pred = np.asarray([classes[j] for j in probs.argmax(1)], dtype=object)
    preds = pd.DataFrame({"index": test})
    if "cell_id" in ds.column_names:
        all_ids = ds["cell_id"]
        preds["cell_id"] = [all_ids[int(i)] for i in test]
    if groups is not None:
        preds[group_key] = groups[test]
    preds["true"] = labels[test]
    preds["predicted"] = pred
    for j, c in enumerate(classes):
        preds[f"p_{c}"] = probs[:, j]
    metrics = _classification_metrics(labels[test].astype(str), pred.astype(str), classes)
    settings = {"label_key": label_key, "group_key": group_key, "test_size": test_size,
                    "freeze_layers": int(freeze_layers), "freeze_embeddings": freeze_embeddings,
                    "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
                    "lora": lora, "seed": seed, "device": str(dev), "n_train": len(train), "n_test": len(test)}
    return CellClassifierResult(model=final, metrics=metrics, predictions=preds, history=history,
                                classes=classes, train_groups=train_groups, test_groups=held,
                                train_seconds=seconds, settings=settings)


# --------------------------------------------------------------------------------------------
# gene classification
# --------------------------------------------------------------------------------------------
@dataclass
class GeneClassifierResult:
    """What :func:`gene_classifier` returns.

    Attributes
    ----------
    metrics
        One row per fold (``roc_auc`` over held-out genes, each scored by its mean probability
        over the cells it occurs in; ``token_roc_auc`` over every occurrence, as the reference
        reports; ``accuracy``; gene, cell counts and training seconds) and a ``"mean"`` row.
    predictions
        One row per labelled gene, from the fold where it was held out: ``gene`` (Ensembl ID),
        ``symbol``, ``true``, ``fold``, ``p_<class>``, ``predicted``, ``n_cells``.
    history
        Training loss per epoch and fold.
    models
        The fine-tuned ``BertForTokenClassification`` of each fold.
    classes, positive, settings
        Class order, the class scored as positive by ROC AUC (binary tasks), arguments used.
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    history: pd.DataFrame
    models: list
    classes: list[str]
    positive: str | None = None
    settings: dict = field(default_factory=dict)

    @property
    def roc_auc(self) -> float:
        """Mean held-out ROC AUC over the folds."""
        return float(self.metrics.loc["mean", "roc_auc"])

    def roc_curve(self, positive: str | None = None) -> pd.DataFrame:
        """ROC curve data of the held-out genes, per fold and pooled over folds.

        Parameters
        ----------
        positive
            Class treated as positive (default: :attr:`positive`, the second class of a binary
            task). Required for tasks with more than two classes (one-vs-rest).

        Returns
        -------
        pandas.DataFrame
            Columns ``fold`` (an integer, or ``"all"`` for the pooled curve), ``fpr``, ``tpr``,
            ``threshold``, ``auc`` (of that curve).
        """
        from sklearn.metrics import roc_auc_score, roc_curve

        pos = positive if positive is not None else self.positive
        if pos is None:
            raise CourseInputError(
                f"This task has {len(self.classes)} classes {self.classes}. Fix: say which one is "
                "positive, e.g. result.roc_curve(positive=...)."
            )
        if str(pos) not in self.classes:
            raise CourseInputError(f"positive={pos!r} is not one of the classes {self.classes}.")
        pos = str(pos)
        parts = []
        preds = self.predictions
        for fold, sub in [*preds.groupby("fold"), ("all", preds)]:
            y = (sub["true"] == pos).to_numpy()
            if y.all() or not y.any():
                continue
            s = sub[f"p_{pos}"].to_numpy()
            fpr, tpr, thr = roc_curve(y, s)
            parts.append(pd.DataFrame({"fold": fold, "fpr": fpr, "tpr": tpr, "threshold": thr,
                                       "auc": roc_auc_score(y, s)}))
        return pd.concat(parts, ignore_index=True)

    def save(self, path, *, fold: int = 0, overwrite: bool = False) -> Path:
        """Write one fold's classifier folder (see :func:`save_classifier`)."""
        if not 0 <= int(fold) < len(self.models):
            raise CourseInputError(f"fold must be 0..{len(self.models) - 1}, got {fold}.")
        return save_classifier(self.models[int(fold)], path, overwrite=overwrite,
                               extra={"task": "gene_classifier", "fold": int(fold)})

    def __repr__(self) -> str:
        return (f"GeneClassifierResult(classes={self.classes}, folds={len(self.models)}, "
                f"mean roc_auc={self.roc_auc:.3f}, n_genes={len(self.predictions)})")


def _resolve_gene_labels(gene_labels, vocab) -> tuple[list[int], list[str], list[str]]:
    if isinstance(gene_labels, pd.Series):
        gene_labels = gene_labels.to_dict()
    if not isinstance(gene_labels, Mapping) or not gene_labels:
        raise CourseInputError(
            "gene_labels must be a non-empty mapping gene -> class, e.g. {'NPPA': 'target', "
            "'GAPDH': 'other'} (gene symbols or Ensembl IDs)."
        )
    tokens, classes, unknown = [], [], []
    for gene, cls in gene_labels.items():
        if cls is None or (isinstance(cls, float) and np.isnan(cls)):
            raise CourseInputError(f"Gene {gene!r} has no class. Fix: give every gene a class.")
        try:
            tokens.append(int(vocab.tokens([gene])[0]))
        except (CourseInputError, KeyError, TypeError, ValueError):
            unknown.append(str(gene))
            continue
        classes.append(str(cls))
    if unknown:
        raise CourseInputError(
            f"{len(unknown)} gene(s) in gene_labels are not in the model's vocabulary: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}. Fix: check the spelling (symbols "
            "or Ensembl IDs of this model's vocabulary) or remove them."
        )
    seen: dict[int, str] = {}
    for t, c in zip(tokens, classes):
        if t in seen and seen[t] != c:
            raise CourseInputError(
                f"Gene {vocab.symbols([t])[0]} is listed twice with different classes "
                f"({seen[t]!r} and {c!r}), e.g. once by symbol and once by Ensembl ID. Fix: keep one."
            )
        seen[t] = c
    toks = list(seen)
    return toks, [seen[t] for t in toks], vocab.symbols(toks)


def gene_classifier(
    model,
    dataset,
    gene_labels: Mapping,
    *,
    n_splits: int = 5,
    freeze_layers: int = 0,
    freeze_embeddings: bool | None = None,
    epochs: float = GENE_DEFAULTS["epochs"],
    learning_rate: float = GENE_DEFAULTS["learning_rate"],
    batch_size: int = GENE_DEFAULTS["batch_size"],
    max_cells: int | None = None,
    lora=None,
    device=None,
    seed: int = 0,
    progress: bool = True,
) -> GeneClassifierResult:
    """Fine-tune a model to classify genes (token classification), cross-validated over genes.

    The labelled genes are split into ``n_splits`` folds, stratified by class. For each fold a
    fresh ``BertForTokenClassification`` (a copy of ``model``'s encoder plus a new head) is trained
    on the cells that contain training genes, with a label on every occurrence of a training gene
    and none elsewhere (the held-out genes stay in the cells, unlabelled). It then predicts the
    held-out genes in the cells where they occur; a gene's score is its mean class probability
    over those cells. No gene is ever in both parts of a fold.

    Parameters
    ----------
    model
        A pretrained model from :func:`course_helpers.model.load_model`.
    dataset
        Tokenized cells (``input_ids``), e.g. one cell type.
    gene_labels
        Mapping gene (symbol or Ensembl ID) -> class, e.g. ``{"NPPA": "target", ...}``.
    n_splits
        Number of folds (every class needs at least this many genes).
    freeze_layers, freeze_embeddings
        See :func:`freeze`.
    epochs, learning_rate, batch_size
        Training settings per fold (the reference trains gene classifiers for 1 epoch).
    max_cells
        Use at most this many cells per fold for training and for prediction (a seeded random
        sample of the cells that contain the fold's genes, plus one cell for any held-out gene the
        sample missed); ``None``: all.
    lora
        LoRA rank or settings (see :func:`cell_classifier`).
    device, seed, progress
        As in :func:`cell_classifier`; the bar counts folds.

    Returns
    -------
    GeneClassifierResult
        ``.metrics`` (per fold and mean ROC AUC), ``.predictions`` (per gene), ``.roc_curve()``.

    Raises
    ------
    CourseInputError
        Unknown genes, a single class, a class with fewer genes than ``n_splits``, labelled genes
        that occur in no cell.

    Examples
    --------
    >>> labels = {g: "target" for g in ["NPPA", "MYL7", "TNNT2"]}          # doctest: +SKIP
    >>> labels.update({g: "other" for g in ["GAPDH", "ACTB", "B2M"]})      # doctest: +SKIP
    >>> res = ch.finetune.gene_classifier(model, ds, labels, n_splits=3)   # doctest: +SKIP
    >>> res.metrics.loc["mean", "roc_auc"]                                  # doctest: +SKIP
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    _encoder_owner(model)
    vocab = _vocab_of(model)
    ds = _as_dataset(dataset)
    tokens, gene_cls, symbols = _resolve_gene_labels(gene_labels, vocab)
    classes = sorted(set(gene_cls))
    if len(classes) < 2:
        raise CourseInputError(
            f"gene_labels hold a single class ({classes[0]!r}). Fix: label genes of at least two "
            "classes (e.g. targets and non-targets)."
        )
    n_splits = _check_int(n_splits, "n_splits", 2)
    counts = pd.Series(gene_cls).value_counts()
    small = counts[counts < n_splits]
    if len(small):
        raise CourseInputError(
            f"Class(es) {dict(small)} have fewer genes than n_splits={n_splits}, so some fold "
            f"would test no gene of that class. Fix: label more genes or use n_splits="
            f"{int(counts.min())} or fewer (at least 2)."
        )
    epochs, learning_rate, batch_size = _check_training(epochs, learning_rate, batch_size)
    seed = _check_int(seed, "seed", 0)
    if max_cells is not None:
        max_cells = _check_int(max_cells, "max_cells", 1)
    if lora is not None and freeze_layers:
        raise CourseInputError("Pass either lora=... or freeze_layers=..., not both.")
    dev = pick_device(device)

    seqs = [np.asarray(x, dtype=np.int64) for x in ds["input_ids"]]
    tok_arr = np.asarray(tokens, dtype=np.int64)
    contains = np.zeros((len(seqs), len(tokens)), dtype=bool)
    for i, s in enumerate(seqs):
        contains[i] = np.isin(tok_arr, s)
    n_cells_per_gene = contains.sum(0)
    never = [symbols[j] for j in np.flatnonzero(n_cells_per_gene == 0)]
    if never:
        raise CourseInputError(
            f"{len(never)} labelled gene(s) occur in no cell of the dataset: {never[:10]}. Fix: "
            "remove them from gene_labels, or use cells that express them."
        )
    _require_accelerate()
    class_id = {c: i for i, c in enumerate(classes)}
    y = np.asarray([class_id[c] for c in gene_cls])
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    rng = np.random.default_rng(seed)
    pred_rows, metric_rows, hist, models = [], [], [], []
    folds = list(skf.split(np.zeros(len(y)), y))
    for k, (tr, te) in enumerate(_progress(folds, enabled=progress, desc="gene CV folds")):
        lab_of = {int(tok_arr[j]): int(y[j]) for j in tr}
        train_cells = np.flatnonzero(contains[:, tr].any(1))
        test_cells = np.flatnonzero(contains[:, te].any(1))
        if max_cells is not None:
            if len(train_cells) > max_cells:
                train_cells = np.sort(rng.choice(train_cells, max_cells, replace=False))
            if len(test_cells) > max_cells:
                test_cells = np.sort(rng.choice(test_cells, max_cells, replace=False))
                # every held-out gene must occur in at least one sampled cell
                for j in te[~contains[np.ix_(test_cells, te)].any(0)]:
                    test_cells = np.union1d(test_cells, [rng.choice(np.flatnonzero(contains[:, j]))])
        rows = {"input_ids": [], "labels": [], "length": []}
        for i in train_cells:
            s = seqs[i]
            rows["input_ids"].append(s.tolist())
            rows["labels"].append([lab_of.get(int(t), _IGNORE) for t in s])
            rows["length"].append(len(s))
        clf = _make_classifier(model, "gene", classes, seed)
        freeze(clf, freeze_layers, freeze_embeddings)
        trainee = _apply_lora(clf, lora, "gene") if lora is not None else clf
        trained, history, seconds = _train(
            trainee, rows, None, task="gene", epochs=epochs, learning_rate=learning_rate,
            batch_size=batch_size, seed=seed, device=dev, progress=False, desc="")
        final = _finish(trained, clf, lora)
        models.append(final)
        hist.append(history.assign(fold=k).reset_index())
        # predict the held-out genes where they occur
        probs = _logits(final, [seqs[i].tolist() for i in test_cells], max(batch_size, 32),
                        False, "", token_level=True)
        te_tok = {int(tok_arr[j]): j for j in te}
        sums = np.zeros((len(tokens), len(classes)))
        n_occ = np.zeros(len(tokens), dtype=int)
        tok_true, tok_score = [], []
        for ci, i in enumerate(test_cells):
            s = seqs[i]
            for pos, t in enumerate(s.tolist()):
                j = te_tok.get(t)
                if j is None:
                    continue
                sums[j] += probs[ci][pos]
                n_occ[j] += 1
                tok_true.append(int(y[j]))
                tok_score.append(probs[ci][pos])
        fold_rows = []
        for j in te:
            p = sums[j] / max(n_occ[j], 1)
            row = {"gene": vocab.id_to_token.get(int(tok_arr[j]), str(tok_arr[j])),
                   "symbol": symbols[j], "true": classes[y[j]], "fold": k}
            row.update({f"p_{c}": float(p[ci]) for ci, c in enumerate(classes)})
            row["predicted"] = classes[int(np.argmax(p))]
            row["n_cells"] = int(n_occ[j])
            fold_rows.append(row)
        fold_df = pd.DataFrame(fold_rows)
        pred_rows.append(fold_df)
        tok_true = np.asarray(tok_true)
        tok_score = np.asarray(tok_score) if tok_score else np.zeros((0, len(classes)))
        metric_rows.append({
            "fold": k,
            "roc_auc": _auc(roc_auc_score, y[te], fold_df[[f"p_{c}" for c in classes]].to_numpy(),
                            len(classes)),
            "token_roc_auc": _auc(roc_auc_score, tok_true, tok_score, len(classes)),
            "accuracy": float((fold_df["predicted"] == fold_df["true"]).mean()),
            "n_train_genes": len(tr), "n_test_genes": len(te),
            "n_train_cells": len(train_cells), "n_test_cells": len(test_cells),
            "train_seconds": seconds,
        })
    metrics = pd.DataFrame(metric_rows).set_index("fold")
    mean = metrics.mean(numeric_only=True)
    metrics.loc["mean"] = mean
    for c in ("n_train_genes", "n_test_genes", "n_train_cells", "n_test_cells"):
        metrics.loc["mean", c] = round(float(mean[c]), 1)
    predictions = pd.concat(pred_rows, ignore_index=True)
    history = pd.concat(hist, ignore_index=True)[["fold", "epoch", "train_loss"]]
    settings = {"n_splits": n_splits, "freeze_layers": int(freeze_layers),
                    "freeze_embeddings": freeze_embeddings, "epochs": epochs,
                    "learning_rate": learning_rate, "batch_size": batch_size, "max_cells": max_cells,
                    "lora": lora, "seed": seed, "device": str(dev)}
    return GeneClassifierResult(metrics=metrics, predictions=predictions, history=history,
                                models=models, classes=classes,
                                positive=classes[1] if len(classes) == 2 else None,
                                settings=settings)


def _auc(roc_auc_score, y_true, scores, n_classes: int) -> float:
    """ROC AUC (binary: score of class 1; multiclass: macro one-vs-rest); NaN if undefined."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0 or len(np.unique(y_true)) < 2:
        return float("nan")
    scores = np.asarray(scores, dtype=float)
    if n_classes == 2:
        return float(roc_auc_score(y_true, scores[:, 1]))
    if len(np.unique(y_true)) < n_classes:
        return float("nan")
    scores = scores / scores.sum(1, keepdims=True)
    return float(roc_auc_score(y_true, scores, multi_class="ovr", labels=list(range(n_classes))))
