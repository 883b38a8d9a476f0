"""The engine's perturbed copies are perturb_ids applied to each (gene, cell): one rule."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from course_helpers.perturb import perturb_ids
from course_helpers.perturb.copies import _blocks_for_cell


@pytest.mark.parametrize("perturb_type", ["delete", "overexpress"])
@pytest.mark.parametrize("anchor", [None, 12])
def test_blocks_hold_perturb_ids_of_every_gene(perturb_type, anchor):
    info = SimpleNamespace(cls_id=2, eos_id=3, max_len=9, special_ids=np.array([0, 1, 2, 3]))
    x = np.array([2, 10, 11, 12, 13, 14, 15, 16, 3])  # a full V2 cell
    tokens = [11, 14, 30]  # 30 is absent: inserted by overexpress, skipped by delete
    blocks = _blocks_for_cell(x, 0, info, perturb_type, tokens, anchor)
    seen = 0
    for b in blocks:
        for r in range(b.m):
            gene = int(b.meta["perturbed_token"][r])
            together = [gene] if anchor is None else [anchor, gene]
            want = perturb_ids(x, together, perturb_type, cls_id=2, eos_id=3, max_len=9)
            assert b.tokens[r].tolist() == want.tolist(), (gene, together)
            seen += 1
    expected = {"delete": 2, "overexpress": 3}[perturb_type]
    assert seen == expected
