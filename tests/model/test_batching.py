"""course_helpers.model.batching: pad_batch, length_sorted_batches, forward_memory_bytes."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers._utils import CourseInputError
from course_helpers.model import (
    forward_memory_bytes,
    length_sorted_batches,
    load_model,
    pad_batch,
)


@pytest.fixture(scope="module")
def fixture_model(fixture_model_dir):
    return load_model(fixture_model_dir, device="cpu")


def test_pad_batch():
    ids, mask = pad_batch([[5, 6, 7], np.array([8]), torch.tensor([9, 10])], pad_token_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    ids, _ = pad_batch([[1], [2, 3]], pad_token_id=7, device="cpu")
    assert ids.tolist() == [[1, 7], [2, 3]]
    with pytest.raises(CourseInputError):
        pad_batch([], 0)


def test_length_sorted_batches():
    batches = length_sorted_batches([3, 10, 5, 10, 1], 2)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0], [4]]
    flat = np.concatenate(length_sorted_batches(np.arange(37) % 7, 5))
    assert sorted(flat.tolist()) == list(range(37))
    with pytest.raises(CourseInputError):
        length_sorted_batches([1, 2], 0)


def test_forward_memory_bytes(fixture_model):
    small = forward_memory_bytes(fixture_model, 4, 256)
    big = forward_memory_bytes(fixture_model, 4, 256, output_attentions=True)
    assert 0 < small < big
    # attention maps dominate: layers x heads x L^2 x 4 bytes per cell
    assert big - small == 6 * 4 * 4 * 256 * 256 * 4
