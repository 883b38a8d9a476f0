"""Tests for course_helpers.networks.scoring: scoring predicted networks against truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.networks import (
    module_agreement,
    pr_curve,
    score_by_context,
    score_edges,
)


# -- scoring -------------------------------------------------------------------------------
def _toy_truth(n_tfs=10, n_genes=200, n_edges=60, seed=0):
    rng = np.random.default_rng(seed)
    tfs = [f"TF{i}" for i in range(n_tfs)]
    genes = tfs + [f"G{i}" for i in range(n_genes)]
    pairs = [(t, g) for t in tfs for g in genes if t != g]
    pick = rng.choice(len(pairs), size=n_edges, replace=False)
    truth = pd.DataFrame([pairs[i] for i in pick], columns=["source", "target"])
    return tfs, genes, pairs, truth


def test_perfect_predictor():
    tfs, genes, pairs, truth = _toy_truth()
    pred = truth.assign(score=1.0)
    s = score_edges(pred, truth, tfs=tfs, genes=genes)
    n_cand = len(tfs) * len(genes) - len(tfs)  # self-loops excluded
    assert s["n_candidates"] == n_cand and s["n_true"] == 60
    density = 60 / n_cand
    assert s["auprc"] == pytest.approx(1.0)
    assert s["auprc_random"] == pytest.approx(density)
    assert s["early_precision"] == pytest.approx(1.0)
    assert s["epr"] == pytest.approx(1 / density)
    assert s["auprc_ratio"] == pytest.approx(1 / density)
    # a full ranking where the truth comes first gives the same
    tset = set(zip(truth.source, truth.target))
    full = pd.DataFrame([(a, b, 1.0 if (a, b) in tset else 0.0) for a, b in pairs],
                        columns=["source", "target", "score"])
    s2 = score_edges(full, truth, tfs=tfs, genes=genes)
    assert s2["auprc"] == pytest.approx(1.0) and s2["epr"] == pytest.approx(1 / density)


def test_random_predictor_ratio_near_one():
    tfs, genes, pairs, truth = _toy_truth(n_tfs=20, n_genes=500, n_edges=400, seed=1)
    ratios, eprs = [], []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        pred = pd.DataFrame(pairs, columns=["source", "target"]).assign(
            score=rng.random(len(pairs)))
        s = score_edges(pred, truth, tfs=tfs, genes=genes)
        ratios.append(s["auprc_ratio"])
        eprs.append(s["epr"])
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.15)
    assert np.mean(eprs) == pytest.approx(1.0, abs=0.3)


def test_hand_computed_example():
    truth = pd.DataFrame({"source": ["T1", "T1", "T2"], "target": ["a", "b", "c"]})
    # candidates: T1, T2 -> {a, b, c, T1, T2} minus self-loops = 2 * 5 - 2 = 8; 3 true
    pred = pd.DataFrame({
        "source": ["T1", "T2", "T1", "T2", "T1", "T1"],
        "target": ["a", "a", "b", "c", "c", "a"],
        "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],  # duplicate (T1, a): max 0.9 kept
    })
    s = score_edges(pred, truth, tfs=["T1", "T2"], genes=["a", "b", "c", "T1", "T2"])
    # ranking: a+ (0.9), a- (0.8), b+ (0.7), c+ (0.6), c- (0.5), 3 unscored negatives tied
    # AP = (1/3) * (1/1 + 2/3 + 3/4)
    assert s["auprc"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert s["n_candidates"] == 8 and s["n_true"] == 3 and s["n_scored"] == 5
    # top-3 predictions: 0.9 (T), 0.8 (F), 0.7 (T) -> precision 2/3; density 3/8
    assert s["early_precision"] == pytest.approx(2 / 3)
    assert s["epr"] == pytest.approx((2 / 3) / (3 / 8))
    curve = pr_curve(pred, truth, tfs=["T1", "T2"], genes=["a", "b", "c", "T1", "T2"])
    assert curve.recall.max() == 1.0 and curve.random_precision.iloc[0] == pytest.approx(3 / 8)
    assert curve.precision.iloc[-1] == 1.0  # sklearn's final point


def test_candidates_ties_direction_and_outside_truth():
    truth = pd.DataFrame({"source": ["T1", "g1"], "target": ["g1", "T1"]})
    pred = pd.DataFrame({"source": ["g1", "T1"], "target": ["T1", "g2"], "score": [1.0, 0.5]})
    s = score_edges(pred, truth, tfs=["T1"], genes=["T1", "g1", "g2"])
    assert s["n_true_outside"] == 1  # g1 is not a TF
    assert s["n_candidates"] == 2 and s["n_true"] == 1
    assert s["auprc"] == pytest.approx(0.5)  # (T1, g1) unscored: ranked last
    und = score_edges(pred, truth, tfs=["T1"], genes=["T1", "g1", "g2"], directed=False)
    assert und["auprc"] == pytest.approx(1.0)  # g1 - T1 counts for T1 -> g1
    # ties at the top-k cut-off are all included (BEELINE)
    truth2 = pd.DataFrame({"source": ["T"], "target": ["x"]})
    tied = pd.DataFrame({"source": ["T"] * 4, "target": list("xyzw"), "score": [1.0] * 4})
    s2 = score_edges(tied, truth2, tfs=["T"], genes=list("xyzw"))
    assert s2["early_precision"] == pytest.approx(0.25) and s2["epr"] == pytest.approx(1.0)
    cand = pd.DataFrame({"source": ["T", "T"], "target": ["x", "y"]})
    s3 = score_edges(tied, truth2, candidates=cand)
    assert s3["n_candidates"] == 2
    with pytest.raises(CourseInputError, match="score"):
        score_edges(pred.drop(columns="score"), truth)


def test_score_by_context():
    truth = pd.DataFrame({
        "source": ["T1", "T1", "T2", "T2"],
        "target": ["a", "b", "c", "d"],
        "contexts": ["heart", "heart;liver", "", "liver"],
    })
    per_ctx = {"heart": truth.iloc[[0, 1, 2]].assign(score=1.0),
               "liver": truth.iloc[[1, 2, 3]].assign(score=1.0)}
    df = score_by_context(per_ctx, truth, genes=list("abcd"))
    assert list(df.index) == ["heart", "liver"]
    assert df.loc["heart", "n_true"] == 3 and df.loc["liver", "n_true"] == 3
    assert np.allclose(df["auprc"], 1.0)
    shared = score_by_context(truth.assign(score=1.0), truth, genes=list("abcd"))
    assert shared.loc["heart", "auprc"] < 1.0  # the liver-only edge is a false positive
    with pytest.raises(CourseInputError, match="contexts"):
        score_by_context(per_ctx, truth.drop(columns="contexts"))


def test_module_agreement():
    truth = {"x": ["a", "b", "c"], "y": ["d", "e", "f"], "z": ["c", "g"]}
    perm = {"a": 5, "b": 5, "d": 1, "e": 1, "f": 1, "g": 9, "c": 9}
    # c is in two programs (ambiguous): left out; labels are arbitrary
    assert module_agreement(perm, truth) == pytest.approx(1.0)
    assert module_agreement([{"a", "d"}, {"b", "e"}, {"f", "g"}], truth) < 0.2
    with pytest.raises(CourseInputError, match="same gene names"):
        module_agreement({"q": 0}, truth)
