"""Checks for chapter 6 (WGCNA and SCENIC compared with Geneformer).

Every check recomputes the expected answer itself (with the package's scorer and the planted
truth) from the inputs it is given, instead of trusting a number the learner computed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from ._common import _feedback, _missing, _safe_call


# --------------------------------------------------------------------------------------------
# exercise 1: early precision ratio
# --------------------------------------------------------------------------------------------
def reference_epr(pred: pd.DataFrame, truth: pd.DataFrame, tfs, genes) -> float:
    """Early precision ratio of ``pred`` (BEELINE), via :func:`course_helpers.networks.score_edges`.

    Candidates are every ``tf -> gene`` pair without self-loops; ``k`` = true edges among them;
    EPR = precision of the ``k`` best-scored candidates / edge density.

    Examples
    --------
    >>> truth = pd.DataFrame({"source": ["T", "T"], "target": ["a", "b"]})
    >>> pred = pd.DataFrame({"source": ["T", "T", "T"], "target": ["a", "c", "b"],
    ...                      "score": [0.9, 0.8, 0.7]})
    >>> reference_epr(pred, truth, ["T"], ["a", "b", "c", "d"])
    1.0
    """
    from ..networks import score_edges

    return float(score_edges(pred, truth, tfs=list(tfs), genes=list(genes))["epr"])


def _toy_problem(rng: np.random.Generator):
    """A small scoring problem: 4 TFs, 30 other genes, ~10 true edges, scores for 60 % of pairs."""
    tfs = [f"TF{i}" for i in range(4)]
    genes = tfs + [f"g{i}" for i in range(30)]
    cand = [(t, g) for t in tfs for g in genes if t != g]
    n_true = int(rng.integers(8, 14))
    true_idx = rng.choice(len(cand), n_true, replace=False)
    truth = pd.DataFrame([cand[i] for i in true_idx], columns=["source", "target"])
    n_pred = int(0.6 * len(cand))
    pred_idx = rng.choice(len(cand), n_pred, replace=False)
    score = rng.random(n_pred)
    is_true = np.isin(pred_idx, true_idx)
    score[is_true] += 0.4  # better than random, not perfect
    pred = pd.DataFrame([cand[i] for i in pred_idx], columns=["source", "target"])
    pred["score"] = score
    pred = pred.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    return pred, truth, tfs, genes


def check_epr(fn: Callable | None, seed: int = 0) -> bool:
    """Check ``fn(pred, truth, tfs, genes) -> float`` computes the early precision ratio.

    The function is run on five random scoring problems and compared with the package's scorer.
    """
    if _missing(fn, "write a function epr(pred, truth, tfs, genes) that returns a number."):
        return False
    if not callable(fn):
        print("Not quite. The answer should be a function, e.g. `def epr(pred, truth, tfs, genes):`.")
        return False
    rng = np.random.default_rng(seed)
    for trial in range(5):
        pred, truth, tfs, genes = _toy_problem(rng)
        expected = reference_epr(pred, truth, tfs, genes)
        got, err = _safe_call(fn, pred.copy(), truth.copy(), list(tfs), list(genes))
        if err:
            print(f"Not quite. Your function raised {err}")
            return False
        try:
            got = float(got)
        except (TypeError, ValueError):
            return _feedback(False, "", f"return a single number, got {type(got).__name__}.")
        if np.isclose(got, expected, rtol=1e-6, atol=1e-9):
            continue
        n_cand = len(tfs) * len(genes) - len(set(tfs) & set(genes))
        density = len(truth) / n_cand
        if np.isclose(got, expected * density, rtol=1e-6):
            return _feedback(False, "", "that is the early precision itself; divide it by the "
                             "edge density (true edges / candidate edges) to get the ratio.")
        dens_loops = len(truth) / (len(tfs) * len(genes))
        if np.isclose(got, expected * density / dens_loops, rtol=1e-6):
            return _feedback(False, "", "almost: self-loops (a TF to itself) are not candidates, "
                             "so leave them out when you count the candidate edges.")
        return _feedback(False, "", f"trial {trial}: expected {expected:.4f}, got {got:.4f}. Sort "
                         "by score, take the k best (k = number of true edges), compute their "
                         "precision, and divide by the edge density.")
    return _feedback(True, "your EPR matches the package's scorer on five random problems.", "")


# --------------------------------------------------------------------------------------------
# exercise 2: best method in one context
# --------------------------------------------------------------------------------------------
def reference_context_scores(networks: Mapping, genes, context: str = "macrophage",
                             metric: str = "auprc_ratio") -> pd.Series:
    """``metric`` of every network in ``networks`` for one cell type, against the planted truth.

    ``networks`` maps a method name to an edge table (a static network, scored against the edges
    active in ``context``) or to a dict ``cell type -> edge table`` (context-specific networks:
    the one built for ``context`` is scored). Candidates: every TF of the tissue to every gene
    in ``genes``.
    """
    from ..data import load_ground_truth
    from ..networks import score_by_context

    gt = load_ground_truth()
    out = {}
    for name, net in networks.items():
        res = score_by_context(net, gt.edges, contexts=[context], tfs=gt.tfs, genes=list(genes))
        out[name] = float(res.loc[context, metric])
    return pd.Series(out, name=f"{metric} ({context})").sort_values(ascending=False)


def check_best_method(answer, networks: Mapping, genes, context: str = "macrophage") -> bool:
    """Check the name of the network with the highest AUPRC ratio in ``context``.

    The scores are recomputed here from the networks and the planted truth.
    """
    if _missing(answer, f"put the name (a key of `networks`) of the best method in {context}s "
                        "in `answer`."):
        return False
    if not isinstance(networks, Mapping) or not networks:
        print("Not quite. Pass the dict of networks (method name -> edge table) as `networks`.")
        return False
    if str(answer) not in networks:
        return _feedback(False, "", f"{answer!r} is not one of the methods: {list(networks)}.")
    scores = reference_context_scores(networks, genes, context)
    best = scores.index[0]
    if str(answer) == best or np.isclose(scores[str(answer)], scores.iloc[0], rtol=1e-9):
        return _feedback(True, f"{best} has the highest AUPRC ratio in {context}s "
                         f"({scores.iloc[0]:.1f}x random).", "")
    rank = list(scores.index).index(str(answer)) + 1
    return _feedback(False, "", f"{answer} ranks {rank} of {len(scores)} in {context}s. Score "
                     "every network with score_by_context(..., contexts=[...]) and compare the "
                     "auprc_ratio column.")


# --------------------------------------------------------------------------------------------
# exercise 3: which WGCNA module is the cardiomyocyte programme
# --------------------------------------------------------------------------------------------
def _modules_series(modules) -> pd.Series:
    if hasattr(modules, "modules") and isinstance(modules.modules, pd.Series):
        modules = modules.modules  # a WGCNAResult
    if isinstance(modules, Mapping) and not isinstance(modules, pd.Series):
        vals = list(modules.values())
        if vals and all(isinstance(v, (list, tuple, set, np.ndarray, pd.Index)) for v in vals):
            modules = {g: m for m, gs in modules.items() for g in gs}
        modules = pd.Series(modules)
    if not isinstance(modules, pd.Series):
        raise TypeError("modules must be a WGCNAResult, a Series gene -> module or a dict")
    return modules.astype(str)


def reference_program_module(modules, program: str = "cardiomyocyte") -> pd.Series:
    """Jaccard index between each (non-grey) module and a true programme, best first.

    ``modules``: a :class:`~course_helpers.baselines.WGCNAResult`, a Series gene -> module or a
    dict module -> genes (Ensembl IDs). The programme's genes are those of
    ``load_ground_truth().programs[program]`` that are among the clustered genes.
    """
    from ..data import load_ground_truth

    mods = _modules_series(modules)
    mods = mods[mods != "grey"]
    prog = set(load_ground_truth().programs[program]) & set(mods.index)
    out = {}
    for m, genes in mods.groupby(mods).groups.items():
        genes = set(genes)
        out[m] = len(genes & prog) / len(genes | prog) if genes | prog else 0.0
    return pd.Series(out, name=f"Jaccard with {program} programme").sort_values(ascending=False)


def check_program_module(answer, modules, program: str = "cardiomyocyte") -> bool:
    """Check the WGCNA module (colour) that best matches a true programme (highest Jaccard)."""
    if _missing(answer, f"put the colour of the module that matches the {program} programme in "
                        "`answer`."):
        return False
    try:
        jac = reference_program_module(modules, program)
    except (TypeError, KeyError) as exc:
        print(f"Not quite. Pass the WGCNA result (or its .modules Series) as `modules` ({exc}).")
        return False
    if jac.empty:
        print("Not quite. The modules contain no non-grey module.")
        return False
    ans = str(answer).strip()
    ans = ans[2:] if ans.startswith("ME") and ans[2:] in jac.index else ans
    if ans not in jac.index:
        return _feedback(False, "", f"{answer!r} is not a module colour here; choose from "
                         f"{list(jac.index)}.")
    best = jac.index[0]
    if ans == best or np.isclose(jac[ans], jac.iloc[0]):
        return _feedback(True, f"module {best!r} overlaps the {program} programme best (Jaccard "
                         f"{jac.iloc[0]:.2f}).", "")
    return _feedback(False, "", f"module {ans!r} has Jaccard {jac[ans]:.2f} with the {program} "
                     f"programme; another module overlaps more. Count shared genes relative to "
                     "the union (a huge module contains many programme genes, but also many "
                     "others).")
