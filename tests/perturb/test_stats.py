"""Statistics: net_shift and adjust_for_rank on synthetic tables (no model needed), Benjamini-Hochberg,
the rank-sum test, perturbation_stats on the fixture's full runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from course_helpers._utils import CourseInputError
from course_helpers.perturb import (
    adjust_for_rank,
    benjamini_hochberg,
    net_shift,
    perturbation_stats,
)
from course_helpers.perturb.stats import _mwu_vs_rest


def _long(rows, states=("goal", "start", "alt")):
    """rows: (cell, rank, token, gene, {state: shift})"""
    out = []
    for cell, rank, tok, gene, shifts in rows:
        for st in states:
            out.append(
                {
                    "cell_id": cell,
                    "rank_index": rank,
                    "perturbed_token": tok,
                    "perturbed_gene": gene,
                    "state": st,
                    "shift": shifts[st],
                }
            )
    return pd.DataFrame(out)


def test_net_shift_is_goal_minus_start_per_cell_and_gene():
    res = _long(
        [
            ("c1", 0, 5, "A", {"goal": 0.3, "start": 0.1, "alt": 9.0}),
            ("c1", 1, 6, "B", {"goal": -0.2, "start": 0.4, "alt": 9.0}),
            ("c2", 0, 6, "B", {"goal": 0.0, "start": -0.5, "alt": 9.0}),
        ]
    )
    net = net_shift(res, "goal", "start")
    assert list(net.columns) == [
        "cell_id",
        "rank_index",
        "perturbed_token",
        "perturbed_gene",
        "state",
        "shift",
    ]
    assert net["state"].unique().tolist() == ["goal-start"]
    np.testing.assert_allclose(net["shift"], [0.2, -0.6, 0.5])
    assert net["perturbed_gene"].tolist() == ["A", "B", "B"]
    # rows in a different order between the two states still pair up by (cell, gene)
    shuffled = pd.concat([res[res.state == "goal"], res[res.state == "start"].iloc[::-1]])
    np.testing.assert_allclose(
        net_shift(shuffled, "goal", "start", key_added="net")["shift"], [0.2, -0.6, 0.5]
    )


def test_net_shift_bad_input():
    res = _long([("c1", 0, 5, "A", {"goal": 0.3, "start": 0.1, "alt": 0.0})])
    with pytest.raises(CourseInputError, match="not a state of the results"):
        net_shift(res, "healthy", "start")
    with pytest.raises(CourseInputError, match="cell_states"):
        net_shift(res.drop(columns="state"), "goal", "start")
    with pytest.raises(CourseInputError, match="non-empty"):
        net_shift(res.iloc[:0], "goal", "start")


def _curve(rank):
    """A smooth rank effect: deleting near the top shifts more later genes."""
    return 0.05 * ((300 - rank) / 300) ** 2


def test_adjust_for_rank_removes_a_pure_rank_effect():
    rng = np.random.default_rng(0)
    # null: the effect depends only on rank (strong near the top), plus noise
    ranks = rng.integers(0, 300, 3000)
    null = pd.DataFrame(
        {
            "cell_id": "c",
            "rank_index": ranks,
            "perturbed_token": 0,
            "state": "net",
            "shift": _curve(ranks) + rng.normal(0, 1e-3, 3000),
        }
    )
    # two genes: "TOP" sits at the top but has no own effect; "REAL" sits low with a real effect
    res = pd.DataFrame(
        {
            "cell_id": "c",
            "perturbed_token": np.repeat([1, 2], 30),
            "perturbed_gene": np.repeat(["TOP", "REAL"], 30),
            "rank_index": np.concatenate([rng.integers(0, 3, 30), rng.integers(200, 260, 30)]),
            "state": "net",
        }
    )
    res["shift"] = _curve(res["rank_index"].to_numpy()) + np.where(
        res.perturbed_gene == "REAL", 0.01, 0
    )
    res["shift"] += rng.normal(0, 1e-3, len(res))
    raw = perturbation_stats(res, null=null).set_index("perturbed_gene")
    assert raw.loc["TOP", "mean"] > raw.loc["REAL", "mean"]  # unadjusted: rank wins
    res_adj, null_adj = adjust_for_rank(res, null, window=5)
    assert "shift_adj" in res_adj and "shift_adj" in null_adj and "shift_adj" not in res
    adj = perturbation_stats(res_adj, null=null_adj, value="shift_adj").set_index("perturbed_gene")
    assert abs(adj.loc["TOP", "mean"]) < 2e-3
    assert adj.loc["REAL", "mean"] == pytest.approx(0.01, abs=2e-3)
    assert adj.loc["REAL", "p_value"] < 1e-6
    assert abs(float(np.median(null_adj["shift_adj"]))) < 1e-3


def test_adjust_for_rank_bad_input():
    df = pd.DataFrame({"rank_index": [0, 1], "shift": [0.1, 0.2]})
    with pytest.raises(CourseInputError, match="rank_index"):
        adjust_for_rank(df.drop(columns="rank_index"), df)
    with pytest.raises(CourseInputError, match="window"):
        adjust_for_rank(df, df, window=-1)
    with pytest.raises(CourseInputError, match="column 'cos_sim'"):
        adjust_for_rank(df, df, value="cos_sim")


def test_benjamini_hochberg_known_example():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p))
    q = benjamini_hochberg([0.5, np.nan, 0.01])
    assert np.isnan(q[1]) and q[2] == pytest.approx(0.02)


def test_rank_sum_vs_rest_matches_scipy():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=300), 1)  # many ties
    groups = rng.integers(0, 7, size=300)
    labels, u, p = _mwu_vs_rest(values, groups)
    for lab, ui, pi in zip(labels, u, p):
        r = stats.mannwhitneyu(values[groups == lab], values[groups != lab],
                               alternative="two-sided", method="asymptotic")
        assert ui == pytest.approx(r.statistic) and pi == pytest.approx(r.pvalue, rel=1e-9)


def test_perturbation_stats_on_fixture(goal_all, delete_all):
    st = perturbation_stats(goal_all)
    assert set(st["state"]) == set(goal_all["state"])
    sub = goal_all[goal_all["state"] == "CD19+ B"]
    g = sub.groupby("perturbed_token")["shift"]
    row = st[st["state"] == "CD19+ B"].set_index("perturbed_token")
    tok = g.size().idxmax()
    assert row.loc[tok, "n_cells"] == g.size()[tok]
    assert row.loc[tok, "mean"] == pytest.approx(g.mean()[tok])
    assert row.loc[tok, "std"] == pytest.approx(np.std(g.get_group(tok).to_numpy()))
    assert ((st["fdr"] >= st["p_value"]) | st["p_value"].isna()).all()
    # against an explicit null: scipy on the pooled null values
    null = delete_all[delete_all["rank_index"] % 5 == 0]
    st2 = perturbation_stats(delete_all, null=null)
    tok = st2["perturbed_token"].iloc[0]
    r = stats.mannwhitneyu(delete_all.loc[delete_all["perturbed_token"] == tok, "cos_sim"],
                           null["cos_sim"], method="asymptotic")
    assert st2["p_value"].iloc[0] == pytest.approx(r.pvalue)
    with pytest.raises(CourseInputError, match="no column 'shift'"):
        perturbation_stats(delete_all, value="shift")
