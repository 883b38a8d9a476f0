"""The perturbation rule (course_helpers.perturb.rule): perturb_ids and the engine's batched form."""
from __future__ import annotations

import numpy as np
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.perturb import perturb_ids
from course_helpers.perturb.rule import _perturb_rows


def _naive(ids, tokens, perturb_type, cls_id=None, eos_id=None, max_len=None):
    """The rule written out with lists (FACTS.md "In-silico perturbation")."""
    ids = [int(t) for t in ids]
    toks = list(dict.fromkeys(int(t) for t in tokens))
    if perturb_type == "delete":
        out = list(ids)
        for t in toks:
            if t in out:
                out.remove(t)
        return out
    head = ids[:1] if cls_id is not None and ids and ids[0] == cls_id else []
    tail = ids[-1:] if eos_id is not None and ids and ids[-1] == eos_id else []
    body = ids[len(head): len(ids) - len(tail)]
    present = [t for t in body if t in toks]
    absent = [t for t in toks if t not in body]
    rest = [t for t in body if t not in toks]
    out = head + present + absent + rest
    if max_len is not None and len(out) + len(tail) > max_len:
        out = out[: max_len - len(tail)]
    return out + tail


def test_perturb_ids_widget_cases():
    ids = np.array([5, 6, 7, 8])
    assert perturb_ids(ids, [7], "delete").tolist() == [5, 6, 8]
    assert perturb_ids(ids, [8, 6], "overexpress").tolist() == [6, 8, 5, 7]
    assert perturb_ids(ids, [9, 7], "overexpress", max_len=4).tolist() == [7, 9, 5, 6]
    assert perturb_ids(ids, [9], "delete").tolist() == [5, 6, 7, 8]  # absent: nothing to delete
    assert perturb_ids(ids, 5, "overexpress").tolist() == [5, 6, 7, 8]  # already first
    assert perturb_ids(ids, [7], "delete").dtype == np.int64


def test_perturb_ids_v2_keeps_cls_and_eos():
    x = [2, 10, 11, 12, 3]
    assert perturb_ids(x, [12], "overexpress", cls_id=2, eos_id=3).tolist() == [2, 12, 10, 11, 3]
    assert perturb_ids(x, [9], "overexpress", cls_id=2, eos_id=3, max_len=5).tolist() == [
        2, 9, 10, 11, 3]
    assert perturb_ids(x, [11, 10], "delete", cls_id=2, eos_id=3).tolist() == [2, 12, 3]


@pytest.mark.parametrize("perturb_type", ["delete", "overexpress"])
@pytest.mark.parametrize("v2", [False, True])
def test_perturb_ids_matches_the_written_out_rule(perturb_type, v2):
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        genes = rng.choice(np.arange(10, 40), n, replace=False).tolist()
        x = [2] + genes + [3] if v2 else genes
        toks = rng.choice(np.arange(10, 40), int(rng.integers(1, 4)), replace=False).tolist()
        max_len = len(x) + int(rng.integers(0, 2)) if rng.random() < 0.7 else None
        kw = {"cls_id": 2, "eos_id": 3} if v2 else {}
        got = perturb_ids(x, toks, perturb_type, max_len=max_len, **kw).tolist()
        assert got == _naive(x, toks, perturb_type, max_len=max_len, **kw), (x, toks, max_len)


def test_batched_rows_are_perturb_ids_row_by_row():
    x = np.array([2, 10, 11, 12, 13, 14, 3])
    P = np.array([[1, 3], [2, 5], [4, 5]])
    T = np.array([[20], [21], [22]])
    rows = _perturb_rows(x, P, T, "overexpress", cls_id=2, eos_id=3, max_len=7)
    for r in range(3):
        want = perturb_ids(x, [*x[P[r]].tolist(), int(T[r, 0])], "overexpress", cls_id=2,
                           eos_id=3, max_len=7)
        assert rows.tokens[r].tolist() == want.tolist()
    assert rows.trunc == 1 and rows.front == 1 and rows.has_eos
    # src points into the unperturbed cell (-1 = inserted), <eos> into the truncated base
    assert rows.src[0].tolist() == [0, 1, 3, -1, 2, 4, 5]


def test_perturb_ids_bad_input():
    with pytest.raises(CourseInputError, match="'delete' or 'overexpress'"):
        perturb_ids([1, 2], [1], "mask")
    with pytest.raises(CourseInputError, match="max_len"):
        perturb_ids([1, 2], [1], "overexpress", max_len=0)
