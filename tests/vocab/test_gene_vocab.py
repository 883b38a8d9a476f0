"""Tests for course_helpers.vocab (GeneVocab, restricted unpickler, loaders)."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest

from course_helpers import vocab as vocab_mod
from course_helpers._utils import CourseInputError
from course_helpers.vocab import GeneVocab, safe_load_pickle
from course_helpers.vocab import hub as hub_mod
from course_helpers.vocab import published as published_mod
from course_helpers.vocab import readers as readers_mod

TP53 = "ENSG00000141510"


@pytest.fixture(scope="module")
def v1(v1_dir):
    return GeneVocab.geneformer_v1(v1_dir)


def small_v2():
    tok = {"<pad>": 7, "<mask>": 3, "<cls>": 0, "<eos>": 1, TP53: 2, "ENSG00000000003": 4}
    med = {TP53: 2.5, "ENSG00000000003": 0.75}
    return GeneVocab.from_dicts(tok, med, {"TP53": TP53, "TSPAN6": "ENSG00000000003"})


# --- the real V1 dictionaries ---------------------------------------------------------------
def test_v1_counts_and_special_tokens(v1):
    assert len(v1) == 25_426
    assert len(v1.medians) == 25_424
    assert len(v1.symbol_to_id) == 40_248
    assert v1.pad_token_id == 0 and v1.mask_token_id == 1
    assert v1.cls_token_id is None and v1.eos_token_id is None
    assert v1.version == "V1"
    assert sorted(v1.id_to_token) == list(range(25_426))
    assert min(v1.medians.values()) == pytest.approx(0.0947, abs=1e-4)
    assert max(v1.medians.values()) == pytest.approx(634.3, abs=0.1)
    assert sum(g.startswith("ENSGR") for g in v1.genes) == 19


def test_v1_tsv_and_pkl_identical(v1, v1_dir):
    pk = GeneVocab.from_files(
        v1_dir / "token_dictionary_gc30M.pkl",
        v1_dir / "gene_median_dictionary_gc30M.pkl",
        v1_dir / "gene_name_id_dict_gc30M.pkl",
    )
    assert pk.token_to_id == v1.token_to_id
    assert list(pk.token_to_id) == list(v1.token_to_id)
    assert pk.symbol_to_id == v1.symbol_to_id
    assert list(pk.symbol_to_id) == list(v1.symbol_to_id)
    # medians must be bit-identical (the TSV is parsed with float())
    a = np.array([pk.medians[g] for g in pk.medians])
    b = np.array([v1.medians[g] for g in pk.medians])
    assert np.array_equal(a.view(np.int64), b.view(np.int64))
    assert all(type(v) is int for v in pk.token_to_id.values())
    assert all(type(v) is float for v in pk.medians.values())
    assert pk == v1


def test_to_tsv_is_byte_identical_to_upstream_export(v1_dir, tmp_path):
    pk = GeneVocab.from_files(
        v1_dir / "token_dictionary_gc30M.pkl",
        v1_dir / "gene_median_dictionary_gc30M.pkl",
        v1_dir / "gene_name_id_dict_gc30M.pkl",
    )
    out = pk.to_tsv(tmp_path / "vocab.tsv")
    assert out.read_bytes() == (v1_dir / "vocab_gc30M.tsv").read_bytes()
    back = GeneVocab.from_tsv(out)
    assert back.token_to_id == pk.token_to_id and back.medians == pk.medians


def test_folder_prefers_tsv_and_accepts_pickles(v1_dir, tmp_path, monkeypatch):
    only_pkl = tmp_path / "pkl"
    only_pkl.mkdir()
    for f in (
        "token_dictionary_gc30M.pkl",
        "gene_median_dictionary_gc30M.pkl",
        "gene_name_id_dict_gc30M.pkl",
    ):
        shutil.copy(v1_dir / f, only_pkl / f)
    from_pkl = GeneVocab.geneformer_v1(only_pkl)
    assert len(from_pkl) == 25_426 and len(from_pkl.symbol_to_id) == 40_248

    # with both present the TSV is used: the pickles are never opened
    both = tmp_path / "both"
    shutil.copytree(only_pkl, both)
    for f in ("vocab_gc30M.tsv", "gene_name_id_gc30M.tsv"):
        shutil.copy(v1_dir / f, both / f)

    def boom(*a, **k):
        raise AssertionError("pickle opened although a TSV is present")

    monkeypatch.setattr(readers_mod, "safe_load_pickle", boom)
    assert GeneVocab.geneformer_v1(both) == from_pkl


def test_geneformer_v1_env_var(v1_dir, monkeypatch):
    monkeypatch.setenv("GENEFORMER_V1_DIR", str(v1_dir))
    assert len(GeneVocab.geneformer_v1()) == 25_426


def test_geneformer_v1_offline_message(monkeypatch):
    monkeypatch.delenv("GENEFORMER_V1_DIR", raising=False)

    def offline(repo_id, revision, allow_patterns):
        raise OSError("no network")

    monkeypatch.setattr(hub_mod, "_download_hub_snapshot", offline)
    with pytest.raises(CourseInputError) as e:
        GeneVocab.geneformer_v1()
    msg = str(e.value)
    assert "no network" in msg
    assert "GENEFORMER_V1_DIR" in msg and "GeneVocab.teaching()" in msg and "local folder" in msg


def test_geneformer_v1_bad_folder(tmp_path):
    with pytest.raises(CourseInputError, match="No V1 dictionaries"):
        GeneVocab.geneformer_v1(tmp_path)
    with pytest.raises(CourseInputError, match="not found"):
        GeneVocab.geneformer_v1(tmp_path / "nope")


def test_hub_download_is_pinned(monkeypatch, tmp_path, v1_dir):
    calls = []

    def fake(repo_id, revision, allow_patterns):
        calls.append((repo_id, revision, list(allow_patterns)))
        root = tmp_path / "snap"
        for f in allow_patterns:
            src = v1_dir / f.rsplit("/", 1)[-1]
            if src.is_file():
                (root / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, root / f)
        return root

    monkeypatch.setattr(hub_mod, "_download_hub_snapshot", fake)
    monkeypatch.delenv("GENEFORMER_V1_DIR", raising=False)
    v = GeneVocab.geneformer_v1()
    assert len(v) == 25_426
    assert calls == [("ctheodoris/Geneformer", vocab_mod.GENEFORMER_REVISION,
                      list(vocab_mod.V1_HUB_FILES.values()))]
    # the pin is an upstream commit (checked against the repository's history), not the fork's
    assert vocab_mod.GENEFORMER_REVISION == "05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28"
    assert v.ensembl_mapping is None  # the shared fixture has no mapping dictionary
    GeneVocab.geneformer_v1(revision="main")
    assert calls[-1][1] == "main"


# --- restricted unpickler --------------------------------------------------------------------
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"ENSG00000000003": _Evil(marker)}, protocol=4))
    with pytest.raises(CourseInputError) as e:
        safe_load_pickle(p)
    assert "not a plain dictionary" in str(e.value) and "may be unsafe" in str(e.value)
    assert "system" in str(e.value)
    assert not marker.exists()
    # the same through the public constructor
    with pytest.raises(CourseInputError, match="may be unsafe"):
        GeneVocab.from_files(p, p)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [np.arange(3), {"a": np.arange(2)}, {"f": print}])
def test_restricted_unpickler_refuses_other_globals(tmp_path, obj):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(obj))
    with pytest.raises(CourseInputError, match="not a plain dictionary"):
        safe_load_pickle(p)


def test_restricted_unpickler_reads_numpy_scalars(tmp_path):
    d = {"<pad>": 0, TP53: np.int16(2), "ENSG00000000003": np.int16(3)}
    m = {TP53: np.float64(0.1) + np.float64(0.2), "ENSG00000000003": np.float64(1.5)}
    (tmp_path / "t.pkl").write_bytes(pickle.dumps(d, protocol=4))
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(m, protocol=4))
    assert safe_load_pickle(tmp_path / "t.pkl") == d
    v = GeneVocab.from_files(tmp_path / "t.pkl", tmp_path / "m.pkl")
    assert v.medians[TP53] == 0.1 + 0.2  # exact
    assert v.token_to_id[TP53] == 2 and type(v.token_to_id[TP53]) is int


def test_unpickler_rejects_non_dict_and_garbage(tmp_path):
    (tmp_path / "l.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CourseInputError, match="not a dictionary"):
        safe_load_pickle(tmp_path / "l.pkl")
    (tmp_path / "g.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(CourseInputError, match="Could not read"):
        safe_load_pickle(tmp_path / "g.pkl")


# --- other formats and look-ups --------------------------------------------------------------
def test_from_files_json_and_tsv_agree(tmp_path):
    v = small_v2()
    (tmp_path / "t.json").write_text(json.dumps(v.token_to_id))
    (tmp_path / "m.json").write_text(json.dumps(v.medians))
    (tmp_path / "n.json").write_text(json.dumps(v.symbol_to_id))
    a = GeneVocab.from_files(tmp_path / "t.json", tmp_path / "m.json", tmp_path / "n.json")
    (tmp_path / "t.tsv").write_text("".join(f"{k}\t{i}\n" for k, i in v.token_to_id.items()))
    (tmp_path / "m.tsv").write_text(
        "ensembl_id\tgene_median\n" + "".join(f"{k}\t{m!r}\n" for k, m in v.medians.items())
    )
    (tmp_path / "n.tsv").write_text(
        "gene_symbol\tensembl_id\n" + "".join(f"{s}\t{e}\n" for s, e in v.symbol_to_id.items())
    )
    b = GeneVocab.from_files(tmp_path / "t.tsv", tmp_path / "m.tsv", tmp_path / "n.tsv")
    assert a == v and b == v
    combined = v.to_tsv(tmp_path / "vocab.tsv")
    assert GeneVocab.from_files(combined, combined, combined) == v


def test_special_tokens_read_from_dictionary():
    v = small_v2()
    assert (v.pad_token_id, v.mask_token_id, v.cls_token_id, v.eos_token_id) == (7, 3, 0, 1)
    assert v.version == "V2"
    assert v.special_tokens == {"<pad>": 7, "<mask>": 3, "<cls>": 0, "<eos>": 1}
    assert v.genes == [TP53, "ENSG00000000003"]


def test_lookups(v1):
    assert v1.tokens(["TP53", TP53, TP53 + ".17"]) == [v1.token_to_id[TP53]] * 3
    assert v1.symbols(v1.tokens(["TP53", "GAPDH"])) == ["TP53", "GAPDH"]
    assert v1.symbols([0, 1]) == ["<pad>", "<mask>"]
    no_symbol = next(g for g in v1.genes if g not in v1.id_to_symbol)
    assert v1.symbols(v1.tokens([no_symbol])) == [no_symbol]
    assert v1.map_symbols(["TP53", "NOT_A_GENE_XYZ", "ENSG00000141510.3"]) == [TP53, None, TP53]
    with pytest.raises(CourseInputError, match="NOT_A_GENE_XYZ"):
        v1.tokens(["TP53", "NOT_A_GENE_XYZ"])
    with pytest.raises(CourseInputError, match="not in this vocabulary"):
        v1.symbols([10**6])


def test_bad_dictionaries(tmp_path):
    with pytest.raises(CourseInputError, match="positive finite"):
        GeneVocab.from_dicts({"<pad>": 0, TP53: 1}, {TP53: 0.0})
    with pytest.raises(CourseInputError, match="used twice"):
        GeneVocab.from_dicts({"<pad>": 0, TP53: 0}, {TP53: 1.0})
    with pytest.raises(CourseInputError, match="None of the genes"):
        GeneVocab.from_dicts({"<pad>": 0, TP53: 1}, {"ENSG00000000003": 1.0})
    (tmp_path / "bad.tsv").write_text("a\tb\n")
    with pytest.raises(CourseInputError, match="header"):
        GeneVocab.from_tsv(tmp_path / "bad.tsv")


def test_teaching_vocab_missing_or_present(monkeypatch, tmp_path):
    if published_mod._TEACHING_VOCAB.is_file():
        t = GeneVocab.teaching()
        assert len(t) > 2 and t.pad_token_id is not None
    monkeypatch.setattr(published_mod, "_TEACHING_VOCAB", tmp_path / "missing" / "vocab.tsv")
    with pytest.raises(CourseInputError, match="not yet available"):
        GeneVocab.teaching()
    small_v2().to_tsv(tmp_path / "missing" / "vocab.tsv")
    assert GeneVocab.teaching().version == "V2"
