"""Tests for course_helpers.attention (extract.py): cell_attentions and the eager switch."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from course_helpers._utils import CourseInputError
from course_helpers.attention import (
    aggregate_attention,
    cell_attentions,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_LAYERS, N_HEADS, VOCAB = 2, 4, 50  # the tiny model of tests/attention/conftest.py


def test_sdpa_switch_and_error(ds, tiny_model):
    m = tiny_model("sdpa")
    ref = cell_attentions(tiny_model("eager"), ds["input_ids"][:3])
    got = cell_attentions(m, ds["input_ids"][:3])
    assert m.config._attn_implementation == "sdpa"  # switched back
    assert len(got) == N_LAYERS and got[0].shape[:2] == (3, N_HEADS)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b)
    rows = got[0][0, 0, :len(ds["input_ids"][0])].sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))
    with pytest.raises(CourseInputError, match="eager"):
        cell_attentions(m, ds["input_ids"][:3], switch_to_eager=False)
    with pytest.raises(CourseInputError, match="SDPA"):
        aggregate_attention(m, ds, genes=[2, 3], switch_to_eager=False, progress=False)


def test_model_configured_to_output_attentions(model, ds, tiny_model):
    """load_model(..., output_attentions=True) sets config.output_attentions; same result."""
    m = tiny_model()
    m.config.output_attentions = True
    a = aggregate_attention(m, ds, genes=list(range(2, 20)), progress=False)
    b = aggregate_attention(model, ds, genes=list(range(2, 20)), progress=False)
    np.testing.assert_allclose(a.sums, b.sums, rtol=1e-6, atol=1e-7)
