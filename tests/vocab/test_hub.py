"""Every named model and vocabulary, loaded from a folder laid out exactly like the real Hub
repository ``ctheodoris/Geneformer`` at the pinned commit.

The layout comes from ``reference/geneformer_hub/tree.tsv`` (every model, dictionary and config
file of the repository, with sizes and SHA-256): the same paths, the real ``config.json`` files
where their values matter (shrunk only in width and depth so that the weights stay tiny), the real
V1 dictionaries (checked against the tree's SHA-256), synthetic V2 and mapping dictionaries with
the same value types. The download itself is mocked by a fake ``snapshot_download`` that copies
the files matching ``allow_patterns``, as the real one does, so the code path is the one a learner
on Colab runs.
"""
from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers import model as cm
from course_helpers import vocab as vocab_mod
from course_helpers._utils import CourseInputError
from course_helpers.model import KNOWN_MODELS, load_model
from course_helpers.vocab import GeneVocab
from course_helpers.vocab import hub as hub_mod

PIN = "05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28"
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"
# width/depth of the stand-in weights; every other config value is the real one
SHRINK = {"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
          "intermediate_size": 16}


# ----------------------------------------------------------------------------------------------
# building the Hub-shaped folder
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def hub_ref(shared_dir) -> Path:
    d = shared_dir / "reference" / "geneformer_hub"
    if not (d / "tree.tsv").is_file():
        pytest.skip(f"Hub layout reference not found at {d}")
    return d


@pytest.fixture(scope="session")
def tree(hub_ref) -> dict[str, dict]:
    with open(hub_ref / "tree.tsv", newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f, delimiter="\t")}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _v2_dictionaries(v1: GeneVocab) -> dict[str, dict]:
    """Synthetic gc104M dictionaries: 20,271 genes + 4 special tokens, V2 value types."""
    genes = v1.genes[:20_271]
    tok = {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3}
    tok.update({g: np.int64(i + 4) for i, g in enumerate(genes)})
    med = {g: np.float64(v1.medians[g]) for g in genes}
    names = {s: e for s, e in v1.symbol_to_id.items() if e in med}
    return {"token_dictionary": tok, "gene_medians": med, "gene_names": names,
            "ensembl_mapping": _mapping(genes)}


def _mapping(genes: list[str]) -> dict[str, str]:
    """Identity for the vocabulary genes plus three retired IDs that map onto vocabulary genes."""
    m = {g: g for g in genes}
    m["ENSG99999999901"] = genes[0]
    m["ENSG99999999902"] = genes[0]
    m["ENSG99999999903"] = genes[1]
    return m


def _write_model(folder: Path, real_config: dict) -> None:
    cfg = dict(real_config, **SHRINK)
    arch = cfg["architectures"][0]
    config = transformers.BertConfig(**{k: v for k, v in cfg.items() if k != "architectures"})
    torch.manual_seed(0)
    model = getattr(transformers, arch)(config)
    folder.mkdir(parents=True, exist_ok=True)
    return model


