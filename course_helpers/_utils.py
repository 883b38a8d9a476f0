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


class CourseWarning(UserWarning):
    """Base class of the warnings course helpers emit.

    Code that reacts to a warning (a widget, a notebook) catches its *class*, never its text:
    each module defines subclasses for the situations it reports (e.g. too few cells).
    """


class CourseDeprecationWarning(FutureWarning):
    """A parameter or function was renamed; the old spelling still works for now.

    A ``FutureWarning`` (not a ``DeprecationWarning``) so that notebooks show it.
    """


def find_stack_level() -> int:
    """``stacklevel`` for ``warnings.warn`` that points at the first caller outside the package.

    Decorators and helper functions between the user's call and the warning do not matter, so a
    warning always names the user's line (as pandas' ``find_stack_level`` does).

    Examples
    --------
    >>> find_stack_level()   # called from outside the package: the caller's own line
    1
    """
    import inspect
    import os

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = inspect.currentframe()
    level = 0
    try:
        while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
            frame = frame.f_back
            level += 1
    finally:
        del frame
    return max(level, 1)


def renamed_parameters(**renames: str):
    """Decorator: accept old keyword names and pass them on under their new names, with a warning.

    Parameters
    ----------
    **renames
        ``old_name="new_name"`` pairs.

    Examples
    --------
    >>> import warnings
    >>> @renamed_parameters(layer="emb_layer")
    ... def f(x, *, emb_layer=-1):
    ...     return emb_layer
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     f(1, layer=0)
    0
    >>> print(caught[0].message)
    f(layer=...) is now f(emb_layer=...); the old name will stop working in a later version.
    >>> f(1, layer=0, emb_layer=0)
    Traceback (most recent call last):
    ...
    course_helpers._utils.CourseInputError: f() got both layer= and emb_layer=. Fix: pass only emb_layer=.
    """
    import functools
    import warnings

    def wrap(func):
        name = func.__qualname__.split(".<locals>.")[-1].removesuffix(".__init__")

        @functools.wraps(func)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise CourseInputError(
                            f"{name}() got both {old}= and {new}=. Fix: pass only {new}=."
                        )
                    warnings.warn(
                        f"{name}({old}=...) is now {name}({new}=...); the old name will stop "
                        "working in a later version.",
                        CourseDeprecationWarning,
                        stacklevel=find_stack_level(),
                    )
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        inner.__renamed_parameters__ = dict(renames)
        return inner

    return wrap
