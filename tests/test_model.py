"""Tests for course_helpers.model: loading (names, Hub layout, local folders), consistency checks,
attention implementation, devices and the batching / hidden-state helpers."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers import model as cm
from course_helpers._utils import CourseInputError
from course_helpers.model import (
    forward_memory_bytes,
    hidden_states,
    length_sorted_batches,
    load_model,
    pad_batch,
    pick_device,
    resolve_layer,
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
    folder = Path(cm.__file__).parent / "assets" / "teaching_model"
    if not (folder / "config.json").is_file():
        with pytest.raises(CourseInputError, match="not yet available"):
            load_model("teaching", device="cpu")
        return
    m = load_model("teaching", device="cpu")
    assert m.model_version == "teaching"
    assert len(m.gene_vocab) == m.config.vocab_size
    assert not m.training


# ----------------------------------------------------------------------------------------------
# devices
# ----------------------------------------------------------------------------------------------
def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in {"cuda", "mps", "cpu"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    with pytest.raises(CourseInputError, match="cuda"):
        pick_device("cuda")
    with pytest.raises(CourseInputError, match="mps"):
        pick_device("mps")
    with pytest.raises(CourseInputError):
        pick_device("not-a-device")
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: True)
        assert pick_device().type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"  # cuda beats mps


# ----------------------------------------------------------------------------------------------
# batching helpers
# ----------------------------------------------------------------------------------------------
def test_pad_batch():
    ids, mask = pad_batch([[5, 6, 7], np.array([8]), torch.tensor([9, 10])], pad_token_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    ids, _ = pad_batch([[1], [2, 3]], pad_token_id=7, device="cpu")
    assert ids.tolist() == [[1, 7], [2, 3]]
    with pytest.raises(CourseInputError):
        pad_batch([], 0)


def test_length_sorted_batches():
    batches = length_sorted_batches([3, 10, 5, 10, 1], 2)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0], [4]]
    flat = np.concatenate(length_sorted_batches(np.arange(37) % 7, 5))
    assert sorted(flat.tolist()) == list(range(37))
    with pytest.raises(CourseInputError):
        length_sorted_batches([1, 2], 0)


def test_layer_semantics(fixture_model):
    m = fixture_model
    assert resolve_layer(m, -1) == 5  # reference: 6 + (-1) = hidden_states[5]
    assert resolve_layer(m, 0) == 6
    assert resolve_layer(m, -6) == 0
    for bad in (1, -7, "x"):
        with pytest.raises(CourseInputError):
            resolve_layer(m, bad)
    ids, mask = pad_batch([[5, 6, 7, 8, 9], [10, 11, 12]], 0)
    with torch.inference_mode():
        ref = m.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        h_m1 = hidden_states(m, ids, mask, layer=-1)
        h_0 = hidden_states(m, ids, mask, layer=0)
        h_m3 = hidden_states(m, ids, mask, layer=-3)
    assert len(ref) == 7
    assert torch.equal(h_m1, ref[5])
    assert torch.equal(h_0, ref[6])
    assert torch.equal(h_m3, ref[3])
    assert not torch.allclose(h_m1, h_0)
    with torch.inference_mode():
        assert torch.equal(hidden_states(m, ids, mask, layer=-6), ref[0])  # embeddings output


def test_hidden_states_stops_after_the_requested_layer(fixture_model):
    m = fixture_model
    n_hooks = [len(layer._forward_hooks) for layer in m.bert.encoder.layer]
    calls = []
    handles = [layer.register_forward_hook(lambda mod, i, o, k=k: calls.append(k))
               for k, layer in enumerate(m.bert.encoder.layer)]
    ids, mask = pad_batch([[5, 6, 7, 8, 9], [10, 11, 12]], 0)
    try:
        with torch.inference_mode():
            hidden_states(m, ids, mask, layer=-1)
            assert calls == [0, 1, 2, 3, 4]          # the last of 6 layers never ran
            calls.clear()
            hidden_states(m, ids, mask, layer=-4)
            assert calls == [0, 1]
            calls.clear()
            hidden_states(m, ids, mask, layer=0)
            assert calls == [0, 1, 2, 3, 4, 5]
    finally:
        for h in handles:
            h.remove()
    # the stopping hook is removed again: a plain forward pass runs every layer
    calls.clear()
    handles = [layer.register_forward_hook(lambda mod, i, o, k=k: calls.append(k))
               for k, layer in enumerate(m.bert.encoder.layer)]
    try:
        with torch.inference_mode():
            m.bert(input_ids=ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    assert calls == [0, 1, 2, 3, 4, 5]
    assert [len(layer._forward_hooks) for layer in m.bert.encoder.layer] == n_hooks


def test_forward_memory_bytes(fixture_model):
    small = forward_memory_bytes(fixture_model, 4, 256)
    big = forward_memory_bytes(fixture_model, 4, 256, output_attentions=True)
    assert 0 < small < big
    # attention maps dominate: layers x heads x L^2 x 4 bytes per cell
    assert big - small == 6 * 4 * 4 * 256 * 256 * 4


def test_masked_gene_accuracy_perfect_and_baseline():
    """A model whose logits always favour the true gene scores 1; the baseline is computed exactly."""
    import datasets
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from course_helpers.model import masked_gene_accuracy

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=12, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32,
                                       max_position_embeddings=16)).eval()
    # every cell is the same sentence, so the position baseline is always right
    ds = datasets.Dataset.from_dict({"input_ids": [[5, 6, 7, 8, 9, 10]] * 8, "length": [6] * 8})
    res = masked_gene_accuracy(model, ds, n_cells=8, k=3, seed=1)
    assert res.loc["position baseline", "top1"] == 1.0
    assert res.loc["position baseline", "top3"] == 1.0
    assert res.loc["model", "n_masked"] == 8  # 15 % of 6 genes rounds to 1 per cell
    assert 0.0 <= res.loc["model", "top1"] <= res.loc["model", "top3"] <= 1.0


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
