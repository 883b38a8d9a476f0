"""Shared helpers for the check functions: feedback printing, placeholders, safe calls."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np  # noqa: F401  (re-exported for chapter modules)


def _feedback(ok: bool, good: str, bad: str) -> bool:
    print(("Correct! " + good) if ok else ("Not quite. " + bad))
    return bool(ok)


def _missing(answer: Any, what: str) -> bool:
    if answer is None or answer is Ellipsis or (isinstance(answer, str) and not answer.strip()):
        print(f"Not answered yet: {what}")
        return True
    return False


def _safe_call(fn: Callable, *args):
    try:
        return fn(*args), None
    except Exception as exc:  # noqa: BLE001 - report any learner error as feedback
        return None, f"{type(exc).__name__}: {exc}"


def _number_from(fn: Callable, *args) -> tuple[float | None, str | None]:
    """Call a learner's function that should return one number.

    Returns ``(value, None)``, or ``(None, problem)`` where ``problem`` is the feedback to print
    ("Not quite. ..."), so a check can stop at the first problem.
    """
    got, err = _safe_call(fn, *args)
    if err:
        return None, f"Not quite. Your function raised {err}"
    try:
        return float(got), None
    except (TypeError, ValueError):
        return None, f"Not quite. return a single number, got {type(got).__name__}."


def _as_number(answer: Any, kind: type, bad: str):
    """``kind(answer)`` (``int`` or ``float``), or ``None`` after printing ``bad`` as feedback."""
    try:
        return kind(answer)
    except (TypeError, ValueError):
        _feedback(False, "", bad)
        return None


def _expected(answer: Any, what: str, reference: Callable, args: tuple, unusable: str):
    """``(True, expected)`` to go on checking, or ``(False, None)`` after printing feedback.

    Feedback is printed when ``answer`` is still a placeholder (``what`` says what to write) or
    when ``reference(*args)`` fails (``unusable`` says what to pass instead).
    """
    if _missing(answer, what):
        return False, None
    expected, err = _safe_call(reference, *args)
    if err:
        _feedback(False, "", f"could not recompute {unusable.format(err=err)}")
        return False, None
    return True, expected
