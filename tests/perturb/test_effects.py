"""Tests for course_helpers.perturb.in_silico_perturb against the reference perturbation fixture.

The three full reference runs (delete, overexpress, delete with goal states) are each computed
once per session (fixtures in tests/perturb/conftest.py); every other test uses a few genes of a
few cells so that the file stays fast on a busy 2-core machine.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")

from course_helpers._utils import CourseInputError
from course_helpers.perturb import in_silico_perturb

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _v2_copy(model):
    """A copy of ``model`` with a V2-style vocabulary (<cls> = 2, <eos> = 3), names = ids."""
    copy = transformers.BertForMaskedLM(model.config).eval()
    copy.load_state_dict(model.state_dict())
    copy.gene_vocab = SimpleNamespace(pad_token_id=0, mask_token_id=1, cls_token_id=2,
                                      eos_token_id=3, symbols=lambda ids: [str(i) for i in ids],
                                      resolve=lambda genes, argname="genes": [int(g) for g in genes])
    return copy


def _cos(a, b):
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _compare(expected, got, keys, col):
    m = expected.merge(got, on=keys, how="outer", suffixes=("_ref", "_new"), indicator=True)
    assert (m["_merge"] == "both").all(), m["_merge"].value_counts().to_dict()
    diff = np.abs(m[f"{col}_ref"] - m[f"{col}_new"]).max()
    assert diff <= TOL, diff


# --------------------------------------------------------------------------------------------
# fidelity to the reference
# --------------------------------------------------------------------------------------------
def test_delete_matches_reference(fx, delete_all):
    expected = pd.read_parquet(fx / "expected_delete_cell.parquet")
    assert len(delete_all) == len(expected) == 2719
    assert list(delete_all.columns) == ["cell_id", "rank_index", "perturbed_token", "cos_sim"]
    _compare(expected, delete_all, ["cell_id", "rank_index", "perturbed_token"], "cos_sim")
    # rows come in dataset order of cells, then rank
    assert list(dict.fromkeys(delete_all["cell_id"])) == list(dict.fromkeys(expected["cell_id"]))


def test_overexpress_matches_reference(fx, overexpress_all):
    expected = pd.read_parquet(fx / "expected_overexpress_cell.parquet")
    assert len(overexpress_all) == len(expected) == 2707
    assert (overexpress_all["rank_index"] > 0).all()  # the first gene is never "moved"
    _compare(expected, overexpress_all, ["cell_id", "rank_index", "perturbed_token"], "cos_sim")


def test_goal_state_matches_reference(fx, goal_all, states):
    expected = pd.read_parquet(fx / "expected_delete_goal_state.parquet")
    assert len(goal_all) == len(expected) == 2505
    assert set(goal_all["cell_id"]) == {"cell_0201", "cell_0358", "cell_0446", "cell_0553"}
    assert list(goal_all["state"][:3]) == [states["start_state"], states["goal_state"],
                                           *states["alt_states"]]
    _compare(expected, goal_all, ["cell_id", "rank_index", "perturbed_token", "state"], "shift")


def test_state_embeddings_computed_from_dataset_match_manual(plain_model, vocab_model, dataset,
                                                             cells, states, layer5):
    """state_embs=None computes the state means with embed.state_embeddings over the dataset."""
    from course_helpers.embed import state_embeddings

    genes = [int(t) for t in cells["input_ids"][0][:3]]
    got = in_silico_perturb(vocab_model, dataset, "delete", genes=genes, cell_states=states,
                            cells=["cell_0201"], progress=False)
    embs = state_embeddings(vocab_model, dataset, "cell_type", states, progress=False)
    again = in_silico_perturb(plain_model, dataset, "delete", genes=genes, cell_states=states,
                              cells=["cell_0201"], state_embs=embs, progress=False)
    np.testing.assert_allclose(got["shift"], again["shift"], atol=TOL, rtol=0)
    # independent recomputation of the shift formula for the first gene
    means = {}
    for s in [states["start_state"], states["goal_state"], *states["alt_states"]]:
        ids = cells.loc[cells["cell_type"] == s, "input_ids"]
        means[s] = np.mean([layer5(plain_model, x).mean(0) for x in ids], axis=0)
    x = cells["input_ids"][0]
    c0 = layer5(plain_model, x).mean(0)
    c1 = layer5(plain_model, x[1:]).mean(0)
    row = got[got["rank_index"] == 0].set_index("state")["shift"]
    for s, e in means.items():
        assert abs(row[s] - (_cos(c1, e) - _cos(c0, e))) <= TOL


@pytest.fixture(scope="module")
def pbmc700(v1_dir):
    """All 700 pbmc68k_reduced cells, tokenized as for the fixture (raw counts recovered)."""
    sc = pytest.importorskip("scanpy")
    import anndata as ad
    import scipy.sparse as sp

    from course_helpers.tokenize import tokenize
    from course_helpers.vocab import GeneVocab

    try:
        a = sc.datasets.pbmc68k_reduced()
    except (OSError, ImportError) as err:  # pragma: no cover - scanpy without its data
        pytest.skip(f"scanpy's pbmc68k_reduced is unavailable: {err}")
    raw = a.raw.to_adata()
    x = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    counts = np.round(np.expm1(x) * a.obs["n_counts"].to_numpy()[:, None] / 1e4)
    b = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=a.obs.copy(),
                   var=pd.DataFrame(index=raw.var_names))
    b.obs["cell_id"] = [f"cell_{i:04d}" for i in range(b.n_obs)]
    b.obs["cell_type"] = b.obs["bulk_labels"].astype(str)
    vocab = GeneVocab.geneformer_v1(v1_dir)
    with pytest.warns(UserWarning):  # some symbols have no Ensembl ID
        return tokenize(b, vocab, cell_attrs=["cell_id", "cell_type"], gene_id_col=None,
                        map_symbols=True, progress=False)


def test_goal_state_from_dataset_end_to_end(fx, vocab_model, pbmc700, cells, state_embs, states):
    """state_embs=None: state embeddings from all 700 cells, as the reference computed them."""
    ids = dict(zip(pbmc700["cell_id"], pbmc700["input_ids"]))
    assert all(list(ids[c]) == x for c, x in zip(cells["cell_id"], cells["input_ids"]))
    x = cells["input_ids"][0]
    got = in_silico_perturb(vocab_model, pbmc700, "delete", genes=[x[0], x[50], x[-1]],
                            cell_states=states, cells=["cell_0201"], progress=False)
    expected = pd.read_parquet(fx / "expected_delete_goal_state.parquet")
    expected = expected[(expected["cell_id"] == "cell_0201")
                        & expected["rank_index"].isin([0, 50, len(x) - 1])]
    assert len(got) == len(expected) == 9
    _compare(expected, got, ["cell_id", "rank_index", "perturbed_token", "state"], "shift")
    from course_helpers.embed import state_embeddings

    embs = state_embeddings(vocab_model, pbmc700, "cell_type", states, progress=False)
    for s, v in zip(state_embs["state"], state_embs["vector"]):
        assert np.abs(embs[s] - np.asarray(v)).max() <= TOL


# --------------------------------------------------------------------------------------------
# semantics beyond the fixture
# --------------------------------------------------------------------------------------------
def test_gene_list_equals_all_mode_rows(plain_model, dataset, cells, delete_all):
    x = cells["input_ids"][3]
    genes = [x[0], x[17], x[-1]]
    got = in_silico_perturb(plain_model, dataset, "delete", genes=genes, cells=[0, 3, 5],
                            progress=False)
    ref = delete_all[delete_all["perturbed_token"].isin(genes)
                     & delete_all["cell_id"].isin(cells["cell_id"][[0, 3, 5]])]
    _compare(ref, got, ["cell_id", "rank_index", "perturbed_token"], "cos_sim")


def test_symbols_and_names_with_vocabulary(vocab_model, dataset, cells):
    vocab = vocab_model.gene_vocab
    x = cells["input_ids"][0]
    sym = vocab.symbols([x[5]])[0]
    ens = vocab.id_to_token[x[6]]
    got = in_silico_perturb(vocab_model, dataset, "delete", genes=[sym, ens, x[7]],
                            cells=["cell_0201"], progress=False)
    assert list(got["perturbed_token"]) == [x[5], x[6], x[7]]
    assert got["perturbed_gene"].iloc[0] == sym
    assert list(got["rank_index"]) == [5, 6, 7]


def test_overexpress_absent_gene_inserted_at_front(plain_model, cells, layer5, cos_rows):
    x = cells["input_ids"][2]
    g = next(t for t in range(100, 25000) if t not in set(x))
    got = in_silico_perturb(plain_model, {"input_ids": [x]}, "overexpress", genes=[g],
                            progress=False)
    assert len(got) == 1 and got["rank_index"].iloc[0] == -1
    h = layer5(plain_model, x)
    p = layer5(plain_model, [g] + x)
    assert abs(got["cos_sim"].iloc[0] - cos_rows(p[1:], h).mean()) <= TOL


@pytest.fixture(scope="module")
def tiny_model():
    """A 2-layer random BERT that accepts only 40 tokens (to exercise truncation cheaply)."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=40, pad_token_id=0)
    return transformers.BertForMaskedLM(cfg).eval()


