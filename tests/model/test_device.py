"""course_helpers.model.device: pick_device."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers._utils import CourseInputError
from course_helpers.model import (
    pick_device,
)


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in {"cuda", "mps", "cpu"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    with pytest.raises(CourseInputError, match="cuda"):
        pick_device("cuda")
    with pytest.raises(CourseInputError, match="mps"):
        pick_device("mps")
    with pytest.raises(CourseInputError):
        pick_device("not-a-device")
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: True)
        assert pick_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"  # cuda beats mps
