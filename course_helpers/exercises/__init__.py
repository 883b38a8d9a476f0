"""Check functions for the course's exercises, one module per chapter.

Each ``check_*`` prints friendly feedback and returns ``True`` or ``False``. They never raise on an
empty or wrong answer: a learner's cell holds a placeholder (``answer = None``) and the notebook must
still run top to bottom. All checks are re-exported here: ``ch.exercises.check_attention(...)``.

Examples
--------
>>> from course_helpers import exercises
>>> exercises.check_attention(None)
Not answered yet: write attention(Q, K, V) returning (output, weights).
False
"""
from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("ch"):
        _mod = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in dir(_mod):
            if _name.startswith(("check_", "reference_")):
                if _name in __all__:
                    raise ImportError(f"course_helpers.exercises: {_name} is defined twice "
                                      f"(again in {_info.name}); give it a chapter-specific name")
                globals()[_name] = getattr(_mod, _name)
                __all__.append(_name)
