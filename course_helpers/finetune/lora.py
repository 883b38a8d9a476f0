"""Low-rank adapters (LoRA, with peft) instead of training the whole encoder."""
from __future__ import annotations

from collections.abc import Mapping

from .._utils import CourseInputError


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


