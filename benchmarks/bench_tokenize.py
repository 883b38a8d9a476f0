"""Benchmark of course_helpers.tokenize: throughput (cells/s) and peak memory.

    .venv/bin/python benchmarks/bench_tokenize.py [--shared ../shared] [--cells 100000]

Measures, each case in a fresh Python process (so that peak RSS belongs to that case alone):

(a) the 200-cell reference fixture: tokenize(.h5ad path) + save, end to end;
(b) the fixture tiled 50 times (10,000 cells): tokenize + save, end to end, from an .h5ad path and
    from an in-memory AnnData;
(c) a generated sparse dataset read from an .h5ad path with tokenize_to_disk (backed, chunked),
    at 10 % of --cells and at --cells, to show that peak memory does not grow with the cells.

Timings are the best of --repeats warm runs (imports and vocabulary loading excluded); CPU time
of the process is printed beside the wall time because the machine may be shared. Only measured
numbers are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb(field="VmHWM"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------------------------
# child: one measurement in this process
# --------------------------------------------------------------------------------------------
def child(args):
    import warnings

    warnings.simplefilter("ignore")
    sys.path.insert(0, str(REPO))
    import anndata as ad
    import datasets

    datasets.disable_progress_bars()
    from course_helpers.tokenize import save, tokenize, tokenize_to_disk
    from course_helpers.vocab import GeneVocab

    vocab = GeneVocab.geneformer_v1(args.v1)
    src = args.input
    if args.memory:
        src = ad.read_h5ad(args.input)
    rss_before = _rss_mb("VmRSS")
    walls, cpus = [], []
    n_rows = n_tokens = 0
    for r in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="bench_tok_", dir=args.tmp)) / "ds"
        w, c = time.perf_counter(), time.process_time()
        if args.mode == "to_disk":
            ds = tokenize_to_disk(src, out, vocab, chunk_size=args.chunk_size, progress=False)
        else:
            ds = tokenize(src, vocab, chunk_size=args.chunk_size, progress=False)
            save(ds, out)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        n_rows = ds.num_rows
        n_tokens = (
            int(sum(ds["length"]))
            if n_rows <= 20_000
            else int(ds.data.column("length").to_numpy().sum())
        )
        del ds
        shutil.rmtree(out.parent, ignore_errors=True)
    print(
        json.dumps(
            {
                "cells": n_rows,
                "tokens": n_tokens,
                "wall_s": walls,
                "cpu_s": cpus,
                "rss_before_mb": rss_before,
                "peak_rss_mb": _rss_mb("VmHWM"),
            }
        )
    )


def run_child(mode, inp, v1, tmp, repeats, chunk_size, memory=False):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--mode",
        mode,
        "--input",
        str(inp),
        "--v1",
        str(v1),
        "--tmp",
        str(tmp),
        "--repeats",
        str(repeats),
        "--chunk-size",
        str(chunk_size),
    ]
    if memory:
        cmd.append("--memory")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# data preparation
# --------------------------------------------------------------------------------------------
def tile_fixture(fixture_h5ad, times, out):
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    a = ad.read_h5ad(fixture_h5ad)
    n = a.n_obs * times
    obs = pd.DataFrame(index=[f"cell_{i:06d}" for i in range(n)])
    obs["cell_id"] = obs.index
    obs["n_counts"] = np.tile(a.obs["n_counts"].to_numpy(), times)
    ad.AnnData(sp.vstack([a.X] * times, format="csr"), obs=obs, var=a.var.copy()).write_h5ad(out)


def generate(n_cells, var, out, genes_per_cell=300, seed=0):
    """Random sparse raw counts over the fixture's genes (~genes_per_cell detected per cell)."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n_genes = var.shape[0]
    block = 20_000
    mats, n_counts = [], []
    for s in range(0, n_cells, block):
        m = min(block, n_cells - s)
        k = rng.poisson(genes_per_cell, m).clip(20, n_genes)
        rows = np.repeat(np.arange(m), k)
        cols = rng.integers(0, n_genes, rows.size)
        data = rng.geometric(0.3, rows.size).astype(np.float32)
        x = sp.csr_matrix((data, (rows, cols)), shape=(m, n_genes))  # duplicates are summed
        x.sum_duplicates()
        mats.append(x)
        n_counts.append(np.asarray(x.sum(axis=1)).ravel() * 1.25)
    obs = pd.DataFrame(index=[f"cell_{i:07d}" for i in range(n_cells)])
    obs["cell_id"] = obs.index
    obs["n_counts"] = np.concatenate(n_counts).astype(np.float64)
    ad.AnnData(sp.vstack(mats, format="csr"), obs=obs, var=var.copy()).write_h5ad(out)


def fmt(name, r):
    best = min(range(len(r["wall_s"])), key=lambda i: r["wall_s"][i])
    w, c = r["wall_s"][best], r["cpu_s"][best]
    print(
        f"{name}: {r['cells']:,} cells, {r['tokens']:,} tokens | wall {w:.3f} s "
        f"(runs: {', '.join(f'{x:.3f}' for x in r['wall_s'])}) | cpu {c:.3f} s | "
        f"{r['cells'] / w:,.0f} cells/s | RSS before {r['rss_before_mb']:.0f} MB, "
        f"peak {r['peak_rss_mb']:.0f} MB",
        flush=True,
    )


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--shared", default=os.environ.get("COURSE_SHARED_DIR", str(REPO.parent / "shared"))
    )
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=512)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="tokenize_save", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--v1", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    shared = Path(args.shared)
    v1 = shared / "geneformer-v1"
    fixture = shared / "reference" / "tokenizer_v1" / "cells.h5ad"
    if not fixture.is_file():
        sys.exit(f"reference fixture not found at {fixture} (use --shared)")
    la = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} "
        f"(1/5/15 min); chunk_size {args.chunk_size}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench_tokenize_"))
    try:
        fmt(
            "(a) fixture, tokenize(.h5ad) + save",
            run_child("tokenize_save", fixture, v1, tmp, args.repeats, args.chunk_size),
        )

        tiled = tmp / "tiled50.h5ad"
        tile_fixture(fixture, 50, tiled)
        fmt(
            "(b) fixture x50, tokenize(.h5ad) + save",
            run_child("tokenize_save", tiled, v1, tmp, args.repeats, args.chunk_size),
        )
        fmt(
            "(b) fixture x50, tokenize(AnnData in memory) + save",
            run_child("tokenize_save", tiled, v1, tmp, args.repeats, args.chunk_size, memory=True),
        )
        tiled.unlink()

        import anndata as ad

        var = ad.read_h5ad(fixture, backed="r").var.copy()
        for n in (max(1, args.cells // 10), args.cells):
            gen = tmp / f"gen_{n}.h5ad"
            generate(n, var, gen)
            size = gen.stat().st_size / 2**20
            r = run_child(
                "to_disk", gen, v1, tmp, 1 if n > 20_000 else args.repeats, args.chunk_size
            )
            fmt(f"(c) generated {n:,} cells ({size:.0f} MB .h5ad), tokenize_to_disk(.h5ad)", r)
            gen.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
