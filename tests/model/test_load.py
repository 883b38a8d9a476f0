"""Tests for course_helpers.model.load / folder / specs: loading (names, Hub layout, local folders),
consistency checks and the attention implementation."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers import model as cm
from course_helpers._utils import CourseInputError
from course_helpers.model import (
    load_model,
)
from course_helpers.vocab import hub as hub_mod

V1_PKLS = {
    "token_dictionary_gc30M.pkl",
    "gene_median_dictionary_gc30M.pkl",
    "gene_name_id_dict_gc30M.pkl",
}


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_model(fixture_model_dir):
    return load_model(fixture_model_dir, device="cpu")


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory, v1_dir) -> Path:
    """A folder laid out like the Hub repo: a random-init V1-config model + V1 dictionaries."""
    root = tmp_path_factory.mktemp("hub_repo")
    cfg = transformers.BertConfig(
        vocab_size=25426, hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
        intermediate_size=512, hidden_act="relu", max_position_embeddings=2048,
        hidden_dropout_prob=0.02, attention_probs_dropout_prob=0.02, pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(cfg).save_pretrained(root / "Geneformer-V1-10M")
    dict_dir = root / "geneformer" / "gene_dictionaries_30m"
    dict_dir.mkdir(parents=True)
    for name in V1_PKLS:
        shutil.copy(v1_dir / name, dict_dir / name)
    return root


def _tiny_model_dir(path: Path, vocab_size: int, vocab_tsv: Path | None) -> Path:
    cfg = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=64, pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(cfg).save_pretrained(path)
    if vocab_tsv is not None:
        shutil.copy(vocab_tsv, path / "vocab.tsv")
    return path


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
def test_load_local_folder(fixture_model):
    m = fixture_model
    assert isinstance(m, transformers.BertForMaskedLM)
    assert not m.training
    assert m.device.type == "cpu"
    assert m.dtype == torch.float32
    assert m.model_version == "V1"
    assert len(m.gene_vocab) == m.config.vocab_size == 25426
    assert m.gene_vocab.pad_token_id == 0
    # the fast default attention when attentions are not requested
    assert m.config._attn_implementation == "sdpa"


def test_output_attentions_uses_eager(fixture_model_dir):
    m = load_model(fixture_model_dir, output_attentions=True, device="cpu")
    assert m.config._attn_implementation == "eager"
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        out = m(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.attentions is not None
    assert len(out.attentions) == 6
    assert tuple(out.attentions[0].shape) == (1, 4, 4, 4)
    # rows are probability distributions over keys
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(1, 4, 4), atol=1e-5)


def test_hub_name_uses_pinned_download_and_hub_layout(hub_root, monkeypatch):
    calls = []

    def fake_download(repo_id, revision, allow_patterns):
        calls.append((repo_id, revision, list(allow_patterns)))
        return hub_root

    monkeypatch.setattr(hub_mod, "_download_hub_snapshot", fake_download)
    m = load_model("geneformer-v1", device="cpu")
    assert calls and calls[0][0] == "ctheodoris/Geneformer"
    assert calls[0][1] == cm.HUB_REVISION
    patterns = calls[0][2]
    assert any(p.startswith("Geneformer-V1-10M/") for p in patterns)
    assert "geneformer/gene_dictionaries_30m/token_dictionary_gc30M.pkl" in patterns
    assert m.model_version == "V1"
    assert (m.config.num_hidden_layers, m.config.num_attention_heads, m.config.hidden_size) == (
        6, 4, 256)
    assert len(m.gene_vocab) == 25426
    assert m.gene_vocab.version == "V1"
    # aliases and an explicit revision go through the same path
    load_model("Geneformer-V1-10M", device="cpu", revision="main")
    assert calls[-1][1] == "main"


def test_replacing_vocab_hub_download_reaches_load_model(hub_root, monkeypatch):
    """Chapter 5 stands in for the network with mock.patch("course_helpers.vocab.hub_download")."""
    from unittest import mock

    monkeypatch.delenv("GENEFORMER_V1_DIR", raising=False)
    with mock.patch("course_helpers.vocab.hub_download", return_value=hub_root) as fake:
        m = load_model("geneformer-v1", device="cpu")
    assert fake.call_count == 1
    assert "Geneformer-V1-10M/config.json" in fake.call_args.args[0]
    assert m.model_version == "V1" and len(m.gene_vocab) == 25426


def test_local_copy_of_hub_layout(hub_root):
    # the model folder of a cloned repo: dictionaries are found beside it
    m = load_model(hub_root / "Geneformer-V1-10M", device="cpu")
    assert m.model_version == "V1" and len(m.gene_vocab) == 25426
    # the repository root itself is not a model folder: the message names the subfolder
    with pytest.raises(CourseInputError, match="Geneformer-V1-10M"):
        load_model(hub_root, device="cpu")


def test_offline_hub_name_gives_clear_message(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")

    def offline(*args, **kwargs):
        raise hub.errors.LocalEntryNotFoundError("Cannot reach the Hub (no internet)")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(CourseInputError) as err:
        load_model("geneformer-v2-104m", device="cpu")
    msg = str(err.value)
    assert "offline" in msg
    assert "load_model('teaching')" in msg
    assert "Geneformer-V2-104M" in msg


def test_v1_vocab_with_v2_sized_model(tmp_path, v1_dir):
    d = _tiny_model_dir(tmp_path / "v2_sized", 20275, v1_dir / "vocab_gc30M.tsv")
    with pytest.raises(CourseInputError, match="mixing"):
        load_model(d, device="cpu")


def test_vocab_size_mismatch(tmp_path, v1_dir):
    d = _tiny_model_dir(tmp_path / "odd", 1000, v1_dir / "vocab_gc30M.tsv")
    with pytest.raises(CourseInputError, match="1000"):
        load_model(d, device="cpu")


def test_explicit_vocab_argument(tmp_path, v1_dir):
    d = _tiny_model_dir(tmp_path / "no_vocab", 25426, None)
    with pytest.raises(CourseInputError, match="vocab"):
        load_model(d, device="cpu")
    m = load_model(d, device="cpu", vocab=v1_dir / "vocab_gc30M.tsv")
    assert len(m.gene_vocab) == 25426


def test_unknown_name():
    with pytest.raises(CourseInputError, match="geneformer-v1"):
        load_model("geneformer-v7-9000", device="cpu")


def test_teaching_model():
    folder = Path(cm.__file__).parent.parent / "assets" / "teaching_model"
    if not (folder / "config.json").is_file():
        with pytest.raises(CourseInputError, match="not yet available"):
            load_model("teaching", device="cpu")
        return
    m = load_model("teaching", device="cpu")
    assert m.model_version == "teaching"
    assert len(m.gene_vocab) == m.config.vocab_size
    assert not m.training


def test_load_model_is_quiet_and_keeps_the_progress_bar_setting(capfd):
    """No transformers "Loading weights" bar in notebooks; the user's own setting survives."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    load_model("teaching")
    err = capfd.readouterr().err
    assert "Loading weights" not in err
    assert hf_logging.is_progress_bar_enabled()


def test_saved_model_version_is_kept(tmp_path, v1_dir):
    """A folder written by finetune.save_classifier records model_version in config.json."""
    import json

    d = _tiny_model_dir(tmp_path / "ft", 25426, v1_dir / "vocab_gc30M.tsv")
    cfg = json.loads((d / "config.json").read_text())
    for saved, expected in (("teaching", "teaching"), ("V1", "V1"), ("V2", "V1"), (None, "V1")):
        cfg["course_helpers"] = {"model_version": saved}
        (d / "config.json").write_text(json.dumps(cfg))
        assert load_model(d, device="cpu").model_version == expected
