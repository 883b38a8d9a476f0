"""The perturbation functions emit warning classes (same text as before) with structured data."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers._utils import CourseWarning
from course_helpers.perturb import (
    EmbModeFallbackWarning,
    FewNullGenesWarning,
    GenesNotExpressedWarning,
    PerturbWarning,
    in_silico_perturb,
    random_gene_null,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=20, pad_token_id=0)
    return transformers.BertForMaskedLM(cfg).eval()


def test_classes():
    for cls in (EmbModeFallbackWarning, FewNullGenesWarning, GenesNotExpressedWarning):
        assert issubclass(cls, PerturbWarning) and issubclass(cls, CourseWarning)


def test_genes_not_expressed(tiny):
    with pytest.warns(GenesNotExpressedWarning, match="expressed in none of") as rec:
        got = in_silico_perturb(tiny, {"input_ids": [[5, 6, 7, 8]]}, "delete", genes=[6, 30],
                                progress=False)
    assert got["perturbed_token"].tolist() == [6]
    w = rec[0].message
    assert w.genes == [30]
    assert str(w) == "1 gene(s) are expressed in none of the 1 chosen cell(s) and get no rows: [30]"


def test_few_null_genes(tiny):
    with pytest.warns(FewNullGenesWarning, match="Only 3 genes are available") as rec:
        random_gene_null(tiny, {"input_ids": [[5, 6, 7, 8]]}, n_genes=10, exclude=[5],
                         progress=False)
    assert (rec[0].message.n_available, rec[0].message.n_requested) == (3, 10)


def test_emb_mode_fallback(tiny):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        in_silico_perturb(tiny, {"input_ids": [[5, 6, 7, 8]]}, "delete", genes=[6],
                          emb_mode="cls", progress=False)
    w = [c.message for c in caught if isinstance(c.message, EmbModeFallbackWarning)]
    assert len(w) == 1 and (w[0].requested, w[0].used) == ("cls", "cell")
    assert "as the reference does" in str(w[0])
