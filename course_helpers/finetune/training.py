"""One training run with the Hugging Face Trainer: batching, progress, training arguments,
deterministic seed.
"""
from __future__ import annotations

import inspect
import tempfile
import time

import numpy as np
import pandas as pd

from .._utils import progress as _progress
from ..model import model_facts, pad_batch
from .inputs import _IGNORE


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

    pad = model_facts(clf).pad_id
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
