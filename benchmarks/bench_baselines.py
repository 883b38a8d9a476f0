"""Runtime and peak memory of every baseline on a 2,000-cell synthetic data set with known edges.

Run:  .venv/bin/python benchmarks/bench_baselines.py [--cells 2000 --tfs 20 --targets 300 ...]
  or: .venv/bin/pytest benchmarks/bench_baselines.py -m bench -s

Prints one row per method: wall time and process CPU time (s), peak resident-memory increase (MB),
number of edges and AUPRC of the planted TF -> target edges (random = fraction of true pairs).
On a shared machine wall time depends on the load (printed); CPU time much less. With ``--sklearn`` it
also times scikit-learn's GradientBoostingRegressor with arboreto's GRNBoost2 settings on a sample
of targets and extrapolates, to put rustscenic's speed in context (arboreto itself is not installed:
its dask path is broken with current dask).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from course_helpers import baselines as B
from course_helpers.baselines.dependencies import _import_pywgcna
from course_helpers.baselines.inputs import _log_normalize


def make_synthetic(n_cells=2000, n_tfs=20, n_targets=300, n_background=180, seed=0, dispersion=2.0,
                   depth=0.05):
    """Counts from planted linear TF -> target edges with negative-binomial noise.

    ``depth`` scales every mean: 0.05 gives ~80 % zeros, like droplet data.
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    tfs = [f"ENSG{90000000000 + i:011d}" for i in range(n_tfs)]
    targets = [f"ENSG{91000000000 + i:011d}" for i in range(n_targets)]
    bg = [f"ENSG{92000000000 + i:011d}" for i in range(n_background)]
    genes = tfs + targets + bg
    symbols = ([f"TF{i}" for i in range(n_tfs)] + [f"TG{i}" for i in range(n_targets)]
               + [f"BG{i}" for i in range(n_background)])
    act = np.exp(rng.normal(0, 0.8, size=(n_cells, n_tfs)))
    size = np.exp(rng.normal(0, 0.25, size=n_cells))[:, None]
    mu = np.empty((n_cells, len(genes)))
    mu[:, :n_tfs] = 6.0 * act
    edges = []
    for j in range(n_targets):
        parents = [j % n_tfs]
        if rng.random() < 0.3:
            parents.append(int(rng.choice([t for t in range(n_tfs) if t != parents[0]])))
        m = np.full(n_cells, rng.uniform(0.5, 2.0))
        for p in parents:
            w = rng.uniform(1.5, 3.0)
            m = m + w * act[:, p]
            edges.append((tfs[p], targets[j]))
        mu[:, n_tfs + j] = m
    mu[:, n_tfs + n_targets:] = rng.uniform(0.5, 10, size=n_background)
    mu *= size * depth
    counts = rng.negative_binomial(dispersion, dispersion / (dispersion + mu))
    var = pd.DataFrame({"gene_symbol": symbols,
                        "gene_class": ["tf"] * n_tfs + ["target"] * n_targets + ["background"] * n_background},
                       index=genes)
    adata = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)),
                       obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]), var=var)
    return adata, set(edges), tfs


def auprc(edges: pd.DataFrame, genes, tfs, truth: set) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score

    score = edges.groupby(["source", "target"])["score"].max()
    pairs = [(s, t) for s in tfs for t in genes if s != t]
    y = np.array([p in truth for p in pairs])
    s = score.reindex(pd.MultiIndex.from_tuples(pairs)).fillna(0.0).to_numpy()
    return float(average_precision_score(y, s)), float(y.mean())


