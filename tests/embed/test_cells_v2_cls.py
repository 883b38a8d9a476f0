"""V2 defaults as the reference: <cls> embeddings, and emb_mode in in-silico perturbation.

A tiny V2-shaped model (vocabulary with <pad>, <mask>, <cls>, <eos>; cells wrapped in
<cls> ... <eos>) is checked against brute-force forward passes. Also: a fine-tuned classifier
(BertForSequenceClassification) gives exactly the results of a masked-LM with the same encoder.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from course_helpers._utils import CourseInputError
from course_helpers.embed import embed_cells, state_embeddings
from course_helpers.model import load_model
from course_helpers.perturb import GeneEffects, in_silico_perturb, perturb_pairs

TOL = 1e-5
N_LAYERS = 3


def _vocab_tsv(folder, v2=True):
    specials = ["<pad>", "<mask>", "<cls>", "<eos>"] if v2 else ["<pad>", "<mask>"]
    rows = ["ensembl_id\ttoken_id\tgene_median\tgene_symbols"]
    rows += [f"{t}\t{i}\t\t" for i, t in enumerate(specials)]
    rows += [f"ENSG{i:011d}\t{i}\t{1.0 + i / 10}\tGENE{i}" for i in range(len(specials), 40)]
    (folder / "vocab.tsv").write_text("\n".join(rows) + "\n")


def _save(folder, arch="BertForMaskedLM", seed=1, v2=True):
    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=N_LAYERS, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=24, pad_token_id=0, hidden_act="relu",
        num_labels=3,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, arch)(cfg)
    model.save_pretrained(folder)
    _vocab_tsv(folder, v2)
    return model


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    d = tmp_path_factory.mktemp("v2")
    _save(d)
    m = load_model(d, device="cpu")
    assert m.model_version == "V2" and m.gene_vocab.cls_token_id == 2
    return m


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(0)
    out = []
    for n in (9, 12, 7, 12):
        genes = rng.choice(np.arange(4, 40), size=n, replace=False).tolist()
        out.append([2, *genes, 3])
    return {"input_ids": out, "cell_id": ["a", "b", "c", "d"],
            "state": ["sick", "healthy", "sick", "healthy"]}


def _h(model, ids):
    """Layer -1 (second-to-last) hidden states of one cell, float64."""
    with torch.inference_mode():
        out = model.bert(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[N_LAYERS - 1][0].double().numpy()


def _cos(a, b):
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_embed_cells_defaults_to_cls_for_v2(v2, cells):
    emb = embed_cells(v2, cells, progress=False)
    for i, ids in enumerate(cells["input_ids"]):
        np.testing.assert_allclose(emb[i], _h(v2, ids)[0], atol=TOL)
    mean = embed_cells(v2, cells, progress=False, cls=False)
    np.testing.assert_allclose(mean[0], _h(v2, cells["input_ids"][0])[1:-1].mean(0), atol=TOL)
    st = state_embeddings(v2, cells, "state", progress=False)
    np.testing.assert_allclose(st["sick"], emb[[0, 2]].mean(0), atol=TOL)


def test_default_emb_mode_for_v2_is_cls(v2, cells):
    x = cells["input_ids"][0]
    res = in_silico_perturb(v2, cells, "delete", cells=[0], progress=False)
    assert res.attrs["emb_mode"] == "cls"
    assert list(res["rank_index"]) == list(range(1, len(x) - 1))  # genes only
    h0 = _h(v2, x)[0]
    for _, row in res.iterrows():
        i = int(row["rank_index"])
        want = _cos(_h(v2, x[:i] + x[i + 1:])[0], h0)
        assert abs(row["cos_sim"] - want) <= TOL
    explicit = in_silico_perturb(v2, cells, "delete", cells=[0], progress=False, emb_mode="cls")
    np.testing.assert_array_equal(explicit["cos_sim"], res["cos_sim"])
    cell = in_silico_perturb(v2, cells, "delete", cells=[0], progress=False, emb_mode="cell")
    assert not np.allclose(cell["cos_sim"], res["cos_sim"])


def test_cls_overexpress_and_states(v2, cells):
    states = {"state_key": "state", "start_state": "sick", "goal_state": "healthy"}
    res = in_silico_perturb(v2, cells, "overexpress", genes=[5, 6], cell_states=states,
                            progress=False)
    # state embeddings: mean <cls> embedding of each state's cells (the reference with V2)
    st = {s: np.mean([_h(v2, x)[0] for x, c in zip(cells["input_ids"], cells["state"]) if c == s],
                     axis=0) for s in ("sick", "healthy")}
    for _, row in res.iterrows():
        x = cells["input_ids"][["a", "b", "c", "d"].index(row["cell_id"])]
        g = int(row["perturbed_token"])
        if g in x:
            pert = [2, g] + [t for t in x[1:] if t != g]
        else:  # inserted after <cls>
            pert = [2, g] + x[1:]
        pc, oc = _h(v2, pert)[0], _h(v2, x)[0]
        want = _cos(pc, st[row["state"]]) - _cos(oc, st[row["state"]])
        assert abs(row["shift"] - want) <= TOL
    assert set(res["cell_id"]) == {"a", "c"}


def test_cls_and_gene(v2, cells):
    long = in_silico_perturb(v2, cells, "delete", genes=cells["input_ids"][1][3:5], cells=[1],
                             emb_mode="cls_and_gene", progress=False)
    assert isinstance(long, GeneEffects)
    cls_rows = in_silico_perturb(v2, cells, "delete", genes=cells["input_ids"][1][3:5],
                                 cells=[1], emb_mode="cls", progress=False)
    np.testing.assert_array_equal(long.cell_results["cos_sim"], cls_rows["cos_sim"])
    genes = in_silico_perturb(v2, cells, "delete", genes=cells["input_ids"][1][3:5], cells=[1],
                              emb_mode="cell_and_gene", progress=False)
    np.testing.assert_array_equal(long["cos_sim"], genes["cos_sim"])
    assert list(long["affected_token"]) == list(genes["affected_token"])


def test_cls_mode_needs_cls_cells_and_v1_falls_back(v2, cells, tmp_path):
    with pytest.raises(CourseInputError, match="start with <cls> and end with <eos>"):
        in_silico_perturb(v2, {"input_ids": [[5, 6, 7, 3]]}, "delete", progress=False)
    states = {"state_key": "state", "start_state": "sick", "goal_state": "healthy"}
    with pytest.raises(CourseInputError, match="context_only=True .* needs emb_mode='cell'"):
        in_silico_perturb(v2, cells, "delete", cell_states=states, context_only=True,
                          progress=False)
    with pytest.raises(CourseInputError, match="emb_mode='cell' or 'cls'"):
        perturb_pairs(v2, cells, [(cells["input_ids"][0][1], cells["input_ids"][0][2])],
                      emb_mode="cls_and_gene", progress=False)
    with pytest.raises(CourseInputError, match="emb_mode='mean' is not supported"):
        in_silico_perturb(v2, cells, "delete", emb_mode="mean", progress=False)
    # V1: no <cls>; "cls" becomes "cell" with a warning, as the reference does
    d = tmp_path / "v1"
    d.mkdir()
    _save(d, v2=False)
    v1 = load_model(d, device="cpu")
    v1_cells = {"input_ids": [x[1:-1] for x in cells["input_ids"]]}
    with pytest.warns(UserWarning, match="using emb_mode='cell'"):
        a = in_silico_perturb(v1, v1_cells, "delete", cells=[0], emb_mode="cls", progress=False)
    b = in_silico_perturb(v1, v1_cells, "delete", cells=[0], progress=False)
    assert b.attrs["emb_mode"] == "cell"
    np.testing.assert_array_equal(a["cos_sim"], b["cos_sim"])
    np.testing.assert_allclose(embed_cells(v1, v1_cells, progress=False)[0],
                               _h(v1, v1_cells["input_ids"][0]).mean(0), atol=TOL)


def test_perturb_pairs_with_cls(v2, cells):
    x = cells["input_ids"][1]
    a, b = x[2], x[5]
    res = perturb_pairs(v2, cells, [(a, b)], cells=[1], progress=False)
    h0 = _h(v2, x)[0]
    want_ab = _cos(_h(v2, [t for t in x if t not in (a, b)])[0], h0)
    assert abs(res["cos_sim_ab"].iloc[0] - want_ab) <= TOL


# ----------------------------------------------------------------------------------------------
# a fine-tuned classifier is used exactly like a masked-LM (contract with finetune.py)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v2_shape", [True, False])
def test_classifier_gives_the_results_of_a_masked_lm_with_the_same_encoder(tmp_path, cells,
                                                                           v2_shape):
    mlm_dir, clf_dir = tmp_path / "mlm", tmp_path / "clf"
    mlm_dir.mkdir()
    clf_dir.mkdir()
    mlm = _save(mlm_dir, v2=v2_shape)
    clf = _save(clf_dir, arch="BertForSequenceClassification", seed=7, v2=v2_shape)
    missing, unexpected = clf.bert.load_state_dict(mlm.bert.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("pooler.") for k in missing)
    clf.save_pretrained(clf_dir)
    a = load_model(mlm_dir, device="cpu")
    b = load_model(clf_dir, device="cpu")
    assert type(b).__name__ == "BertForSequenceClassification" and not b.training
    assert b.gene_vocab == a.gene_vocab and b.model_version == a.model_version
    data = cells if v2_shape else {**cells, "input_ids": [x[1:-1] for x in cells["input_ids"]]}
    states = {"state_key": "state", "start_state": "sick", "goal_state": "healthy"}
    for kwargs in ({"perturb_type": "delete"},
                   {"perturb_type": "overexpress", "genes": [5, 9]},
                   {"perturb_type": "delete", "cell_states": states}):
        ra = in_silico_perturb(a, data, progress=False, **kwargs)
        rb = in_silico_perturb(b, data, progress=False, **kwargs)
        col = "shift" if "cell_states" in kwargs else "cos_sim"
        assert len(ra) > 0
        np.testing.assert_allclose(rb[col].to_numpy(), ra[col].to_numpy(), rtol=0, atol=1e-12)
        assert list(rb["perturbed_token"]) == list(ra["perturbed_token"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(embed_cells(b, data, progress=False),
                                      embed_cells(a, data, progress=False))
