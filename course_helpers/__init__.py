"""course_helpers: companion package for the course *Gene networks with Geneformer*.

Submodules are imported lazily, so ``import course_helpers as ch`` is fast and
``ch.tokenize``, ``ch.model``, ``ch.perturb`` ... load on first use.

Examples
--------
>>> import course_helpers as ch
>>> ch.__version__
'0.1.0'
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "measure", "vocab", "data", "tokenize", "model", "embed", "attention", "perturb", "finetune",
    "networks", "baselines", "plotting", "widgets", "exercises",
)

__all__ = [  # noqa: RUF022 - submodules first, in layer order
    "measure", "vocab", "data", "tokenize", "model", "embed", "attention", "perturb", "finetune",
    "networks", "baselines", "plotting", "widgets", "exercises",
    "doctor", "setup", "CourseInputError", "__version__",
]

# Bound eagerly (doctor.py imports only the standard library at top level): importing the
# submodule ``course_helpers.doctor`` would otherwise replace the function with the module.
from .doctor import doctor, setup


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "CourseInputError":
        from ._utils import CourseInputError

        return CourseInputError
    raise AttributeError(f"module 'course_helpers' has no attribute {name!r}")
