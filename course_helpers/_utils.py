"""Small shared utilities: the course's error type, seeding and progress bars.

Importable by every module (it imports nothing from ``course_helpers``).
"""
from __future__ import annotations

import random

import numpy as np


class CourseInputError(ValueError):
    """Bad input to a course helper.

    The message always says what is wrong and how to fix it.

    Examples
    --------
    >>> raise CourseInputError("n_counts is missing. Fix: adata.obs['n_counts'] = adata.X.sum(1)")
    Traceback (most recent call last):
    ...
    course_helpers._utils.CourseInputError: n_counts is missing. Fix: ...
    """


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and (if installed) torch for reproducible results.

    Examples
    --------
    >>> set_seed(0)
    """
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def progress(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` progress bar that can be switched off with ``enabled=False``."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled, **kwargs)
