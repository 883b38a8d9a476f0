"""Statistics of perturbation results: net shift, rank adjustment, rank-sum tests, BH FDR."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .effects import _ID_COLUMNS
from .inputs import _symbols


def net_shift(
    results: pd.DataFrame, goal_state: str, start_state: str, key_added: str | None = None
) -> pd.DataFrame:
    """Shift toward the goal state minus shift toward the start state, per (cell, gene).

    With cell states, a deletion that changes a cell a lot lowers its similarity to *every*
    state, so the shift toward the goal alone mostly says "how much did the cell change". The
    difference ``shift(goal) - shift(start)`` keeps only the movement *along* the start→goal
    axis. This is a small step beyond the reference, which ranks by the goal shift alone.

    Parameters
    ----------
    results
        Output of :func:`in_silico_perturb` or :func:`random_gene_null` with ``cell_states``.
    goal_state, start_state
        Two values of the ``state`` column.
    key_added
        Name of the new state label (default ``"<goal>-<start>"``).

    Returns
    -------
    pandas.DataFrame
        One row per (cell, perturbed gene): the identifying columns of ``results`` (``cell_id``,
        ``rank_index``, ``perturbed_token``, ``perturbed_gene``, ``anchor_*``), ``state`` (the new
        label) and ``shift``. It can go straight into :func:`perturbation_stats`.

    Examples
    --------
    >>> import pandas as pd
    >>> scan = pd.DataFrame({"cell_id": ["c1", "c1", "c2", "c2"], "rank_index": [3, 3, 5, 5],
    ...                      "perturbed_token": [7, 7, 7, 7], "state": ["healthy", "diseased"] * 2,
    ...                      "shift": [0.02, -0.01, 0.03, 0.00]})
    >>> net_shift(scan, "healthy", "diseased")
      cell_id  rank_index  perturbed_token             state  shift
    0      c1           3                7  healthy-diseased   0.03
    1      c2           5                7  healthy-diseased   0.03
    """
    if not isinstance(results, pd.DataFrame) or results.empty:
        raise CourseInputError("results must be a non-empty DataFrame from in_silico_perturb().")
    if "state" not in results.columns or "shift" not in results.columns:
        raise CourseInputError(
            "net_shift needs results made with cell_states (columns 'state' and 'shift'). Fix: "
            "in_silico_perturb(..., cell_states={...})."
        )
    have = [str(x) for x in pd.unique(results["state"])]
    for name, st in (("goal_state", goal_state), ("start_state", start_state)):
        if st not in have:
            raise CourseInputError(f"{name}={st!r} is not a state of the results; states: {have}.")
    ids = [c for c in _ID_COLUMNS if c in results.columns]
    goal = results[results["state"] == goal_state].reset_index(drop=True)
    start = results[results["state"] == start_state].reset_index(drop=True)
    if len(goal) != len(start) or not goal[ids].equals(start[ids]):
        goal = goal.set_index(ids)
        start = start.set_index(ids).reindex(goal.index)
        out = goal.reset_index()[ids]
        out["shift"] = (goal["shift"] - start["shift"]).to_numpy()
    else:
        out = goal[ids].copy()
        out["shift"] = goal["shift"].to_numpy() - start["shift"].to_numpy()
    out.insert(len(ids), "state", key_added or f"{goal_state}-{start_state}")
    return out


def _local_linear(x: np.ndarray, y: np.ndarray, grid: np.ndarray, window: int) -> np.ndarray:
    """Least-squares line through the points with ``|x - g| <= window``, evaluated at each g.

    A local *line* (not a mean) stays unbiased at the edges of the rank range, where the window
    is one-sided (rank 0 has neighbours on one side only). Vectorised with cumulative sums.
    """
    order = np.argsort(x, kind="stable")
    xs, ys = x[order].astype(np.float64), y[order].astype(np.float64)
    c = [
        np.concatenate([[0.0], np.cumsum(v)]) for v in (np.ones_like(xs), xs, ys, xs * xs, xs * ys)
    ]
    lo = np.searchsorted(xs, grid - window, side="left")
    hi = np.searchsorted(xs, grid + window, side="right")
    n, sx, sy, sxx, sxy = (v[hi] - v[lo] for v in c)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x, mean_y = sx / n, sy / n
        var = sxx / n - mean_x**2
        slope = np.where(
            var > 1e-12 * np.maximum(mean_x**2, 1.0), (sxy / n - mean_x * mean_y) / var, 0.0
        )
        out = mean_y + slope * (grid - mean_x)
    out[n == 0] = np.nan
    ok = ~np.isnan(out)
    if ok.any() and not ok.all():  # ranks beyond the null's range: nearest defined value
        idx = np.flatnonzero(ok)
        pos = np.arange(grid.size)
        j = np.clip(np.searchsorted(idx, pos), 1, max(idx.size - 1, 1))
        left, right = idx[j - 1], idx[np.minimum(j, idx.size - 1)]
        pick = np.where(np.abs(left - pos) <= np.abs(right - pos), left, right)
        out[~ok] = out[pick[~ok]]
    return out


def adjust_for_rank(
    results: pd.DataFrame,
    null: pd.DataFrame,
    value: str | None = None,
    window: int = 10,
    *,
    key_added: str | None = None,
):
    """Remove the part of a perturbation effect explained by the gene's rank in the cell.

    Deleting a gene moves every later gene up one place, so with absolute position embeddings
    (Geneformer V1, the teaching model) a deletion near the top of a cell changes the cell more
    than one near the bottom, *whatever the gene*. Comparing a gene with random genes then
    mostly compares ranks. This function subtracts from every row the **null value expected at its
    rank**: a least-squares line through the null genes deleted at similar ranks
    (``|rank - r| <= window``, per state), in the results and
    in the null alike, so that :func:`perturbation_stats` compares genes with rank-matched random
    genes.

    Parameters
    ----------
    results, null
        :func:`in_silico_perturb` / :func:`random_gene_null` outputs (or :func:`net_shift` of
        them) with a ``rank_index`` column.
    value
        Column to adjust: ``"shift"`` (default when present) or ``"cos_sim"``.
    window
        Half-width of the rank window (in positions).
    key_added
        Name of the adjusted column (default ``value + "_adj"``).

    Returns
    -------
    (results_adj, null_adj) : tuple of pandas.DataFrame
        Copies with the new column (NaN for genes inserted by overexpression, which had no
        rank); pass ``value=key_added`` to :func:`perturbation_stats`.

    Examples
    --------
    >>> import pandas as pd
    >>> null = pd.DataFrame({"rank_index": range(40), "cos_sim": [0.9 + 0.002 * r for r in range(40)]})
    >>> res = pd.DataFrame({"rank_index": [0, 20], "perturbed_token": [7, 8], "cos_sim": [0.8, 0.95]})
    >>> res_adj, null_adj = adjust_for_rank(res, null, window=5)
    >>> res_adj["cos_sim_adj"].round(3).tolist()
    [-0.1, 0.01]
    >>> float(null_adj["cos_sim_adj"].abs().max()) < 1e-9
    True
    """
    for name, df in (("results", results), ("null", null)):
        if not isinstance(df, pd.DataFrame) or df.empty:
            raise CourseInputError(f"{name} must be a non-empty DataFrame of perturbation results.")
        if "rank_index" not in df.columns:
            raise CourseInputError(
                f"{name} has no 'rank_index' column, so ranks cannot be matched. Fix: pass the "
                "results of in_silico_perturb / random_gene_null (or net_shift of them)."
            )
    if value is None:
        value = "shift" if "shift" in results.columns else "cos_sim"
    if value not in results.columns or value not in null.columns:
        raise CourseInputError(f"Both tables need the column {value!r}.")
    if int(window) < 0:
        raise CourseInputError(f"window must be >= 0, got {window}.")
    key = key_added or f"{value}_adj"
    res, nul = results.copy(), null.copy()
    res[key] = np.nan
    nul[key] = np.nan
    has_state = "state" in res.columns
    for st in pd.unique(res["state"]) if has_state else [None]:
        rm = (res["state"] == st).to_numpy() if has_state else np.ones(len(res), bool)
        nm = (nul["state"] == st).to_numpy() if has_state else np.ones(len(nul), bool)
        nx = nul.loc[nm, "rank_index"].to_numpy(np.int64)
        ny = nul.loc[nm, value].to_numpy(np.float64)
        ok = ~np.isnan(ny)
        if not ok.any():
            raise CourseInputError(f"The null has no values for state {st!r}.")
        nx, ny = nx[ok], ny[ok]
        top = int(max(res.loc[rm, "rank_index"].max(), nul.loc[nm, "rank_index"].max()))
        expected = _local_linear(nx, ny, np.arange(top + 1), int(window))
        for df, m in ((res, rm), (nul, nm)):
            r = df.loc[m, "rank_index"].to_numpy(np.int64)
            adj = df.loc[m, value].to_numpy(np.float64) - expected[np.clip(r, 0, None)]
            adj[r < 0] = np.nan  # genes inserted by overexpression had no rank
            df.loc[m, key] = adj
    return res, nul


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (FDR); NaNs stay NaN and are not counted.

    ``q_(i) = min_{j >= i} p_(j) * m / j`` over the sorted p-values, capped at 1 (the same as
    ``scipy.stats.false_discovery_control(p, method="bh")``).

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
    [0.02, 0.04, 0.04, 0.02]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    scaled = q[order] * m / np.arange(1, m + 1)
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.clip(scaled, 0, 1)
    out[ok] = adj
    return out


def _mwu_vs_rest(values: np.ndarray, groups: np.ndarray):
    """Two-sided Mann-Whitney U of every group against all other values, vectorised.

    Same numbers as ``scipy.stats.mannwhitneyu(x, rest, method="asymptotic")`` (normal
    approximation with tie and continuity correction), from one ranking of the pooled values.
    Returns (group labels, U statistic of the group, p-value).
    """
    from scipy import stats

    ranks = stats.rankdata(values)
    n = values.size
    _, tcounts = np.unique(values, return_counts=True)
    tie_term = float((tcounts.astype(np.float64) ** 3 - tcounts).sum())
    labels, inv = np.unique(groups, return_inverse=True)
    n1 = np.bincount(inv).astype(np.float64)
    r1 = np.bincount(inv, weights=ranks)
    n2 = n - n1
    u1 = r1 - n1 * (n1 + 1) / 2
    u = np.maximum(u1, n1 * n2 - u1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
        z = (u - n1 * n2 / 2 - 0.5) / s
    p = np.clip(2 * stats.norm.sf(z), 0, 1)
    p[(n2 == 0) | ~np.isfinite(z)] = np.nan
    return labels, u1, p


def perturbation_stats(
    results: pd.DataFrame, null="all", value: str | None = None, by=None, *, vocab=None
) -> pd.DataFrame:
    """Per-gene summary of perturbation results with rank-sum p-values and BH FDR.

    For each perturbed gene (and state): the number of cells, the mean and standard deviation
    of its values over cells (``np.std``, as the reference ``InSilicoPerturberStats``), and a
    two-sided Mann-Whitney U (rank-sum) test of its values against a null distribution,
    Benjamini-Hochberg corrected over the genes of a state.

    Parameters
    ----------
    results
        Output of :func:`in_silico_perturb` (or its ``cell_and_gene`` table with
        ``by=["perturbed_token", "affected_token"]``).
    null
        ``"all"``: each gene against the values of all *other* genes in ``results`` (same
        state). Or a DataFrame of the same kind, e.g. from :func:`random_gene_null`: each gene
        against all its values (same state).
    value
        Column to test: ``"shift"`` (default when present) or ``"cos_sim"``.
    by
        Grouping columns; default ``["perturbed_token"]`` (plus ``anchor_token`` when present).
        ``state`` is always added when present.
    vocab
        Optional :class:`~course_helpers.vocab.GeneVocab` (e.g. ``model.gene_vocab``) to add gene
        symbols when ``results`` has none.

    Returns
    -------
    pandas.DataFrame
        ``[state], <by>, [gene], n_cells, mean, std, median, null_mean, u_stat, p_value, fdr``,
        sorted by state and p-value. The p-values use scipy's normal approximation
        (``method="asymptotic"``), with tie and continuity correction.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> res = pd.DataFrame({"perturbed_token": np.repeat([7, 8], 20),
    ...                     "cos_sim": np.r_[rng.normal(0.90, 0.01, 20), rng.normal(0.99, 0.01, 20)]})
    >>> null = pd.DataFrame({"perturbed_token": np.repeat([20, 21], 30),
    ...                      "cos_sim": rng.normal(0.99, 0.01, 60)})
    >>> st = perturbation_stats(res, null=null)
    >>> st[["perturbed_token", "n_cells"]].values.tolist()
    [[7, 20], [8, 20]]
    >>> bool(st["fdr"].iloc[0] < 1e-6), bool(st["fdr"].iloc[1] > 0.05)
    (True, True)
    """
    from scipy import stats

    if not isinstance(results, pd.DataFrame) or results.empty:
        raise CourseInputError("results must be a non-empty DataFrame from in_silico_perturb().")
    if value is None:
        value = "shift" if "shift" in results.columns else "cos_sim"
    if value not in results.columns:
        raise CourseInputError(
            f"results has no column {value!r} (columns: {list(results.columns)}). Fix: "
            "value='shift' for results with cell states, value='cos_sim' without."
        )
    if by is None:
        by = ["perturbed_token"] + (["anchor_token"] if "anchor_token" in results.columns else [])
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in results.columns]
    if missing:
        raise CourseInputError(f"results has no column(s) {missing} to group by.")
    has_state = "state" in results.columns
    if isinstance(null, pd.DataFrame):
        if value not in null.columns:
            raise CourseInputError(f"The null DataFrame has no column {value!r}.")
        if has_state and "state" not in null.columns:
            raise CourseInputError(
                "results have cell states but the null has none. Fix: make the null with the same "
                "cell_states (random_gene_null(..., cell_states=...))."
            )
    elif not (isinstance(null, str) and null == "all"):
        raise CourseInputError("null must be 'all' or a DataFrame of null results.")

    parts = []
    state_groups = results.groupby("state", sort=False) if has_state else [(None, results)]
    for state, sub in state_groups:
        vals = sub[value].to_numpy(dtype=np.float64)
        ok = ~np.isnan(vals)
        sub, vals = sub[ok], vals[ok]
        g = sub.groupby(by, sort=True)[value]
        summary = g.agg(n_cells="size", mean="mean").reset_index()
        summary["std"] = g.std(ddof=0).to_numpy()  # np.std, as the reference statistics
        summary["median"] = g.median().to_numpy()
        if isinstance(null, pd.DataFrame):
            nd = null if state is None else null[null["state"] == state]
            pool = nd[value].to_numpy(dtype=np.float64)
            pool = pool[~np.isnan(pool)]
            if pool.size == 0:
                raise CourseInputError(f"The null has no values for state {state!r}.")
            u = np.full(len(summary), np.nan)
            p = np.full(len(summary), np.nan)
            for i, (_, x) in enumerate(g):
                r = stats.mannwhitneyu(
                    x.to_numpy(), pool, alternative="two-sided", method="asymptotic"
                )
                u[i], p[i] = r.statistic, r.pvalue
            summary["null_mean"] = float(pool.mean())
        else:
            codes = sub.groupby(by, sort=True).ngroup().to_numpy()
            _, u, p = _mwu_vs_rest(vals, codes)
            total, count = vals.sum(), len(vals)
            n1 = summary["n_cells"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                summary["null_mean"] = (total - summary["mean"].to_numpy() * n1) / (count - n1)
        summary["u_stat"] = u
        summary["p_value"] = p
        summary["fdr"] = benjamini_hochberg(p)
        if state is not None:
            summary.insert(0, "state", state)
        parts.append(summary)
    out = pd.concat(parts, ignore_index=True)
    if "perturbed_token" in out.columns and "perturbed_gene" not in out.columns:
        sym = None
        if "perturbed_gene" in results.columns:
            m = dict(zip(results["perturbed_token"], results["perturbed_gene"]))
            sym = [m.get(t) for t in out["perturbed_token"]]
        elif vocab is not None:
            sym = _symbols(out["perturbed_token"].to_numpy(), vocab)
        if sym is not None:
            out.insert(out.columns.get_loc("perturbed_token") + 1, "perturbed_gene", sym)
    sort = (["state"] if has_state else []) + ["p_value"]
    return out.sort_values(sort, kind="stable", na_position="last").reset_index(drop=True)
