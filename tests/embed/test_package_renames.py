"""Renamed keywords of course_helpers.embed: the old ``layer=`` warns and gives the same result."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from course_helpers._utils import CourseDeprecationWarning
from course_helpers.embed import embed_cells, embed_genes, state_embeddings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cells(fixture_cells) -> pd.DataFrame:
    return fixture_cells.iloc[:6].reset_index(drop=True)


def _old_and_new(fn, *args, **kwargs):
    with pytest.warns(CourseDeprecationWarning, match=r"\(layer=\.\.\.\) is now .*\(emb_layer="):
        old = fn(*args, layer=0, progress=False, **kwargs)
    new = fn(*args, emb_layer=0, progress=False, **kwargs)
    return old, new


def test_embed_cells_layer_is_emb_layer(model, cells):
    old, new = _old_and_new(embed_cells, model, cells)
    np.testing.assert_array_equal(old, new)
    default = embed_cells(model, cells, progress=False)  # emb_layer=-1: another layer
    assert not np.allclose(new, default)


def test_embed_genes_layer_is_emb_layer(model, cells):
    old, new = _old_and_new(embed_genes, model, cells)
    pd.testing.assert_frame_equal(old, new)
    assert new.emb_layer == 0


def test_state_embeddings_layer_is_emb_layer(model, cells):
    states = sorted(set(cells["cell_type"]))[:2]
    old, new = _old_and_new(state_embeddings, model, cells, "cell_type", states)
    assert list(old) == list(new) == states
    for s in states:
        np.testing.assert_array_equal(old[s], new[s])


def test_both_spellings_at_once_is_an_error(model, cells):
    from course_helpers._utils import CourseInputError

    with pytest.raises(CourseInputError, match="pass only emb_layer="):
        embed_cells(model, cells, layer=0, emb_layer=0, progress=False)


def test_keyword_only_after_the_fourth_parameter(model, cells):
    with pytest.raises(TypeError):
        embed_cells(model, cells, -1, 32, None)  # adata= must be named
