"""Time and peak memory of the state-contrast attention network for N and 4N cells per group.

Run:  .venv/bin/python benchmarks/bench_state_contrast.py [--cells 25 --genes 300 ...]
  or: .venv/bin/pytest benchmarks/bench_state_contrast.py -m bench -s

``attention.state_contrast`` runs the streamed ``aggregate_attention`` on diseased and on
healthy cardiomyocytes of the teaching tissue (chapter split) with the teaching model, over a
fixed gene set (the ``--genes`` genes most often detected in cardiomyocytes). Each configuration
runs in a fresh Python process so that its peak resident memory (``ru_maxrss``) is its own.
Printed per run: cells per group, wall time (``course_helpers.measure.best_of``, one run),
peak RSS, the peak increase over the resident memory just before the call
(``course_helpers.measure.PeakMemory``; model, tissue and tokens loaded) and the accumulators
(``StateContrast.nbytes``). With 4x the cells the time grows ~4x, the memory stays flat.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def _rss_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if platform.system() != "Darwin" else peak / 2**20


def child(args) -> dict:
    import torch

    import course_helpers as ch
    from course_helpers.attention import state_contrast
    from course_helpers.measure import PeakMemory, best_of

    if args.threads:
        torch.set_num_threads(args.threads)
    model = ch.model.load_model("teaching", device="cpu")
    adata = ch.data.load_tissue()
    cm = adata[(adata.obs["cell_type"] == "cardiomyocyte").to_numpy()
               & ~adata.obs["low_quality"].to_numpy()]
    detected = np.asarray((cm.X > 0).mean(axis=0)).ravel()
    vocab_genes = set(model.gene_vocab.token_to_id)
    order = [g for g in cm.var_names[np.argsort(-detected, kind="stable")] if g in vocab_genes]
    genes = order[: args.genes]
    # N cells per group = the first N of a seeded order that starts with the group's longest
    # cell, so that both runs (N and 4N) share their longest cell: the per-batch attention
    # buffer (batch x heads x length^2) is then the same and only the number of cells differs
    rng = np.random.default_rng(args.seed)
    n_genes = np.asarray((cm.X > 0).sum(axis=1)).ravel()
    rows = []
    for s in ("diseased", "healthy"):
        idx = np.flatnonzero(cm.obs["state"].to_numpy() == s)
        longest = idx[np.argmax(n_genes[idx])]
        rest = rng.permutation(idx[idx != longest])
        rows.append(np.concatenate([[longest], rest])[: args.n])
    rows = np.concatenate(rows)
    ds = ch.tokenize.tokenize(cm[np.sort(rows)].copy(), model.gene_vocab,
                              cell_attrs=("cell_id", "state"), progress=False)
    before = _rss_peak_mb()  # whole-process peak so far (read before PeakMemory resets it)
    out = {}

    def call():
        out["sc"] = state_contrast(model, ds, "state", ("diseased", "healthy"), genes=genes,
                                   batch_size=args.batch_size, progress=False)

    with PeakMemory() as mem:
        seconds = best_of(call, repeat=1, warmup=False)
    sc = out["sc"]
    increase = mem.peak_mb
    after = max(before, mem.base_mb + increase)
    return {"cells_per_group": args.n, "seconds": round(seconds, 2),
            "peak_rss_mb": round(after, 1), "peak_increase_mb": round(increase, 1),
            "accumulators_mb": round(sc.nbytes / 2**20, 2), "genes": len(genes),
            "longest_cell": int(max(ds["length"])),
            "max_len": int(max(ds["length"])), "torch_threads": torch.get_num_threads()}


def run(cells=25, genes=300, batch_size=8, threads=0, seed=0) -> list[dict]:
    rows = []
    for n in (cells, 4 * cells):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--n", str(n),
               "--genes", str(genes), "--batch-size", str(batch_size), "--threads",
               str(threads), "--seed", str(seed)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def _print(rows) -> None:
    print(f"state_contrast benchmark - teaching model, diseased vs healthy cardiomyocytes, "
          f"{rows[0]['genes']} genes, cells up to {rows[1]['max_len']} genes; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{rows[0]['torch_threads']}")
    cols = ["cells_per_group", "seconds", "peak_rss_mb", "peak_increase_mb", "accumulators_mb",
            "longest_cell"]
    print("  ".join(f"{c:>16}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>16}" for c in cols))
    a, b = rows
    print(f"4x cells: time x{b['seconds'] / max(a['seconds'], 1e-9):.2f}, peak RSS "
          f"x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}, accumulators identical: "
          f"{a['accumulators_mb'] == b['accumulators_mb']}")


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=25, help="N per group (the second run uses 4N)")
    p.add_argument("--genes", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    _print(run(args.cells, args.genes, args.batch_size, args.threads, args.seed))


try:  # collected by `pytest -m bench` only
    import pytest

    @pytest.mark.bench
    def test_bench_state_contrast_memory_flat():
        rows = run(20, 300, 8, 0, 0)
        _print(rows)
        assert rows[0]["accumulators_mb"] == rows[1]["accumulators_mb"]
        assert rows[0]["longest_cell"] == rows[1]["longest_cell"]
        assert rows[1]["peak_increase_mb"] < rows[0]["peak_increase_mb"] + 50
except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":
    main()