def _hidden(model, ids, index):
    t = torch.tensor([list(map(int, ids))])
    with torch.inference_mode():
        return model.bert(input_ids=t, output_hidden_states=True).hidden_states[index][0] \
            .double().numpy()


def test_overexpress_absent_gene_truncates_full_cell(tiny_model, cos_rows):
    x = list(range(10, 50))  # 40 tokens: a full cell
    got = in_silico_perturb(tiny_model, {"input_ids": [x]}, "overexpress", genes=[7],
                            progress=False)
    # the perturbed cell is cut back to 40 tokens and compared with the original cut to match
    h = _hidden(tiny_model, x[:39], 1)
    p = _hidden(tiny_model, [7] + x[:39], 1)
    assert abs(got["cos_sim"].iloc[0] - cos_rows(p[1:], h).mean()) <= TOL


def test_v2_truncation_keeps_eos(tiny_model):
    model = _v2_copy(tiny_model)
    genes = list(range(10, 48))
    x = [2] + genes + [3]  # 40 tokens
    states = {"state_key": "s", "start_state": "a", "goal_state": "b"}
    e = {"a": np.linspace(-1, 1, 32), "b": np.cos(np.arange(32.0))}
    got = in_silico_perturb(model, {"input_ids": [x], "s": ["a"]}, "overexpress", genes=[7],
                            cell_states=states, state_embs=e, progress=False, emb_mode="cell")
    base = [2] + genes[:37] + [3]
    pert = [2, 7] + genes[:37] + [3]
    h, p = _hidden(model, base, 1), _hidden(model, pert, 1)
    c0, c1 = h[1:-1].mean(0), p[1:-1].mean(0)  # cell embedding: mean over genes
    for s, v in e.items():
        want = _cos(c1, v) - _cos(c0, v)
        assert abs(got.set_index("state").loc[s, "shift"] - want) <= TOL


