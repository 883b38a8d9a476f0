"""course_helpers.tokenize.rank: rank_genes, the ranking core."""
import numpy as np

from course_helpers.tokenize import rank_genes


def test_rank_genes_core():
    flat, lens = rank_genes(
        np.array([0, 3, 3, 5]),
        np.array([10, 11, 12, 13, 14]),
        np.array([1.0, 3.0, 2.0, 5.0, 5.0]),
        max_len=2,
    )
    assert flat.tolist() == [11, 12, 13, 14] and lens.tolist() == [2, 0, 2]
