"""course_helpers._utils: warnings name the user's line, whatever wraps the function."""
from __future__ import annotations

import warnings

import pytest

from course_helpers._utils import CourseDeprecationWarning, find_stack_level, renamed_parameters


def test_find_stack_level_from_outside_the_package_is_one():
    assert find_stack_level() == 1


def test_package_warnings_point_at_the_callers_line():
    """aggregate_attention is wrapped by renamed_parameters and warns from a helper in another
    file: the warning must still name this test file (in a notebook: the learner's cell)."""
    from course_helpers.attention import aggregate_attention
    from course_helpers.data import load_tissue
    from course_helpers.model import load_model
    from course_helpers.tokenize import tokenize

    model = load_model("teaching")
    ds = tokenize(load_tissue()[:4], model.gene_vocab, progress=False)
    with pytest.warns(UserWarning, match="most frequently present") as rec:
        aggregate_attention(model, ds, max_genes=5, progress=False)
    assert {w.filename for w in rec} == {__file__}
    with pytest.warns(CourseDeprecationWarning) as rec:
        aggregate_attention(model, ds, genes=[int(ds[0]["input_ids"][0])], layers=0,
                            progress=False)
    assert rec[0].filename == __file__


def test_renamed_parameters_refuses_both_spellings():
    @renamed_parameters(layer="emb_layer")
    def f(*, emb_layer=-1):
        return emb_layer

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(emb_layer=2) == 2          # the new name never warns
    with pytest.raises(ValueError, match=r"got both layer= and emb_layer="):
        f(layer=1, emb_layer=1)
