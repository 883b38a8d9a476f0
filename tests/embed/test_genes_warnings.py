"""embed_genes reports genes that occur in no cell with a warning class (code filters by class)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from course_helpers._utils import CourseWarning
from course_helpers.embed import GeneNotInCellsWarning, embed_genes
from course_helpers.model import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_absent_gene_warns_with_its_class(fixture_model_dir, fixture_cells):
    model = load_model(fixture_model_dir, device="cpu")
    cells = fixture_cells.iloc[:4].reset_index(drop=True)
    present = {int(t) for ids in cells["input_ids"] for t in ids}
    vocab = model.gene_vocab
    absent = next(t for t in range(2, len(vocab)) if t not in present)
    label = vocab.symbols([absent])[0]
    with pytest.warns(GeneNotInCellsWarning, match="occur in no cell") as caught:
        df = embed_genes(model, cells, genes=[label], progress=False)
    assert issubclass(caught[0].category, CourseWarning)
    assert np.isnan(df.loc[label].to_numpy()).all() and df.n_cells[label] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", GeneNotInCellsWarning)  # filtered by class alone
        embed_genes(model, cells, genes=[label], progress=False)
