"""Tests for module enrichment (networks.enrich / enrich_modules) and the tissue gene-set library."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("gseapy")
from scipy.stats import false_discovery_control, hypergeom

from course_helpers._utils import CourseInputError
from course_helpers.data import load_ground_truth
from course_helpers.networks import (
    enrich,
    enrich_modules,
    read_gmt,
    tissue_gene_sets,
    write_gmt,
)

UNIVERSE = [f"g{i:03d}" for i in range(300)]


@pytest.fixture(scope="module")
def gt():
    return load_ground_truth()


def test_ora_pvalues_are_the_one_sided_hypergeometric_test():
    sets = {"A": UNIVERSE[:20], "B": UNIVERSE[10:50], "C": UNIVERSE[100:130],
            "D": UNIVERSE[200:205]}
    query = UNIVERSE[:8] + UNIVERSE[40:45] + UNIVERSE[250:260]
    res = enrich(sets, query, universe=UNIVERSE).set_index("gene_set")
    N, n = len(UNIVERSE), len(query)
    for name, genes in sets.items():
        k = len(set(genes) & set(query))
        assert res.loc[name, "overlap"] == k
        assert res.loc[name, "size"] == len(genes)
        assert res.loc[name, "expected"] == pytest.approx(len(genes) * n / N)
        assert res.loc[name, "p_value"] == pytest.approx(hypergeom.sf(k - 1, N, len(genes), n),
                                                         rel=1e-6)
    # depleted sets are not "significant": the test is one-sided
    assert res.loc["C", "p_value"] == pytest.approx(1.0)
    np.testing.assert_allclose(res["fdr"], false_discovery_control(res["p_value"], method="bh"))
    assert res.index[0] == "A" and list(res["p_value"]) == sorted(res["p_value"])
    assert res.loc["A", "genes"].split(";") == sorted(UNIVERSE[:8])
    assert res.attrs["n_universe"] == N and res.attrs["n_genes"] == n


def test_universe_restricts_sets_and_list():
    sets = {"A": UNIVERSE[:20] + ["outside1", "outside2"]}
    res = enrich(sets, UNIVERSE[:5] + ["outside3"], universe=UNIVERSE)
    assert res.loc[0, "size"] == 20 and res.loc[0, "overlap"] == 5
    assert res.attrs["n_genes"] == 5
    expected = hypergeom.sf(4, 300, 20, 5)
    assert res.loc[0, "p_value"] == pytest.approx(expected, rel=1e-6)


def test_tissue_gene_sets_library(gt):
    univ = list(gt.genes.index)
    sets = tissue_gene_sets(gt, decoys=2, seed=0)
    true = [k for k in sets if not k.startswith("decoy")]
    assert {f"program:{p}" for p in gt.programs} <= set(true)
    assert "regulon:GATA4" in sets
    gata4 = gt.edges.loc[gt.edges["source_symbol"] == "GATA4", "target"]
    assert sets["regulon:GATA4"] == sorted(set(gata4))
    for name in true:  # every true set has 2 decoys of the same size, drawn from the universe
        for i in (1, 2):
            d = sets[f"decoy{i}:{name}"]
            assert len(d) == len(sets[name]) and set(d) <= set(univ)
    assert len(sets) == 3 * len(true)
    assert sets == tissue_gene_sets(gt, decoys=2, seed=0)
    other = tissue_gene_sets(gt, decoys=2, seed=1)
    assert other["decoy1:program:cardiomyocyte"] != sets["decoy1:program:cardiomyocyte"]
    # restricted to a universe: sets shrink, small ones drop out
    small = tissue_gene_sets(gt, universe=univ[:300], decoys=0, min_size=5)
    assert all(set(v) <= set(univ[:300]) and len(v) >= 5 for v in small.values())
    with pytest.raises(CourseInputError, match="load_ground_truth"):
        tissue_gene_sets({"a": 1})
    with pytest.raises(CourseInputError, match="No true gene set"):
        tissue_gene_sets(gt, universe=["x", "y"])


def test_planted_module_is_enriched_far_below_decoys(gt):
    """A module = most of the cardiomyocyte programme plus noise: the true set wins, decoys don't."""
    sets = tissue_gene_sets(gt, decoys=5, seed=0)
    univ = list(gt.genes.index)
    rng = np.random.default_rng(0)
    prog = sets["program:cardiomyocyte"]
    module = list(rng.choice(prog, size=30, replace=False)) + list(
        rng.choice([g for g in univ if g not in set(prog)], size=30, replace=False))
    res = enrich(sets, module, universe=univ).set_index("gene_set")
    decoys = res[res.index.str.startswith("decoy")]
    assert res.index[0] == "program:cardiomyocyte"
    assert res.loc["program:cardiomyocyte", "p_value"] < 1e-20
    assert decoys["p_value"].min() > 1e-6
    assert res.loc["program:cardiomyocyte", "fdr"] < 1e-15
    # decoys behave like the null: few small p-values (a chance overlap with the module can
    # still pass an FDR cut when many true sets are significant - that is a false positive)
    assert (decoys["p_value"] < 0.05).mean() < 0.15