def build_hub_folder(root: Path, hub_ref: Path, tree: dict, v1_dir: Path) -> Path:
    """Write every file of ``tree.tsv`` under ``root``, with stand-in content where it is big."""
    v1 = GeneVocab.geneformer_v1(v1_dir)
    v2 = _v2_dictionaries(v1)
    v1_real = {Path(p).name: p for p in tree if p.startswith("geneformer/gene_dictionaries_30m/")}
    for path, row in tree.items():
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        real = hub_ref / "configs" / path
        name = dest.name
        if path.endswith("config.json") and "generation" not in name:
            cfg = json.loads(real.read_text())
            shrunk = dict(cfg, **SHRINK)
            dest.write_text(json.dumps(shrunk, indent=2))
        elif real.is_file():
            shutil.copy(real, dest)
        elif name in ("model.safetensors", "pytorch_model.bin"):
            cfg = json.loads((hub_ref / "configs" / path).with_name("config.json").read_text())
            model = _write_model(dest.parent, cfg)
            if name == "model.safetensors":
                from safetensors.torch import save_model

                save_model(model, str(dest))
            else:
                torch.save(model.state_dict(), dest)
        elif path.endswith(".pkl"):
            if "gc30M" in name and (v1_dir / name).is_file():
                shutil.copy(v1_dir / name, dest)
                assert _sha256(dest) == row["lfs_sha256"], f"{name} differs from the Hub's file"
            elif "gc30M" in name:  # the V1 mapping dictionary
                dest.write_bytes(pickle.dumps(_mapping(v1.genes), protocol=4))
            else:
                key = next(k for k, f in vocab_mod.V2_PKL_FILES.items() if f == name)
                dest.write_bytes(pickle.dumps(v2[key], protocol=4))
        elif path.endswith(".json"):
            dest.write_text("{}")
        else:  # training_args.bin, optimizer.pt, ...: never read by the course
            dest.write_bytes(b"stand-in for " + path.encode())
    assert set(v1_real) >= {"token_dictionary_gc30M.pkl", "ensembl_mapping_dict_gc30M.pkl"}
    return root


@pytest.fixture(scope="session")
def hub_folder(tmp_path_factory, hub_ref, tree, v1_dir) -> Path:
    return build_hub_folder(tmp_path_factory.mktemp("hub") / "Geneformer", hub_ref, tree, v1_dir)


@pytest.fixture()
def fake_hub(monkeypatch, hub_folder, tree, tmp_path):
    """Replace the one download function by a local snapshot_download of ``hub_folder``."""
    calls = []

    def snapshot(repo_id, revision, allow_patterns):
        calls.append((repo_id, revision, list(allow_patterns)))
        assert repo_id == "ctheodoris/Geneformer"
        snap = tmp_path / f"snapshot{len(calls)}"
        for pattern in allow_patterns:
            hits = [p for p in tree if fnmatch.fnmatch(p, pattern)]
            assert hits, f"{pattern!r} matches no file of the real repository"
            for p in hits:
                (snap / p).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(hub_folder / p, snap / p)
        return snap

    monkeypatch.setattr(hub_mod, "_download_hub_snapshot", snapshot)
    monkeypatch.delenv("GENEFORMER_V1_DIR", raising=False)
    monkeypatch.delenv("GENEFORMER_V2_DIR", raising=False)
    return calls


# ----------------------------------------------------------------------------------------------
# names and paths are the real ones
# ----------------------------------------------------------------------------------------------
def test_pin_and_paths_exist_in_the_real_repository(tree):
    assert vocab_mod.GENEFORMER_REVISION == PIN == cm.HUB_REVISION
    for key, spec in KNOWN_MODELS.items():
        assert f"{spec.subfolder}/config.json" in tree, key
        assert f"{spec.subfolder}/{spec.weights}" in tree, key
        assert set(spec.dictionaries.values()) <= set(tree), key
    for files in vocab_mod.HUB_DICTIONARIES.values():
        assert set(files.values()) <= set(tree)


