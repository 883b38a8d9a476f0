"""The exercises package re-exports every check of every chapter file, each name once."""
from __future__ import annotations

import importlib
import pkgutil

import course_helpers.exercises as ex


def test_every_check_is_reexported_once():
    seen: dict[str, str] = {}
    for info in pkgutil.iter_modules(ex.__path__):
        if not info.name.startswith("ch"):
            continue
        mod = importlib.import_module(f"course_helpers.exercises.{info.name}")
        for name in dir(mod):
            obj = getattr(mod, name)
            if name.startswith(("check_", "reference_")) and obj.__module__ == mod.__name__:
                assert name not in seen, f"{name} is defined in {seen.get(name)} and {info.name}"
                seen[name] = info.name
                assert getattr(ex, name) is obj, f"exercises.{name} is not {info.name}.{name}"
    assert sorted(seen) == sorted(ex.__all__)
    assert len(seen) >= 38
