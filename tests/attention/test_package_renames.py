"""Renamed keywords of course_helpers.attention: the old spelling warns and gives the same result.

``layers=`` -> ``attn_layers=`` (the functions), ``layer=`` -> ``attn_layer=`` (the methods of
AttentionResult and StateContrast), ``estimate_attention_memory(layers=)`` -> ``n_layers=`` (a
count) with ``batch_size``/``n_genes`` keyword-only (old positions still accepted).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")
pytest.importorskip("transformers")

from course_helpers._utils import CourseDeprecationWarning
from course_helpers.attention import (
    aggregate_attention,
    attention_by_rank,
    attention_vs_cell_length,
    head_summary,
    state_contrast,
)

N_LAYERS, N_HEADS, VOCAB = 3, 2, 40
GENES = list(range(2, 20))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=N_LAYERS,
                     num_attention_heads=N_HEADS, intermediate_size=32,
                     max_position_embeddings=64, attn_implementation="eager")
    return BertForMaskedLM(cfg).eval()


@pytest.fixture(scope="module")
def ds():
    rng = np.random.default_rng(2)
    ids = [[int(t) for t in rng.choice(np.arange(2, VOCAB), size=int(rng.integers(5, 15)),
                                       replace=False)] for _ in range(8)]
    return datasets.Dataset.from_dict({"input_ids": ids, "length": [len(x) for x in ids],
                                       "state": ["a", "b"] * 4})


def _warns(old: str, new: str):
    return pytest.warns(CourseDeprecationWarning, match=rf"\({old}=\.\.\.\) is now .*\({new}=")


def test_aggregate_attention_layers(model, ds):
    with _warns("layers", "attn_layers"):
        old = aggregate_attention(model, ds, genes=GENES, layers=[0, -1], progress=False)
    new = aggregate_attention(model, ds, genes=GENES, attn_layers=[0, -1], progress=False)
    assert old.layers == new.layers == [0, N_LAYERS - 1]
    np.testing.assert_array_equal(old.sums, new.sums)


@pytest.mark.parametrize("fn, args, kwargs", [
    (head_summary, (), {}),
    (attention_by_rank, (), {"max_rank": 5}),
    (attention_vs_cell_length, (GENES[:5],), {}),
])
def test_summaries_layers(model, ds, fn, args, kwargs):
    with _warns("layers", "attn_layers"):
        old = fn(model, ds, *args, layers=1, progress=False, **kwargs)
    new = fn(model, ds, *args, attn_layers=1, progress=False, **kwargs)
    pd.testing.assert_frame_equal(old, new)
    if "layer" in new.columns:
        assert set(new["layer"]) == {1}


def test_state_contrast_layers(model, ds):
    with _warns("layers", "attn_layers"):
        old = state_contrast(model, ds, "state", ("a", "b"), genes=GENES, layers=0,
                             min_count=1, progress=False)
    new = state_contrast(model, ds, "state", ("a", "b"), genes=GENES, attn_layers=0,
                         min_count=1, progress=False)
    np.testing.assert_array_equal(old.a.sums, new.a.sums)
    np.testing.assert_array_equal(old.b.sums, new.b.sums)


@pytest.fixture(scope="module")
def res(model, ds):
    return aggregate_attention(model, ds, genes=GENES, progress=False)


@pytest.mark.parametrize("method", ["mean_array", "matrix", "to_edges"])
def test_attention_result_layer(res, method):
    with _warns("layer", "attn_layer"):
        old = getattr(res, method)(layer=1, head=0)
    new = getattr(res, method)(attn_layer=1, head=0)
    if isinstance(new, pd.DataFrame):
        pd.testing.assert_frame_equal(old, new)
    else:
        np.testing.assert_array_equal(old, new)
    other = res.mean_array(attn_layer=0, head=0)
    assert not np.allclose(np.nan_to_num(res.mean_array(attn_layer=1, head=0)),
                           np.nan_to_num(other))


@pytest.fixture(scope="module")
def contrast(model, ds):
    return state_contrast(model, ds, "state", ("a", "b"), genes=GENES, average=None,
                          min_count=1, progress=False)


@pytest.mark.parametrize("method", ["contrast_array", "difference", "matrix", "to_edges",
                                    "gene_scores"])
def test_state_contrast_methods_layer(contrast, method):
    with _warns("layer", "attn_layer"):
        old = getattr(contrast, method)(layer=2, head=1)
    new = getattr(contrast, method)(attn_layer=2, head=1)
    if isinstance(new, pd.DataFrame):
        pd.testing.assert_frame_equal(old, new)
    else:
        np.testing.assert_array_equal(old, new)


def test_keyword_only_after_the_fourth_parameter(model, ds, res):
    with pytest.raises(TypeError):
        aggregate_attention(model, ds, GENES, "all", "all")  # heads= must be named
    with pytest.raises(TypeError):
        res.to_edges(None, None, None, 5, 1)  # min_count= must be named


def test_estimate_attention_memory_layers_and_old_positions():
    from course_helpers.attention import estimate_attention_memory

    new = estimate_attention_memory(10, 100, n_layers=2, heads=4, batch_size=8, n_genes=50)
    with _warns("layers", "n_layers"):
        assert estimate_attention_memory(10, 100, layers=2, heads=4, batch_size=8,
                                         n_genes=50) == new
    with pytest.warns(CourseDeprecationWarning, match="pass batch_size=, n_genes= by name"):
        assert estimate_attention_memory(10, 100, 2, 4, 8, 50) == new
    with pytest.raises(TypeError, match="multiple values for 'n_genes'"):
        estimate_attention_memory(10, 100, 2, 4, 8, 50, n_genes=50)
    with pytest.raises(TypeError, match="positional"):
        estimate_attention_memory(10, 100, 2, 4, 8, 50, "weight")
