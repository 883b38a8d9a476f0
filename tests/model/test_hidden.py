"""course_helpers.model.hidden: resolve_layer (the emb_layer convention) and hidden_states."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers._utils import CourseInputError
from course_helpers.model import (
    hidden_states,
    load_model,
    pad_batch,
    resolve_layer,
)


@pytest.fixture(scope="module")
def fixture_model(fixture_model_dir):
    return load_model(fixture_model_dir, device="cpu")


def test_layer_semantics(fixture_model):
    m = fixture_model
    assert resolve_layer(m, -1) == 5  # reference: 6 + (-1) = hidden_states[5]
    assert resolve_layer(m, 0) == 6
    assert resolve_layer(m, -6) == 0
    for bad in (1, -7, "x"):
        with pytest.raises(CourseInputError):
            resolve_layer(m, bad)
    ids, mask = pad_batch([[5, 6, 7, 8, 9], [10, 11, 12]], 0)
    with torch.inference_mode():
        ref = m.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        h_m1 = hidden_states(m, ids, mask, layer=-1)
        h_0 = hidden_states(m, ids, mask, layer=0)
        h_m3 = hidden_states(m, ids, mask, layer=-3)
    assert len(ref) == 7
    assert torch.equal(h_m1, ref[5])
    assert torch.equal(h_0, ref[6])
    assert torch.equal(h_m3, ref[3])
    assert not torch.allclose(h_m1, h_0)
    with torch.inference_mode():
        assert torch.equal(hidden_states(m, ids, mask, layer=-6), ref[0])  # embeddings output


def test_hidden_states_stops_after_the_requested_layer(fixture_model):
    m = fixture_model
    n_hooks = [len(layer._forward_hooks) for layer in m.bert.encoder.layer]
    calls = []
    handles = [layer.register_forward_hook(lambda mod, i, o, k=k: calls.append(k))
               for k, layer in enumerate(m.bert.encoder.layer)]
    ids, mask = pad_batch([[5, 6, 7, 8, 9], [10, 11, 12]], 0)
    try:
        with torch.inference_mode():
            hidden_states(m, ids, mask, layer=-1)
            assert calls == [0, 1, 2, 3, 4]          # the last of 6 layers never ran
            calls.clear()
            hidden_states(m, ids, mask, layer=-4)
            assert calls == [0, 1]
            calls.clear()
            hidden_states(m, ids, mask, layer=0)
            assert calls == [0, 1, 2, 3, 4, 5]
    finally:
        for h in handles:
            h.remove()
    # the stopping hook is removed again: a plain forward pass runs every layer
    calls.clear()
    handles = [layer.register_forward_hook(lambda mod, i, o, k=k: calls.append(k))
               for k, layer in enumerate(m.bert.encoder.layer)]
    try:
        with torch.inference_mode():
            m.bert(input_ids=ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    assert calls == [0, 1, 2, 3, 4, 5]
    assert [len(layer._forward_hooks) for layer in m.bert.encoder.layer] == n_hooks


def test_emb_layer_keyword_and_the_old_layer_spelling(fixture_model):
    """emb_layer= is the name; layer= still works, warns, and gives the same result."""
    from course_helpers._utils import CourseDeprecationWarning

    m = fixture_model
    ids, mask = pad_batch([[5, 6, 7, 8, 9], [10, 11, 12]], 0)
    with torch.inference_mode():
        new = hidden_states(m, ids, mask, emb_layer=-2)
        with pytest.warns(CourseDeprecationWarning, match=r"hidden_states\(layer=...\) is now"):
            old = hidden_states(m, ids, mask, layer=-2)
        ref = m.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert torch.equal(new, old) and torch.equal(new, ref[4])
    with pytest.raises(TypeError):
        hidden_states(m, ids, mask, -1)  # emb_layer is keyword-only
    with pytest.raises(CourseInputError, match="got both layer= and emb_layer="):
        hidden_states(m, ids, mask, layer=-1, emb_layer=-1)
    assert resolve_layer(m, emb_layer=-2) == 4
    with pytest.warns(CourseDeprecationWarning, match=r"resolve_layer\(layer=...\)"):
        assert resolve_layer(m, layer=-2) == 4
    with pytest.raises(CourseInputError, match=r"emb_layer=1 is out of range .* 6 layers"):
        resolve_layer(m, 1)
    with pytest.raises(CourseInputError, match="emb_layer must be an integer"):
        resolve_layer(m, "x")