def sklearn_gbm_seconds(adata, tfs, n_targets=20, n_estimators=500, seed=0) -> float:
    """Seconds for arboreto-style sklearn GBMs on ``n_targets`` targets, extrapolated to all genes."""
    from sklearn.ensemble import GradientBoostingRegressor

    X = _log_normalize(adata.X).toarray()
    tf_idx = adata.var_names.get_indexer(tfs)
    rng = np.random.default_rng(seed)
    sample = rng.choice(adata.n_vars, size=min(n_targets, adata.n_vars), replace=False)
    t0 = time.perf_counter()
    for j in sample:
        preds = [i for i in tf_idx if i != j]
        GradientBoostingRegressor(learning_rate=0.01, n_estimators=n_estimators, max_features=0.1,
                                  subsample=0.9, max_depth=3, random_state=seed).fit(X[:, preds], X[:, j])
    return (time.perf_counter() - t0) / len(sample) * adata.n_vars


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--tfs", type=int, default=20)
    ap.add_argument("--targets", type=int, default=300)
    ap.add_argument("--background", type=int, default=180)
    ap.add_argument("--power", type=int, default=6)
    ap.add_argument("--min-module-size", type=int, default=10)
    ap.add_argument("--sklearn", action="store_true", help="also time sklearn GBMs (arboreto-style)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    adata, truth, tfs = make_synthetic(args.cells, args.tfs, args.targets, args.background)
    print(f"synthetic: {adata.n_obs} cells x {adata.n_vars} genes, {len(tfs)} TFs, {len(truth)} "
          f"planted edges, {100 * (1 - adata.X.nnz / np.prod(adata.shape)):.0f}% zeros "
          f"({time.perf_counter() - t0:.1f} s)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"load average {load:.1f}, python {platform.python_version()}")

    # import the optional libraries first so that import time is not charged to the first method
    t0 = time.perf_counter()
    _import_pywgcna()
    import decoupler  # noqa: F401
    import rustscenic.grn  # noqa: F401
    print(f"imports (PyWGCNA, decoupler, rustscenic): {time.perf_counter() - t0:.1f} s")

    kw = {"wgcna": {"power": args.power, "min_module_size": args.min_module_size},
          "regulons": {"min_targets": 5}, "aucell": {"n_up": max(2, adata.n_vars // 10)}}
    res = B.run_all_baselines(adata, tfs, seed=0, progress=False, method_kwargs=kw,
                              methods=("correlation", "spearman", "wgcna", "grnboost2", "regulons",
                                       "aucell", "ulm"))
    full = B.run_all_baselines(adata, tfs, seed=0, progress=False, methods=("grnboost2",),
                               method_kwargs={"grnboost2": {"n_estimators": 500, "early_stop_window": 0}})
    timings = pd.concat([res.timings, full.timings.assign(method="grnboost2 (500 trees)")],
                        ignore_index=True)
    edges = dict(res.edges)
    edges["grnboost2 (500 trees)"] = full.edges["grnboost2"]
    aps = {m: auprc(e, adata.var_names, tfs, truth) for m, e in edges.items()}
    timings["auprc"] = timings["method"].map(lambda m: aps[m][0] if m in aps else np.nan)
    rand = next(iter(aps.values()))[1]
    if args.sklearn:
        secs = sklearn_gbm_seconds(adata, tfs)
        rust = float(timings.loc[timings.method == "grnboost2 (500 trees)", "wall_s"].iloc[0])
        print(f"sklearn GradientBoostingRegressor, same 500-tree settings, extrapolated to all "
              f"{adata.n_vars} targets: {secs:.1f} s ({secs / rust:.0f}x rustscenic)")
    if res.wgcna is not None:
        print(f"WGCNA: {res.wgcna.n_modules} modules, {int((res.wgcna.modules == 'grey').sum())} grey "
              f"genes, scale-free R^2 at power {args.power}: "
              f"{float(res.wgcna.scale_free_fit['SFT.R.sq'].iloc[0]):.2f}")
    print(f"regulons: {len(res.regulons or {})}")
    with pd.option_context("display.width", 120, "display.float_format", "{:.3f}".format):
        print(timings.to_string(index=False))
    print(f"AUPRC of random ranking: {rand:.3f}")
    return timings


try:  # `pytest benchmarks/bench_baselines.py -m bench`
    import pytest

    @pytest.mark.bench
    def test_bench_baselines():
        timings = main([])
        assert timings["wall_s"].notna().all()
except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":
    main()
