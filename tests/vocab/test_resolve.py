"""GeneVocab.resolve / GeneVocab.suggest / close_matches: the one gene lookup and fuzzy rule."""
import numpy as np
import pytest

from course_helpers._utils import CourseInputError
from course_helpers.vocab import GeneVocab, close_matches


@pytest.fixture(scope="module")
def vocab():
    return GeneVocab.teaching()


@pytest.fixture(scope="module")
def v2():
    tok = {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3, "ENSG00000105369": 4,
           "ENSG00000007312": 5, "ENSG00000141510": 6}
    med = {k: 1.0 for k in tok if not k.startswith("<")}
    names = {"CD79A": "ENSG00000105369", "CD79B": "ENSG00000007312", "TP53": "ENSG00000141510",
             "Tp53x": "ENSG00000141510", "OUTSIDE": "ENSG00000999999"}
    return GeneVocab.from_dicts(tok, med, names, name="tiny")


def test_resolve_symbols_ids_and_token_ids(vocab):
    vwf, gata3 = vocab.tokens(["VWF", "GATA3"])
    assert vocab.resolve(["VWF", "GATA3"]) == [vwf, gata3]
    # any case, Ensembl IDs with version, token ids (python and numpy ints); unique, in order
    assert vocab.resolve(["gata3", "ENSG00000110799.4", np.int64(5), 5, "VWF"]) == [gata3, vwf, 5]
    assert vocab.resolve("VWF") == [vwf]
    assert vocab.resolve(5) == [5]
    assert vocab.resolve(np.array([5, 6])) == [5, 6]
    assert vocab.resolve(("Vwf",)) == [vwf]


def test_resolve_exact_case_first(v2):
    # "Tp53x" exists only in that spelling; "TP53X" finds it through the any-case fold
    assert v2.resolve(["Tp53x"]) == [6]
    assert v2.resolve(["tp53X"]) == [6]
    assert v2.resolve(["cd79b", "CD79A"]) == [5, 4]


def test_resolve_unknown_gene_suggests(vocab, v2):
    with pytest.raises(CourseInputError, match=r"CD79AX.*did you mean.*'CD79A'") as err:
        v2.resolve(["CD79AX"])
    assert "Unknown gene" in str(err.value)
    with pytest.raises(CourseInputError, match=r"not in the model's vocabulary: \['NOTAGENE'\]"):
        v2.resolve(["TP53", "NOTAGENE"], argname="gene_labels")
    with pytest.raises(CourseInputError, match=r"in gene_labels.*'VWFX': did you mean 'VWF'"):
        vocab.resolve(["VWFX"], argname="gene_labels")
    # a symbol whose Ensembl ID is not a token of the vocabulary is unknown, too
    with pytest.raises(CourseInputError, match=r"\['OUTSIDE'\]"):
        v2.resolve("OUTSIDE")
    with pytest.raises(CourseInputError, match="and 2 more"):
        v2.resolve([f"NOPE{i}" for i in range(7)])


def test_resolve_rejects_specials_and_bad_items(vocab, v2):
    with pytest.raises(CourseInputError, match=r"Token id\(s\) \[0\] in genes are not gene tokens"):
        vocab.resolve([0])
    with pytest.raises(CourseInputError, match=r"\[2, 99\].*special tokens \[0, 1, 2, 3\]"):
        v2.resolve([2, 99, 4])
    with pytest.raises(CourseInputError, match="not gene tokens"):
        v2.resolve(["<cls>"])
    with pytest.raises(CourseInputError, match="not gene tokens"):
        vocab.resolve([-1])
    with pytest.raises(CourseInputError, match="genes is empty"):
        vocab.resolve([])
    with pytest.raises(CourseInputError, match="cells is empty"):
        vocab.resolve([], argname="cells")
    with pytest.raises(CourseInputError, match="boolean"):
        vocab.resolve([True])
    with pytest.raises(CourseInputError, match=r"holds 1\.5 \(float\)"):
        vocab.resolve([1.5])
    with pytest.raises(CourseInputError, match="not NoneType"):
        vocab.resolve(None)


def test_suggest(vocab, v2):
    assert vocab.suggest("VWFX") == ["VWF"]
    assert vocab.suggest("gata3")[0] == "GATA3"
    assert len(vocab.suggest("gata3", n=2)) == 2
    assert v2.suggest("CD79AX") == ["CD79A", "CD79B"]
    # Ensembl IDs are compared with Ensembl IDs
    assert v2.suggest("ENSG0000010536")[0] == "ENSG00000105369"
    assert "CD79A" not in v2.suggest("ENSG0000010536")
    assert v2.suggest("QQQQQQ") == []
    # symbols whose ID is not a token are never suggested
    assert "OUTSIDE" not in v2.suggest("OUTSIDEX")


def test_close_matches_rule():
    choices = ["fibroblast", "endothelial", "cardiomyocyte", "Fibroblast-like"]
    assert close_matches("fibroblst", choices)[0] == "fibroblast"
    # a case-only difference comes first; the word itself is never suggested
    assert close_matches("FIBROBLAST", choices)[0] == "fibroblast"
    assert "fibroblast" not in close_matches("fibroblast", choices)
    # names that start with what was typed fill up the list
    assert close_matches("cardio", choices) == ["cardiomyocyte"]
    assert close_matches("car", choices, n=1) == ["cardiomyocyte"]
    assert close_matches("zz", choices) == []
    assert close_matches("fib", choices, n=0) == []
    assert close_matches("", choices) == []


def test_gene_groups_by_symbol_prefix():
    from course_helpers.vocab import GENE_GROUPS, GeneVocab

    vocab = GeneVocab.teaching()
    for name, prefixes in GENE_GROUPS.items():
        ids = vocab.group(name)
        expected = sorted(i for i, s in zip(vocab.id_to_token, vocab.symbols(list(vocab.id_to_token)))
                          if isinstance(s, str) and s.upper().startswith(prefixes))
        assert ids == expected and len(ids) > 0, name
    with pytest.raises(CourseInputError, match=r"Unknown gene group 'MT'.*\['mito', 'ribo'\]"):
        vocab.group("MT")