def test_anchor_combos_delete_both(plain_model, dataset, cells, layer5, cos_rows):
    x = cells["input_ids"][4]
    anchor = x[10]
    got = in_silico_perturb(plain_model, dataset, "delete", combos=1, anchor_gene=anchor,
                            cells=[4], genes=[x[3], x[40]], progress=False)
    assert list(got["perturbed_token"]) == [x[3], x[40]]
    assert (got["anchor_token"] == anchor).all()
    h = layer5(plain_model, x)
    keep = [i for i in range(len(x)) if i not in (10, 40)]
    p = layer5(plain_model, [x[i] for i in keep])
    assert abs(got["cos_sim"].iloc[1] - cos_rows(p, h[keep]).mean()) <= TOL


def test_cell_and_gene_mode(plain_model, dataset, cells, layer5, cos_rows):
    x = cells["input_ids"][1]
    long = in_silico_perturb(plain_model, dataset, "overexpress", genes=[x[4], x[30]],
                             cells=[1], emb_mode="cell_and_gene", progress=False)
    cell = long.cell_results
    assert len(long) == 2 * (len(x) - 1)
    # the per-cell table travels with filtering, does not break concat or printing
    sub = long[long["perturbed_token"] == x[4]]
    assert sub.cell_results is cell
    assert len(pd.concat([sub, sub])) == 2 * len(sub)
    assert "cos_sim" in repr(long) and not long.attrs
    for tok, sub in long.groupby("perturbed_token"):
        assert tok not in set(sub["affected_token"])  # the perturbed gene is left out
        assert list(sub["affected_token"]) == [t for t in x if t != tok]  # labelled by identity
        expected = cell.set_index("perturbed_token").loc[tok, "cos_sim"]
        assert abs(sub["cos_sim"].mean() - expected) <= 1e-12
    h = layer5(plain_model, x)
    p = layer5(plain_model, [x[30]] + x[:30] + x[31:])
    want = cos_rows(p[1:], np.delete(h, 30, axis=0))
    got = long[long["perturbed_token"] == x[30]]["cos_sim"].to_numpy()
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def test_v2_special_tokens_stay_in_place(plain_model, layer5, cos_rows):
    """With <cls>/<eos> (V2 models) only genes are perturbed and compared."""
    model = _v2_copy(plain_model)
    genes = list(range(100, 130))
    x = [2] + genes + [3]
    dele = in_silico_perturb(model, {"input_ids": [x]}, "delete", progress=False,
                             emb_mode="cell")
    assert list(dele["rank_index"]) == list(range(1, 31))
    over = in_silico_perturb(model, {"input_ids": [x]}, "overexpress", progress=False,
                             emb_mode="cell")
    assert list(over["rank_index"]) == list(range(2, 31))  # the first gene (after <cls>) stays
    h = layer5(model, x)
    p = layer5(model, [2, x[5]] + x[1:5] + x[6:])  # gene at position 5 moved after <cls>
    keep = [i for i in range(1, 31) if i != 5]
    want = cos_rows(p[2:-1], h[keep]).mean()
    assert abs(over.set_index("rank_index").loc[5, "cos_sim"] - want) <= TOL


