#!/usr/bin/env python
"""Simulate the known-truth teaching tissue and write it as ``.h5ad``.

The simulator itself lives in :mod:`course_helpers.data` (so learners can call
``course_helpers.data.simulate_tissue`` offline); this script is its command-line front end and
re-exports ``simulate_tissue`` so ``from simulate_tissue import simulate_tissue`` also works.

Examples::

    # the split shipped with the package (3,000 cells, seed 1) -> course_helpers/assets/tissue/
    python data_scripts/simulate_tissue.py --split chapter

    # the pretraining corpus (20,000 cells, seed 2), not committed
    python data_scripts/simulate_tissue.py --split pretrain --out /tmp/tissue_pretrain.h5ad

    # any size / seed
    python data_scripts/simulate_tissue.py --n-cells 5000 --seed 11 --out /tmp/t.h5ad

Without ``--out``, ``chapter`` goes to the package assets and the other splits to the cache that
``course_helpers.data.load_tissue`` reads (``$COURSE_HELPERS_CACHE`` or ``~/.cache/course_helpers``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from course_helpers.data import SPLITS, cache_dir, realism_table, simulate_tissue
from course_helpers.data.design import TISSUE_DIR, _read_design
from course_helpers.data.tissue import _write_h5ad

__all__ = ["main", "simulate_tissue"]


def default_path(split: str) -> Path:
    """Where ``load_tissue(split)`` looks for the split."""
    spec = SPLITS[split]
    if spec["shipped"]:
        return TISSUE_DIR / f"tissue_{split}.h5ad"
    fp = _read_design()["fingerprint"]
    return cache_dir() / f"tissue_{split}_n{spec['n_cells']}_s{spec['seed']}_{fp}.h5ad"


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=sorted(SPLITS), default=None,
                    help="named split (sets --n-cells and --seed)")
    ap.add_argument("--n-cells", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="output .h5ad path")
    ap.add_argument("--compression", default="gzip", choices=["gzip", "lzf", "none"])
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    if args.split is None and (args.n_cells is None or args.seed is None or args.out is None):
        ap.error("give --split, or all of --n-cells, --seed and --out")
    n_cells = args.n_cells if args.n_cells is not None else SPLITS[args.split]["n_cells"]
    seed = args.seed if args.seed is not None else SPLITS[args.split]["seed"]
    out = args.out
    if out is None:
        if args.split is None or args.n_cells is not None or args.seed is not None:
            ap.error("--out is needed when --n-cells/--seed differ from a named split")
        out = default_path(args.split)

    t0 = time.perf_counter()
    adata = simulate_tissue(n_cells, seed, progress=not args.quiet)
    t_sim = time.perf_counter() - t0
    _write_h5ad(adata, Path(out), compression=None if args.compression == "none"
                else args.compression)
    t_all = time.perf_counter() - t0
    if not args.quiet:
        row = realism_table(adata, name=args.split or "tissue").iloc[0]
        print(f"{n_cells} cells, seed {seed}: simulated in {t_sim:.1f} s, written in "
              f"{t_all - t_sim:.1f} s -> {out} ({Path(out).stat().st_size / 1e6:.1f} MB)")
        print(f"zero fraction {row['zero_fraction']:.3f}, median library "
              f"{row['library_size_median']:.0f}, median genes/cell "
              f"{row['genes_per_cell_median']:.0f}, low-quality "
              f"{adata.obs['low_quality'].mean():.1%}, diseased "
              f"{(adata.obs['state'] == 'diseased').mean():.1%}")
    return Path(out)


if __name__ == "__main__":
    main()
