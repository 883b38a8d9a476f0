"""course_helpers.data.ground_truth: GroundTruth helpers."""
from __future__ import annotations

import pytest

from course_helpers import data
from course_helpers._utils import CourseInputError


@pytest.fixture(scope="module")
def gt():
    return data.load_ground_truth()


def test_ground_truth_helpers(gt):
    assert gt.symbols(gt.disease_drivers) == ["NFATC4"]
    assert gt.ensembl(["GATA4"]) == ["ENSG00000136574"]
    smc = gt.edge_set("smooth_muscle", symbols=True)
    assert ("MYOCD", "MYH11") in smc
    assert ("MYOCD", "MYH11") not in gt.edge_set("cardiomyocyte", symbols=True)
    assert sorted(gt.symbols(gt.regulators_of("NPPA"))) == ["GATA4", "TBX5"]
    A = gt.adjacency(symbols=True)
    assert A.loc["NFATC4", "ATP2A2"] < 0 < A.loc["NFATC4", "NPPB"]
    with pytest.raises(CourseInputError, match="unknown context"):
        gt.edges_for("brain")
    with pytest.raises(CourseInputError, match="not a teaching-tissue gene"):
        gt.ensembl(["NOTAGENE"])
