"""Tests for the chapter 6 check functions (small synthetic data, no model, no baselines run)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_helpers.data import load_ground_truth
from course_helpers.exercises import ch06_comparison as ex


# --------------------------------------------------------------------------------------------
# exercise 1: EPR
# --------------------------------------------------------------------------------------------
def _epr_right(pred, truth, tfs, genes):
    cand = {(t, g) for t in tfs for g in genes if t != g}
    true = {p for p in zip(truth["source"], truth["target"]) if p in cand}
    p = pred[[(s, t) in cand for s, t in zip(pred["source"], pred["target"])]]
    top = p.sort_values("score", ascending=False).head(len(true))
    precision = np.mean([(s, t) in true for s, t in zip(top["source"], top["target"])])
    return precision / (len(true) / len(cand))


def _epr_no_ratio(pred, truth, tfs, genes):
    return _epr_right(pred, truth, tfs, genes) * len(truth) / (len(tfs) * len(genes) - len(tfs))


def _epr_self_loops(pred, truth, tfs, genes):
    cand = len(tfs) * len(genes)
    return _epr_no_ratio(pred, truth, tfs, genes) / (len(truth) / cand)


def test_reference_epr_doctest_value():
    truth = pd.DataFrame({"source": ["T", "T"], "target": ["a", "b"]})
    pred = pd.DataFrame({"source": ["T", "T", "T"], "target": ["a", "c", "b"],
                         "score": [0.9, 0.8, 0.7]})
    assert ex.reference_epr(pred, truth, ["T"], list("abcd")) == pytest.approx(1.0)


def test_check_epr(capsys):
    assert ex.check_epr(_epr_right)
    assert "Correct" in capsys.readouterr().out
    assert not ex.check_epr(_epr_no_ratio)
    assert "edge density" in capsys.readouterr().out
    assert not ex.check_epr(_epr_self_loops)
    assert "self-loops" in capsys.readouterr().out
    assert not ex.check_epr(lambda *a: 1.0)
    assert not ex.check_epr(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out
    assert not ex.check_epr(None)
    assert "Not answered yet" in capsys.readouterr().out
    assert not ex.check_epr(3.0)


# --------------------------------------------------------------------------------------------
# exercise 2: best method in macrophages
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_networks():
    gt = load_ground_truth()
    genes = sorted(set(gt.genes.index))
    rng = np.random.default_rng(0)
    cand = pd.DataFrame([(t, g) for t in gt.tfs for g in genes if t != g],
                        columns=["source", "target"])

    def noisy(true_pairs, boost):
        df = cand.copy()
        df["score"] = rng.random(len(df))
        hit = [p in true_pairs for p in zip(df["source"], df["target"])]
        df.loc[hit, "score"] += boost
        return df

    macro = gt.edge_set("macrophage")
    cardio = gt.edge_set("cardiomyocyte")
    nets = {
        "random": noisy(set(), 0.0),
        "good_in_macrophages": noisy(macro, 1.0),
        "good_in_cardiomyocytes": noisy(cardio, 1.0),
        # a context-specific network: a dict cell type -> edge table
        "per_type": {ct: noisy(gt.edge_set(ct), 0.3) for ct in gt.cell_types},
    }
    return nets, genes


def test_check_best_method(toy_networks, capsys):
    nets, genes = toy_networks
    scores = ex.reference_context_scores(nets, genes, "macrophage")
    assert scores.index[0] == "good_in_macrophages"
    assert ex.check_best_method("good_in_macrophages", nets, genes)
    assert not ex.check_best_method("good_in_cardiomyocytes", nets, genes)
    assert not ex.check_best_method("random", nets, genes)
    assert not ex.check_best_method("not_a_method", nets, genes)
    assert not ex.check_best_method(None, nets, genes)
    assert ex.check_best_method("good_in_cardiomyocytes", nets, genes, context="cardiomyocyte")


# --------------------------------------------------------------------------------------------
# exercise 3: the cardiomyocyte module
# --------------------------------------------------------------------------------------------
def test_check_program_module(capsys):
    gt = load_ground_truth()
    genes = list(gt.genes.index)
    modules = pd.Series("grey", index=genes, dtype=object)
    cardio = gt.programs["cardiomyocyte"]
    fibro = gt.programs["fibroblast"]
    background = [g for g in genes if g not in set(cardio) | set(fibro)]
    # "turquoise": a huge module holding every cardiomyocyte gene and much else;
    # "blue": 80 % of the cardiomyocyte genes and nothing else -> higher Jaccard
    modules[background[:600]] = "turquoise"
    modules[cardio] = "turquoise"
    modules[cardio[: int(0.8 * len(cardio))]] = "blue"
    modules[fibro] = "brown"
    jac = ex.reference_program_module(modules)
    assert jac.index[0] == "blue"
    assert ex.check_program_module("blue", modules)
    assert ex.check_program_module("MEblue", modules)
    assert not ex.check_program_module("turquoise", modules)
    assert "Jaccard" in capsys.readouterr().out
    assert not ex.check_program_module("brown", modules)
    assert not ex.check_program_module("pink", modules)
    assert not ex.check_program_module(None, modules)
    assert not ex.check_program_module("blue", "not modules")
    # dict module -> genes works too
    as_dict = {m: list(g) for m, g in modules.groupby(modules).groups.items()}
    assert ex.check_program_module("blue", as_dict)
    assert ex.check_program_module("brown", modules, program="fibroblast")
