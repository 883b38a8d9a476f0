"""Tests for course_helpers.attention (memory.py): the memory estimate and guard."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from course_helpers._utils import CourseInputError
from course_helpers.attention import (
    aggregate_attention,
    estimate_attention_memory,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_memory_independent_of_cell_count(model, make_cells):
    genes = list(range(2, 42))
    small = aggregate_attention(model, make_cells(10, seed=1), genes=genes, progress=False)
    large = aggregate_attention(model, make_cells(100, seed=2), genes=genes, progress=False)
    assert small.sums.shape == large.sums.shape and small.counts.shape == large.counts.shape
    assert small.nbytes == large.nbytes
    assert large.counts.diagonal().sum() > 5 * small.counts.diagonal().sum()
    assert estimate_attention_memory(10, 24, 2, 4, 8, 40) == estimate_attention_memory(
        100, 24, 2, 4, 8, 40)


def test_memory_guard_message(model, ds):
    est = estimate_attention_memory(11, 24, 2, 4, 8, 38, hidden_size=32)
    with pytest.raises(CourseInputError) as err:
        aggregate_attention(model, ds, genes=list(range(2, 40)), max_memory=1000,
                            progress=False)
    msg = str(err.value)
    assert "GB" in msg and "batch_size" in msg and "genes" in msg
    assert f"{est / 2**30:.2f} GB" in msg
    big = estimate_attention_memory(1000, 2048, 6, 4, 8, 1000)
    assert big > 2**30  # V1-sized request: attention maps dominate
    assert estimate_attention_memory(1000, 2048, 6, 4, 4, 1000) < big
    with pytest.raises(CourseInputError, match="max_memory"):
        aggregate_attention(model, ds, genes=[2, 3], max_memory="nonsense", progress=False)
