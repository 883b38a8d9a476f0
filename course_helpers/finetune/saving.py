"""Saving a fine-tuned model in the layout course_helpers.model.load_model reads (safetensors)."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from .._utils import CourseInputError
from .inputs import _encoder_owner, _model_version, _vocab_of


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
    >>> import os, tempfile, course_helpers as ch
    >>> from course_helpers.finetune import new_classifier
    >>> clf = new_classifier(ch.model.load_model("teaching"), ["healthy", "diseased"])
    >>> path = save_classifier(clf, os.path.join(tempfile.mkdtemp(), "my_classifier"))
    >>> sorted(p.name for p in path.iterdir())
    ['config.json', 'model.safetensors', 'vocab.tsv']

    A trained classifier (``result.model`` from :func:`cell_classifier`) is saved the same way;
    ``overwrite=True`` replaces an earlier save:

    >>> save_classifier(clf, path, overwrite=True) == path
    True
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