def test_model_is_left_unchanged(fx, cells):
    """Perturbing must not alter the model (e.g. transformers' lazily installed output hooks)."""
    fresh = transformers.BertForMaskedLM.from_pretrained(str(fx / "model")).eval()
    ref = transformers.BertForMaskedLM.from_pretrained(str(fx / "model")).eval()
    x = cells["input_ids"][0]
    in_silico_perturb(fresh, {"input_ids": [x]}, "delete", genes=x[:2], progress=False)
    t = torch.tensor([x])
    with torch.inference_mode():
        a = fresh.bert(input_ids=t, output_hidden_states=True).hidden_states
        b = ref.bert(input_ids=t, output_hidden_states=True).hidden_states
    assert len(a) == len(b) == 7
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not fresh.training


# --------------------------------------------------------------------------------------------
# determinism and batching
# --------------------------------------------------------------------------------------------
def _small_scan(model, dataset, cells, **kw):
    genes = sorted({t for i in (1, 4, 9) for t in cells["input_ids"][i][::25]})
    return in_silico_perturb(model, dataset, "delete", genes=genes, cells=[1, 4, 9],
                             progress=False, **kw)


def test_deterministic(plain_model, dataset, cells):
    a = _small_scan(plain_model, dataset, cells, batch_size=7)
    b = _small_scan(plain_model, dataset, cells, batch_size=7)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_batch_size_invariance(plain_model, dataset, cells):
    a = _small_scan(plain_model, dataset, cells, batch_size=3)
    b = _small_scan(plain_model, dataset, cells, batch_size=64)  # cells of different lengths mix
    pd.testing.assert_frame_equal(a.drop(columns="cos_sim"), b.drop(columns="cos_sim"))
    assert np.abs(a["cos_sim"] - b["cos_sim"]).max() <= TOL


@pytest.mark.filterwarnings("ignore:.*expressed in none")
def test_max_cells_is_seeded(plain_model, dataset, cells):
    genes = [cells["input_ids"][i][0] for i in range(12)]
    a = in_silico_perturb(plain_model, dataset, "delete", genes=genes, max_cells=3, seed=5,
                          progress=False)
    b = in_silico_perturb(plain_model, dataset, "delete", genes=genes, max_cells=3, seed=5,
                          progress=False)
    assert a["cell_id"].nunique() == 3
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_unknown_gene_suggests_close_match(vocab_model, dataset):
    with pytest.raises(CourseInputError, match=r"CD79AX.*did you mean.*'CD79A'"):
        in_silico_perturb(vocab_model, dataset, "delete", genes=["CD79AX"], progress=False)


def test_gene_name_without_vocabulary(plain_model, dataset):
    with pytest.raises(CourseInputError, match="no gene vocabulary"):
        in_silico_perturb(plain_model, dataset, "delete", genes=["CD79A"], progress=False)


def test_gene_absent_from_all_cells(plain_model, dataset, cells):
    absent = next(t for t in range(2, 25426)
                  if all(t not in set(x) for x in cells["input_ids"]))
    with pytest.raises(CourseInputError, match=r"None of the genes .* is expressed in the 12"):
        in_silico_perturb(plain_model, dataset, "delete", genes=[absent], progress=False)
    present = cells["input_ids"][0][0]
    with pytest.warns(UserWarning, match="expressed in none"):
        got = in_silico_perturb(plain_model, dataset, "delete", genes=[present, absent],
                                cells=[0], progress=False)
    assert list(got["perturbed_token"]) == [present]


