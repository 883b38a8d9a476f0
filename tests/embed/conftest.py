"""Shared fixtures of the embed tests (the reference cells and dataset come from tests/conftest.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model(vocab_model):
    """The reference fixture model with its V1 vocabulary."""
    return vocab_model
