"""ModelFacts / model_facts: special tokens, sizes, device and layer of a model, in one place."""
import numpy as np
import pytest
import torch
import transformers

from course_helpers._utils import CourseInputError
from course_helpers.model import ModelFacts, load_model, model_facts, resolve_layer
from course_helpers.vocab import GeneVocab


def _tiny(vocab_size=8, pad_token_id=0, layers=2):
    cfg = transformers.BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=layers,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=12, pad_token_id=pad_token_id)
    torch.manual_seed(0)
    return transformers.BertForMaskedLM(cfg).eval()


@pytest.fixture(scope="module")
def teaching():
    return load_model("teaching", device="cpu")


def test_teaching_model(teaching):
    f = model_facts(teaching)
    assert isinstance(f, ModelFacts)
    assert f.model is teaching and f.vocab is teaching.gene_vocab
    assert f.version == "teaching"
    assert (f.pad_id, f.mask_id, f.cls_id, f.eos_id) == (0, 1, None, None)
    assert f.special_ids.dtype == np.int64 and f.special_ids.tolist() == [0, 1]
    assert f.vocab_size == teaching.config.vocab_size == len(teaching.gene_vocab)
    assert f.max_len == teaching.config.max_position_embeddings
    assert f.hidden == teaching.config.hidden_size
    assert f.device == torch.device("cpu")
    assert f.emb_layer == -1 and f.hidden_index == resolve_layer(teaching, -1)
    assert f.n_layers == teaching.config.num_hidden_layers
    assert model_facts(teaching, emb_layer=0).hidden_index == f.n_layers
    assert f.is_special([0, 1, 5]).tolist() == [True, True, False]


def test_v2_vocab_specials_and_every_angle_token():
    m = _tiny(vocab_size=9)
    tok = {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3, "<custom>": 8,
           **{f"ENSG0000000000{i}": i for i in range(4, 8)}}
    m.gene_vocab = GeneVocab.from_dicts(tok, {k: 1.0 for k in tok if k.startswith("ENSG")})
    f = model_facts(m)
    assert (f.pad_id, f.mask_id, f.cls_id, f.eos_id) == (0, 1, 2, 3)
    assert f.special_ids.tolist() == [0, 1, 2, 3, 8]
    assert f.version == "V2"  # no model_version attribute: the vocabulary's
    assert f.max_len == 12 and f.hidden == 16 and f.vocab_size == 9
    with pytest.raises(CourseInputError, match=r"\[8\] in genes are not gene tokens"):
        f.resolve_genes([4, 8])
    assert f.resolve_genes(["ENSG00000000005", 4]) == [5, 4]


def test_plain_model_without_vocabulary():
    m = _tiny(pad_token_id=3)
    f = model_facts(m, emb_layer=-2)
    assert f.vocab is None and f.version is None
    assert f.pad_id == 3 and f.mask_id is None and f.special_ids.tolist() == [3]
    assert f.emb_layer == -2 and f.hidden_index == 0
    assert f.resolve_genes([5, 4, 5]) == [5, 4]
    assert f.resolve_genes(np.int64(2)) == [2]
    with pytest.raises(CourseInputError, match="no gene vocabulary"):
        f.resolve_genes(["CD79A"])
    with pytest.raises(CourseInputError, match="not gene tokens"):
        f.resolve_genes([3])
    with pytest.raises(CourseInputError, match=r"\[8\] in cells are not gene tokens.*0\.\.7"):
        f.resolve_genes([8], argname="cells")
    with pytest.raises(CourseInputError, match="genes is empty"):
        f.resolve_genes([])
    with pytest.raises(CourseInputError, match="pass token ids"):
        f.resolve_genes([1.0])


def test_pad_id_defaults_to_zero():
    m = _tiny()
    m.config.pad_token_id = None
    assert model_facts(m).pad_id == 0


def test_resolve_genes_uses_the_vocabulary(teaching):
    f = model_facts(teaching)
    vwf = teaching.gene_vocab.tokens(["VWF"])[0]
    assert f.resolve_genes(["vwf", 5]) == [vwf, 5]
    with pytest.raises(CourseInputError, match=r"VWFX.*did you mean.*'VWF'"):
        f.resolve_genes(["VWFX"])


def test_bad_model_and_layer(teaching):
    with pytest.raises(CourseInputError, match="BertForMaskedLM"):
        model_facts("teaching")
    with pytest.raises(CourseInputError, match="BertForMaskedLM"):
        model_facts(torch.nn.Linear(2, 2))
    with pytest.raises(CourseInputError, match="out of range"):
        model_facts(teaching, emb_layer=1)
    with pytest.raises(TypeError):
        model_facts(teaching, -1)  # emb_layer is keyword-only