# ----------------------------------------------------------------------------------------------
# every named model and vocabulary through the Hub code path
# ----------------------------------------------------------------------------------------------
EXPECTED = {  # name: (class, version, vocab size, positions, real layers)
    "geneformer-v1": ("BertForMaskedLM", "V1", 25_426, 2048, 6),
    "geneformer-v2-104m": ("BertForMaskedLM", "V2", 20_275, 4096, 12),
    "geneformer-v2-104m-clcancer": ("BertForMaskedLM", "V2", 20_275, 4096, 12),
    "geneformer-v2-316m": ("BertForMaskedLM", "V2", 20_275, 4096, 18),
    "geneformer-v1-cardiomyopathy": ("BertForSequenceClassification", "V1", 25_426, 2048, 6),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_named_model_loads_from_the_hub_layout(name, fake_hub, hub_ref):
    cls, version, n_vocab, n_pos, _ = EXPECTED[name]
    spec = KNOWN_MODELS[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = load_model(name, device="cpu")
    assert type(m).__name__ == cls
    assert m.model_version == version and m.gene_vocab.version == version
    assert len(m.gene_vocab) == m.config.vocab_size == n_vocab
    assert m.config.max_position_embeddings == n_pos
    assert not m.training
    assert m.gene_vocab.ensembl_mapping is not None  # downloaded with the dictionaries
    real = json.loads((hub_ref / "configs" / spec.subfolder / "config.json").read_text())
    assert m.config.hidden_act == real["hidden_act"] and m.config.pad_token_id == 0
    (_repo, rev, patterns), = fake_hub
    assert rev == PIN
    # only what is needed: config, one weight file, the dictionaries (never optimizer.pt ...)
    assert patterns[:2] == [f"{spec.subfolder}/config.json", f"{spec.subfolder}/{spec.weights}"]
    bin_warnings = [str(w.message) for w in caught if "weights-only loading" in str(w.message)]
    if spec.weights == "pytorch_model.bin":
        assert m.config.num_labels == 3
        assert bin_warnings and "torch.load(weights_only=True)" in bin_warnings[0]
    else:
        assert not bin_warnings
    # a classifier runs through the same encoder helpers as a masked-LM
    ids, mask = cm.pad_batch([[5, 6, 7, 8]], 0)
    with torch.inference_mode():
        h = cm.hidden_states(m, ids, mask, layer=-1)
    assert tuple(h.shape) == (1, 4, SHRINK["hidden_size"])


def test_vocabularies_from_the_hub_layout(fake_hub, v1_dir):
    v1 = GeneVocab.geneformer_v1()
    assert v1 == GeneVocab.geneformer_v1(v1_dir)  # the real V1 dictionaries
    assert v1.ensembl_mapping["ENSG99999999901"] == v1.genes[0]
    v2 = GeneVocab.geneformer_v2(revision="main")
    assert v2.version == "V2" and len(v2) == 20_275
    assert (v2.pad_token_id, v2.mask_token_id, v2.cls_token_id, v2.eos_token_id) == (0, 1, 2, 3)
    assert all(type(t) is int for t in v2.token_to_id.values())
    assert [c[1] for c in fake_hub] == [PIN, "main"]
    assert fake_hub[1][2] == list(vocab_mod.V2_HUB_FILES.values())


def test_a_clone_of_the_repository(hub_folder):
    # model folders find their dictionaries in the clone (fine-tuned model: two levels up)
    assert load_model(hub_folder / "Geneformer-V1-10M", device="cpu").model_version == "V1"
    v2 = load_model(hub_folder / "Geneformer-V2-104M", device="cpu")
    assert v2.model_version == "V2" and len(v2.gene_vocab) == 20_275
    with pytest.warns(UserWarning, match="weights-only loading"):
        ft = load_model(hub_folder / KNOWN_MODELS["geneformer-v1-cardiomyopathy"].subfolder,
                        device="cpu")
    assert type(ft).__name__ == "BertForSequenceClassification" and len(ft.gene_vocab) == 25_426
    assert GeneVocab.geneformer_v2(hub_folder).version == "V2"
    assert len(GeneVocab.geneformer_v1(hub_folder)) == 25_426


def test_repository_root_is_not_a_model_folder(hub_folder):
    with pytest.raises(CourseInputError) as err:
        load_model(hub_folder, device="cpu")
    msg = str(err.value)
    assert "root of a clone" in msg and "Geneformer-V2-316M" in msg and "316 M" in msg
    assert str(hub_folder / "Geneformer-V1-10M") in msg  # which folder to use instead


# ----------------------------------------------------------------------------------------------
# a clone made without git-lfs; older dictionary names
# ----------------------------------------------------------------------------------------------
def test_git_lfs_pointer_files(hub_folder, tree, tmp_path):
    clone = tmp_path / "Geneformer"
    shutil.copytree(hub_folder / "geneformer", clone / "geneformer")
    shutil.copytree(hub_folder / "Geneformer-V1-10M", clone / "Geneformer-V1-10M")
    for path, row in tree.items():
        if row["storage"] == "lfs" and (clone / path).is_file():
            (clone / path).write_text(LFS_POINTER.format(sha=row["lfs_sha256"],
                                                         size=row["size_bytes"]))
    with pytest.raises(CourseInputError) as err:
        GeneVocab.geneformer_v1(clone)
    msg = str(err.value)
    assert "git-lfs pointer file" in msg and "git lfs pull" in msg and "788,424 bytes" in msg
    with pytest.raises(CourseInputError, match="git lfs pull"):
        load_model(clone / "Geneformer-V1-10M", device="cpu")
    # with the dictionaries present, the weights are the pointer that is reported
    shutil.rmtree(clone / "geneformer")
    shutil.copytree(hub_folder / "geneformer", clone / "geneformer")
    with pytest.raises(CourseInputError) as err:
        load_model(clone / "Geneformer-V1-10M", device="cpu")
    assert "model.safetensors is a git-lfs pointer file" in str(err.value)


def test_older_gc95m_dictionary_names_are_accepted(hub_folder, tmp_path):
    old = tmp_path / "old_clone"
    old.mkdir()
    for f in (hub_folder / "geneformer").glob("*_gc104M.pkl"):
        shutil.copy(f, old / f.name.replace("gc104M", "gc95M"))
    v = GeneVocab.geneformer_v2(old)
    assert v == GeneVocab.geneformer_v2(hub_folder) and v.ensembl_mapping is not None
    shutil.copytree(hub_folder / "Geneformer-V2-104M", old / "model")
    for f in old.glob("*_gc95M.pkl"):
        shutil.copy(f, old / "model" / f.name)
    assert load_model(old / "model", device="cpu").model_version == "V2"


# ----------------------------------------------------------------------------------------------
# download errors name their real cause
# ----------------------------------------------------------------------------------------------
def _hub_error(name: str, message: str):
    from huggingface_hub import errors

    cls = getattr(errors, name)
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


@pytest.mark.parametrize("error, expected", [
    (("RevisionNotFoundError", "404 Client Error. Revision Not Found for url"),
     ["revision 'e534f69270b8875bbbfa2fbe337b5a0a069dcd13' does not exist",
      "not a Hub commit", "pinned revision 05fcbeb8a27d"]),
    (("RemoteEntryNotFoundError", "404 Client Error. Entry Not Found"),
     ["a file was not found at that revision", "Geneformer-V1-10M/config.json"]),
    (("LocalEntryNotFoundError", "Cannot find the requested files in the disk cache"),
     ["you appear to be offline", "load_model('teaching')"]),
])
def test_download_errors_name_the_cause(error, expected, monkeypatch):
    import huggingface_hub

    err = _hub_error(*error)

    def fail(**kwargs):
        raise err

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(CourseInputError) as info:
        load_model("geneformer-v1", device="cpu", revision="e534f69270b8875bbbfa2fbe337b5a0a069dcd13")
    msg = str(info.value)
    for part in expected:
        assert part in msg, (part, msg)
    assert "git lfs" in msg  # the local-copy alternative


def test_offline_mode_and_no_network(monkeypatch):
    import huggingface_hub

    def no_network(**kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CourseInputError, match=r"offline mode is on \(HF_HUB_OFFLINE=1"):
        GeneVocab.geneformer_v2()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(CourseInputError, match="you appear to be offline.*Failed to resolve"):
        GeneVocab.geneformer_v2()


def test_file_missing_at_an_older_revision(monkeypatch, tmp_path, hub_folder):
    """Before 2025-06-18 the model folders had other names: the snapshot lacks them."""
    old = tmp_path / "old_layout"
    shutil.copytree(hub_folder / "geneformer", old / "geneformer")
    monkeypatch.setattr(hub_mod, "_download_hub_snapshot", lambda r, rev, pats: old)
    with pytest.raises(CourseInputError) as err:
        load_model("geneformer-v2-104m", device="cpu", revision="abc123")
    msg = str(err.value)
    assert "Geneformer-V2-104M/config.json" in msg and "at revision abc123" in msg
    assert "layout is different there" in msg
