"""Checks for chapter 6 (WGCNA and SCENIC compared with Geneformer).

Every check recomputes the expected answer itself (with the package's scorer and the planted
truth) from the inputs it is given, instead of trusting a number the learner computed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from ._common import _feedback, _missing, _number_from


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
        got, problem = _number_from(fn, pred.copy(), truth.copy(), list(tfs), list(genes))
        if problem:
            print(problem)
            return False
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


# --------------------------------------------------------------------------------------------
# exercise: the over-representation p-value by hand
# --------------------------------------------------------------------------------------------
def reference_ora_pvalue(module, gene_set, universe) -> float:
    """One-sided over-representation p-value of ``gene_set`` in ``module`` (hypergeometric).

    Computed with :func:`course_helpers.networks.enrich` (gseapy) when gseapy is installed,
    else with ``scipy.stats.hypergeom`` (the same test): P(overlap >= observed) when
    ``len(module ∩ universe)`` genes are drawn from the universe, of which
    ``len(gene_set ∩ universe)`` belong to the set.

    Examples
    --------
    >>> u = [f"g{i}" for i in range(40)]
    >>> round(reference_ora_pvalue(["g0", "g1", "g2", "g5"], ["g0", "g1", "g2", "g3"], u), 5)
    0.00159
    """
    univ = {str(g) for g in universe}
    mod = [str(g) for g in dict.fromkeys(module) if str(g) in univ]
    gs = [str(g) for g in dict.fromkeys(gene_set) if str(g) in univ]
    try:
        from ..networks import enrich

        res = enrich({"set": gs}, mod, universe=sorted(univ), min_size=1, max_size=len(univ))
        return float(res.loc[0, "p_value"])
    except Exception:  # noqa: BLE001 - no gseapy: the same test with scipy
        from scipy.stats import hypergeom

        k = len(set(mod) & set(gs))
        return float(hypergeom.sf(k - 1, len(univ), len(gs), len(mod)))


def _ora_problem(rng: np.random.Generator, strong: bool = True):
    """A module that overlaps a gene set strongly, or about as much as chance predicts."""
    universe = [f"G{i:03d}" for i in range(int(rng.integers(150, 300)))]
    size = int(rng.integers(10, 30))
    gene_set = list(rng.choice(universe, size, replace=False))
    n_in = int(rng.integers(2, size // 2)) if strong else int(rng.integers(1, 3))
    inside = list(rng.choice(gene_set, n_in, replace=False))
    others = [g for g in universe if g not in set(gene_set)]
    module = inside + list(rng.choice(others, int(rng.integers(5, 25)), replace=False))
    return list(rng.permutation(module)), gene_set, universe


def check_ora_pvalue(fn: Callable | None, seed: int = 0) -> bool:
    """Check ``fn(module, gene_set, universe) -> float``: the one-sided ORA p-value.

    Run on five random problems and compared with :func:`reference_ora_pvalue`.
    """
    if _missing(fn, "write a function ora_p(module, gene_set, universe) that returns a p-value."):
        return False
    if not callable(fn):
        print("Not quite. The answer should be a function, e.g. "
              "`def ora_p(module, gene_set, universe):`.")
        return False
    from scipy.stats import fisher_exact, hypergeom

    rng = np.random.default_rng(seed)
    for trial in range(5):
        module, gene_set, universe = _ora_problem(rng, strong=trial < 2)
        expected = reference_ora_pvalue(module, gene_set, universe)
        got, problem = _number_from(fn, list(module), list(gene_set), list(universe))
        if problem:
            print(problem)
            return False
        if np.isclose(got, expected, rtol=1e-6, atol=1e-12):
            continue
        N, K, n = len(universe), len(gene_set), len(module)
        k = len(set(module) & set(gene_set))
        if np.isclose(got, hypergeom.sf(k, N, K, n), rtol=1e-6, atol=1e-12):
            return _feedback(False, "", "off by one: sf(k) is P(overlap > k); the p-value is "
                             "P(overlap >= k), i.e. hypergeom.sf(k - 1, N, K, n).")
        table = [[k, n - k], [K - k, N - K - n + k]]
        if np.isclose(got, fisher_exact(table)[1], rtol=1e-6, atol=1e-12):
            return _feedback(False, "", "that is the two-sided Fisher test: a module that "
                             "*avoids* the set would count as significant too. Test only "
                             "over-representation (alternative='greater').")
        return _feedback(False, "", f"trial {trial}: expected {expected:.3g}, got {got:.3g}. "
                         "N = genes in the universe, K = set genes, n = module genes, k = overlap;"
                         " p = P(X >= k) for X ~ Hypergeometric(N, K, n).")
    return _feedback(True, "your p-values match gseapy's enrichment test on five random "
                     "problems.", "")


# --------------------------------------------------------------------------------------------
# exercise: what a false positive looks like
# --------------------------------------------------------------------------------------------
def reference_decoy_hits(enrichment: pd.DataFrame, alpha: float = 0.05) -> tuple[int, int]:
    """Decoy gene sets (names starting with ``decoy``) with p < alpha, and with FDR < alpha.

    ``enrichment``: the table of :func:`course_helpers.networks.enrich` or ``enrich_modules``.

    Examples
    --------
    >>> t = pd.DataFrame({"gene_set": ["program:a", "decoy1:program:a", "decoy2:program:a"],
    ...                   "p_value": [1e-9, 0.01, 0.5], "fdr": [3e-9, 0.015, 0.5]})
    >>> reference_decoy_hits(t)
    (1, 1)
    """
    decoy = enrichment["gene_set"].astype(str).str.startswith("decoy")
    return (int((enrichment.loc[decoy, "p_value"] < alpha).sum()),
            int((enrichment.loc[decoy, "fdr"] < alpha).sum()))


def check_decoy_hits(answer, enrichment: pd.DataFrame, alpha: float = 0.05) -> bool:
    """Check ``answer = (decoys with p < alpha, decoys with FDR < alpha)`` in ``enrichment``."""
    if _missing(answer, "put a pair (number of decoys with p < 0.05, number with FDR < 0.05) "
                        "in `answer`."):
        return False
    if not isinstance(enrichment, pd.DataFrame) or not {"gene_set", "p_value", "fdr"} <= set(
            enrichment.columns):
        print("Not quite. Pass the enrichment table (with gene_set, p_value and fdr columns).")
        return False
    try:
        a, b = (int(x) for x in answer)
    except (TypeError, ValueError):
        return _feedback(False, "", "answer should be a pair of counts, e.g. (12, 0).")
    raw, fdr = reference_decoy_hits(enrichment, alpha)
    n_decoys = int(enrichment["gene_set"].astype(str).str.startswith("decoy").sum())
    if (a, b) == (raw, fdr):
        return _feedback(True, f"{raw} of {n_decoys} decoy tests have p < {alpha} (about "
                         f"{alpha:.0%} are expected by chance) and {fdr} survive the FDR.", "")
    if (a, b) == (fdr, raw):
        return _feedback(False, "", "the two counts are swapped: p-value first, then FDR.")
    if a != raw:
        n_all = int((enrichment["p_value"] < alpha).sum())
        hint = (" You counted every gene set; count only the decoys (names starting with "
                "'decoy')." if a == n_all else "")
        return _feedback(False, "", f"the number of decoys with p < {alpha} is not {a}.{hint}")
    return _feedback(False, "", f"the p-value count is right; recount the decoys with FDR < "
                     f"{alpha} (column fdr).")