def test_empty_or_unknown_cell_selection(plain_model, dataset):
    with pytest.raises(CourseInputError, match="cells= is empty"):
        in_silico_perturb(plain_model, dataset, cells=[], progress=False)
    with pytest.raises(CourseInputError, match=r"Cell id\(s\) \['cell_9999'\]"):
        in_silico_perturb(plain_model, dataset, cells=["cell_9999"], progress=False)


def test_missing_state_column_and_names(plain_model, dataset, state_embs, states):
    bad_key = dict(states, state_key="disease")
    with pytest.raises(CourseInputError, match=r"no such column.*cell_type"):
        in_silico_perturb(plain_model, dataset, cell_states=bad_key, state_embs=state_embs,
                          progress=False)
    bad_start = dict(states, start_state="Monocyte")
    with pytest.raises(CourseInputError, match="start state 'Monocyte' does not occur"):
        in_silico_perturb(plain_model, dataset, cell_states=bad_start, state_embs=state_embs,
                          progress=False)
    bad_goal = dict(states, goal_state="NK cell")
    with pytest.raises(CourseInputError, match=r"State\(s\) \['NK cell'\] do not occur"):
        in_silico_perturb(plain_model, dataset, cell_states=bad_goal, progress=False)
    with pytest.raises(CourseInputError, match=r"no embedding for state\(s\) \['NK cell'\]"):
        in_silico_perturb(plain_model, dataset, cell_states=bad_goal, state_embs=state_embs,
                          progress=False)
    with pytest.raises(CourseInputError, match="missing"):
        in_silico_perturb(plain_model, dataset, cell_states={"state_key": "cell_type"},
                          progress=False)


def test_bad_arguments(plain_model, dataset):
    with pytest.raises(CourseInputError, match="'delete' or 'overexpress'"):
        in_silico_perturb(plain_model, dataset, "mask", progress=False)
    with pytest.raises(CourseInputError, match="anchor_gene"):
        in_silico_perturb(plain_model, dataset, combos=1, progress=False)
    with pytest.raises(CourseInputError, match="out of range"):
        in_silico_perturb(plain_model, dataset, emb_layer=3, progress=False)
    with pytest.raises(CourseInputError, match="genes is empty"):
        in_silico_perturb(plain_model, dataset, genes=[], progress=False)
    with pytest.raises(CourseInputError, match="not gene tokens"):
        in_silico_perturb(plain_model, dataset, genes=[0], progress=False)


def test_context_only_compares_the_same_genes(plain_model, dataset, cells, state_embs, states, layer5):
    """context_only: original and perturbed cell embeddings are means over the same genes."""
    from course_helpers.perturb.selection import _state_embs_dict

    x = list(cells["input_ids"][0])
    cid = cells["cell_id"][0] if "cell_id" in cells else 0
    genes = [x[3], x[40]]
    ref = in_silico_perturb(plain_model, dataset, "delete", genes=genes, cell_states=states,
                            state_embs=state_embs, cells=[cid], progress=False)
    ctx = in_silico_perturb(plain_model, dataset, "delete", genes=genes, cell_states=states,
                            state_embs=state_embs, cells=[cid], context_only=True,
                            progress=False)
    assert list(ctx.columns) == list(ref.columns) and len(ctx) == len(ref)
    se = _state_embs_dict(state_embs)
    h = layer5(plain_model, x)
    for j, tok in ((3, x[3]), (40, x[40])):
        keep = [i for i in range(len(x)) if i != j]
        p = layer5(plain_model, [x[i] for i in keep])
        for st, vec in se.items():
            want_ctx = _cos(p.mean(0), vec) - _cos(h[keep].mean(0), vec)
            want_ref = _cos(p.mean(0), vec) - _cos(h.mean(0), vec)
            sel = (ctx["perturbed_token"] == tok) & (ctx["state"] == st)
            if not sel.any():
                continue
            assert ctx.loc[sel, "shift"].iloc[0] == pytest.approx(want_ctx, abs=TOL)
            sel_r = (ref["perturbed_token"] == tok) & (ref["state"] == st)
            assert ref.loc[sel_r, "shift"].iloc[0] == pytest.approx(want_ref, abs=TOL)
    assert not np.allclose(ctx["shift"], ref["shift"])
    with pytest.raises(CourseInputError, match="needs cell_states"):
        in_silico_perturb(plain_model, dataset, "delete", genes=genes, cells=[cid],
                          context_only=True, progress=False)
