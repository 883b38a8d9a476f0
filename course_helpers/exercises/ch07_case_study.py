"""Checks for chapter 7 (Case study: in-silico treatment of the planted disease).

Every check recomputes the expected answer from the data it is given (per-cell perturbation
results, raw counts), never from a learner's intermediate variables.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import _feedback, _missing, _safe_call


# --------------------------------------------------------------------------------------------
# exercise 1: FDR-significant genes
# --------------------------------------------------------------------------------------------
def reference_significant_genes(results: pd.DataFrame, null: pd.DataFrame,
                                goal_state: str, alpha: float = 0.05) -> list[str]:
    """Genes whose deletion moves cells towards ``goal_state`` at BH FDR < ``alpha``.

    Recomputed from the per-cell results: Mann-Whitney p-values against the null
    (:func:`course_helpers.perturb.perturbation_stats`), Benjamini-Hochberg over the genes of the
    goal state, and a mean shift above the null's mean.
    """
    from ..perturb import benjamini_hochberg, perturbation_stats

    stats = perturbation_stats(results, null=null)
    s = stats[stats["state"] == goal_state]
    s = s[s["p_value"].notna()]
    q = benjamini_hochberg(s["p_value"].to_numpy())
    keep = (q < alpha) & (s["mean"].to_numpy() > s["null_mean"].to_numpy())
    col = "perturbed_gene" if "perturbed_gene" in s.columns else "perturbed_token"
    return sorted(str(g) for g in s.loc[keep, col])


def check_significant_genes(answer, results: pd.DataFrame, null: pd.DataFrame,
                            goal_state: str, alpha: float = 0.05) -> bool:
    """Check a list of gene symbols: significant (BH FDR < alpha) and moving towards the goal."""
    if _missing(answer, "a list of gene symbols (BH FDR < 0.05, mean shift above the null)."):
        return False
    if isinstance(answer, str):
        answer = [answer]
    try:
        got = {str(g) for g in answer}
    except TypeError:
        return _feedback(False, "", "the answer should be a list (or set) of gene symbols.")
    expected, err = _safe_call(reference_significant_genes, results, null, goal_state, alpha)
    if err:
        return _feedback(False, "", f"could not recompute the statistics ({err}); pass the "
                         "per-cell results and null tables of this chapter.")
    expected = set(expected)
    if got == expected:
        return _feedback(True, f"{len(expected)} gene(s) pass BH FDR < {alpha} with a mean shift "
                         f"above the null (state {goal_state!r}): {sorted(expected)[:10]}.", "")
    # diagnose the common mistakes
    from ..perturb import perturbation_stats

    stats = perturbation_stats(results, null=null)
    s = stats[(stats["state"] == goal_state) & stats["p_value"].notna()]
    col = "perturbed_gene" if "perturbed_gene" in s.columns else "perturbed_token"
    raw = set(s.loc[(s["p_value"] < alpha) & (s["mean"] > s["null_mean"]), col].astype(str))
    both = set(s.loc[s["fdr"] < alpha, col].astype(str))
    if got == raw and raw != expected:
        return _feedback(False, "", "these pass the *uncorrected* p < alpha. Adjust the p-values "
                         "with Benjamini-Hochberg first.")
    if got == both and both != expected:
        return _feedback(False, "", "this includes genes that move cells *away* from the goal "
                         "state; keep only those with a mean shift above the null's mean.")
    missing, extra = sorted(expected - got), sorted(got - expected)
    parts = []
    if missing:
        parts.append(f"{len(missing)} expected gene(s) missing (e.g. {missing[:3]})")
    if extra:
        parts.append(f"{len(extra)} gene(s) that should not be there (e.g. {extra[:3]})")
    return _feedback(False, "", "; ".join(parts) + ".")


# --------------------------------------------------------------------------------------------
# exercise 2: rank of a gene in the differential-expression list
# --------------------------------------------------------------------------------------------
def reference_de_ranking(adata, groupby: str = "state", group: str = "diseased",
                         reference: str = "healthy", method: str = "wilcoxon",
                         symbol_key: str = "gene_symbol") -> list[str]:
    """Genes (symbols) ranked by scanpy's ``rank_genes_groups`` score, ``group`` vs ``reference``.

    ``adata`` holds raw counts; a copy is normalised to 10,000 per cell and log1p-transformed.
    Rank 1 is the gene most up in ``group``.
    """
    import scanpy as sc

    a = adata.copy()
    a.obs[groupby] = a.obs[groupby].astype(str).astype("category")
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.tl.rank_genes_groups(a, groupby, groups=[group], reference=reference, method=method,
                            n_genes=a.n_vars, use_raw=False)
    names = pd.DataFrame(a.uns["rank_genes_groups"]["names"])[group].astype(str).tolist()
    if symbol_key in a.var.columns:
        sym = a.var[symbol_key].astype(str).to_dict()
        names = [sym.get(n, n) for n in names]
    return names


def check_de_rank(answer, gene: str, adata, groupby: str = "state", group: str = "diseased",
                  reference: str = "healthy", method: str = "wilcoxon") -> bool:
    """Check the 1-based rank of ``gene`` in the DE ranking of ``group`` vs ``reference``."""
    if _missing(answer, f"an integer: the rank of {gene} in the DE list (1 = top)."):
        return False
    try:
        value = int(answer)
        if value != float(answer):
            raise ValueError
    except (TypeError, ValueError):
        return _feedback(False, "", "the answer should be a single whole number (1 = top).")
    ranking, err = _safe_call(reference_de_ranking, adata, groupby, group, reference, method)
    if err:
        return _feedback(False, "", f"could not recompute the DE ranking ({err}).")
    if gene not in ranking:
        return _feedback(False, "", f"{gene} is not among the genes of this AnnData.")
    expected = ranking.index(gene) + 1
    if value == expected:
        return _feedback(True, f"{gene} is number {expected} of {len(ranking)} in the "
                         f"{method} ranking of {group} vs {reference}.", "")
    if value == expected - 1:
        return _feedback(False, "", "off by one: Python positions start at 0, ranks at 1.")
    if value == len(ranking) - expected + 1:
        return _feedback(False, "", "that is the rank from the bottom; rank 1 is the gene most "
                         f"up in {group!r}.")
    return _feedback(False, "", f"rank the genes by the {method} score of {group!r} vs "
                     f"{reference!r} (scanpy rank_genes_groups) and find {gene}.")


# --------------------------------------------------------------------------------------------
# exercise 3: synergy from single and combined effects
# --------------------------------------------------------------------------------------------
def reference_synergy(pairs: pd.DataFrame) -> pd.Series:
    """Mean synergy per pair, recomputed from the single and combined effects of each cell.

    With cell states (``shift_a``, ``shift_b``, ``shift_ab``; one state only): ``shift_ab -
    (shift_a + shift_b)``. Without states (``cos_sim_*``): the effect of a perturbation is
    ``1 - cos_sim`` and synergy = ``effect_ab - (effect_a + effect_b)``. Indexed ``"A+B"``.
    """
    if {"shift_a", "shift_b", "shift_ab"} <= set(pairs.columns):
        if "state" in pairs.columns and pairs["state"].nunique() > 1:
            raise ValueError("pairs holds several states; select one state first.")
        syn = pairs["shift_ab"] - (pairs["shift_a"] + pairs["shift_b"])
    else:
        ea, eb, eab = (1 - pairs[c] for c in ("cos_sim_a", "cos_sim_b", "cos_sim_ab"))
        syn = eab - (ea + eb)
    key = pairs["gene_a"].astype(str) + "+" + pairs["gene_b"].astype(str)
    return syn.groupby(key.to_numpy()).mean()


def _as_series(answer) -> pd.Series | None:
    if isinstance(answer, pd.Series):
        return answer
    if isinstance(answer, dict):
        return pd.Series(answer, dtype=float)
    if isinstance(answer, pd.DataFrame) and answer.shape[1] == 1:
        return answer.iloc[:, 0]
    return None


def check_synergy(answer, pairs: pd.DataFrame) -> bool:
    """Check the mean synergy per pair (a Series or dict ``{"A+B": value}``)."""
    if _missing(answer, "a pandas Series (or dict) of mean synergy indexed by 'A+B'."):
        return False
    got = _as_series(answer)
    if got is None:
        return _feedback(False, "", "the answer should be a pandas Series or a dict "
                         "{'GENE_A+GENE_B': mean synergy}.")
    expected, err = _safe_call(reference_synergy, pairs)
    if err:
        return _feedback(False, "", f"could not recompute the synergy ({err}).")
    got.index = got.index.astype(str)
    missing = sorted(set(expected.index) - set(got.index))
    if missing:
        return _feedback(False, "", f"{len(missing)} pair(s) missing, e.g. {missing[:3]} "
                         "(index the answer by 'gene_a+gene_b').")
    got = pd.to_numeric(got.reindex(expected.index), errors="coerce")
    scale = max(float(np.nanmax(np.abs(expected.to_numpy()))), 1e-12)
    ok = np.allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-6 * scale)
    if ok:
        best = expected.idxmax()
        return _feedback(True, f"highest mean synergy: {best} ({expected.max():.2e}).", "")
    if np.allclose(-got.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-6 * scale):
        return _feedback(False, "", "the sign is flipped: synergy is the combined effect minus "
                         "the sum of the single effects.")
    if "cos_sim_ab" in pairs.columns:
        wrong = (pairs["cos_sim_ab"] - pairs["cos_sim_a"] - pairs["cos_sim_b"]).groupby(
            (pairs["gene_a"].astype(str) + "+" + pairs["gene_b"].astype(str)).to_numpy()).mean()
        if np.allclose(got.to_numpy(), wrong.reindex(expected.index).to_numpy(), rtol=1e-6):
            return _feedback(False, "", "use effects, not similarities: the effect of a "
                             "perturbation is 1 - cos_sim.")
    return _feedback(False, "", "for each cell: combined effect minus (effect of A + effect of "
                     "B); then average over the cells of each pair.")
