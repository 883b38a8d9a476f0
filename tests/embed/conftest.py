"""Shared fixtures of the embed tests: the reference fixture model (with its V1 vocabulary) and cells."""
from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def model(fixture_model_dir):
    from course_helpers.model import load_model

    return load_model(fixture_model_dir, device="cpu")


@pytest.fixture(scope="module")
def cells(fixture_cells) -> pd.DataFrame:
    return fixture_cells


@pytest.fixture(scope="module")
def dataset(cells):
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_pandas(cells, preserve_index=False)