def test_gmt_roundtrip_and_public_collection_path(tmp_path):
    """The switch to MSigDB/Reactome: a GMT file path instead of the dict gives the same result."""
    sets = {"HALLMARK_FAKE_UP": UNIVERSE[:25], "REACTOME_FAKE": UNIVERSE[50:90],
            "HALLMARK_OTHER": UNIVERSE[120:140]}
    path = write_gmt(sets, tmp_path / "lib" / "local.gmt")
    assert read_gmt(path) == sets
    text = path.read_text().splitlines()
    assert text[0].split("\t")[:3] == ["HALLMARK_FAKE_UP", "course_helpers", "g000"]
    query = UNIVERSE[:10] + UNIVERSE[200:210]
    a = enrich(str(path), query, universe=UNIVERSE)
    b = enrich(sets, query, universe=UNIVERSE)
    pd.testing.assert_frame_equal(a, b)
    assert a.loc[0, "gene_set"] == "HALLMARK_FAKE_UP"
    bad = tmp_path / "bad.gmt"
    bad.write_text("ONLY_A_NAME\n")
    with pytest.raises(CourseInputError, match="line 1"):
        read_gmt(bad)
    with pytest.raises(CourseInputError, match="not found"):
        read_gmt(tmp_path / "missing.gmt")


def test_long_dataframe_library():
    net = pd.DataFrame({"source": ["A"] * 20 + ["B"] * 20,
                        "target": UNIVERSE[:20] + UNIVERSE[100:120]})
    res = enrich(net, UNIVERSE[:6], universe=UNIVERSE).set_index("gene_set")
    assert res.loc["A", "overlap"] == 6 and res.loc["B", "overlap"] == 0


def test_ranking_ora_top_n_and_prerank():
    rng = np.random.default_rng(0)
    score = pd.Series(rng.normal(size=len(UNIVERSE)), index=UNIVERSE)
    score[UNIVERSE[:30]] += 3.0  # the true set is at the top of the ranking
    sets = {"TRUE": UNIVERSE[:30], "DECOY1": list(rng.choice(UNIVERSE, 30, replace=False)),
            "DECOY2": list(rng.choice(UNIVERSE, 30, replace=False))}
    ora = enrich(sets, score, universe=UNIVERSE, n_top=40)
    assert ora.loc[0, "gene_set"] == "TRUE" and ora.loc[0, "p_value"] < 1e-10
    assert ora.attrs["n_genes"] == 40
    pre = enrich(sets, score, method="prerank", permutations=200, seed=0).set_index("gene_set")
    assert pre.index[0] == "TRUE"
    assert pre.loc["TRUE", "nes"] > 2 and pre.loc["TRUE", "p_value"] < 0.01
    assert pre.drop("TRUE")["p_value"].min() > 0.01
    again = enrich(sets, score, method="prerank", permutations=200, seed=0).set_index("gene_set")
    pd.testing.assert_series_equal(pre["p_value"], again["p_value"])


def test_enrich_modules_one_row_per_module_and_set(gt):
    sets = tissue_gene_sets(gt, decoys=1, seed=0)
    univ = list(gt.genes.index)
    cm, fb = sets["program:cardiomyocyte"], sets["program:fibroblast"]
    rest = [g for g in univ if g not in set(cm) | set(fb)]
    modules = {**{g: "m_cm" for g in cm}, **{g: "m_fb" for g in fb},
               **{g: "m_rest" for g in rest[:100]}, "lonely": "tiny"}
    res = enrich_modules(modules, sets, universe=univ)
    n_sets = len(enrich(sets, cm, universe=univ))
    assert len(res) == 3 * n_sets  # "tiny" (1 gene) is skipped
    best = res.groupby("module").first()["gene_set"]
    assert best["m_cm"] == "program:cardiomyocyte" and best["m_fb"] == "program:fibroblast"
    np.testing.assert_allclose(res["fdr"], false_discovery_control(res["p_value"], method="bh"))
    assert res.loc[res["module"] == "m_cm", "module_size"].iloc[0] == len(cm)
    series = enrich_modules(pd.Series(modules), sets, universe=univ)
    pd.testing.assert_frame_equal(res, series)


def test_bad_inputs():
    sets = {"A": UNIVERSE[:10]}
    with pytest.raises(CourseInputError, match="same identifiers"):
        enrich(sets, ["ENSG1", "ENSG2"], universe=UNIVERSE)
    with pytest.raises(CourseInputError, match="n_top"):
        enrich(sets, pd.Series([1.0, 2.0], index=UNIVERSE[:2]))
    with pytest.raises(CourseInputError, match="needs a ranking"):
        enrich(sets, UNIVERSE[:5], method="prerank")
    with pytest.raises(CourseInputError, match="not known"):
        enrich(sets, UNIVERSE[:5], method="gsva")
    with pytest.raises(CourseInputError, match="between 3 and"):
        enrich({"A": UNIVERSE[:2]}, UNIVERSE[:5], universe=UNIVERSE)
    with pytest.raises(CourseInputError, match="list of genes"):
        enrich({"A": "g001"}, UNIVERSE[:5])
    with pytest.raises(CourseInputError, match="gene_sets must be"):
        enrich(42, UNIVERSE[:5])
    with pytest.raises(CourseInputError, match="a list of genes"):
        enrich(sets, "g001")
    with pytest.raises(CourseInputError, match="min_module_size"):
        enrich_modules({"g001": 0}, sets)
