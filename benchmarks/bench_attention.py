"""Time and peak memory of streamed attention aggregation for N and 4N cells.

Run:  .venv/bin/python benchmarks/bench_attention.py [--cells 40 --max-len 512 --genes 500 ...]
  or: .venv/bin/pytest benchmarks/bench_attention.py -m bench -s

Each configuration runs in a fresh Python process so that its peak resident memory
(``ru_maxrss``) is its own.  Printed per run: cells, wall time of ``aggregate_attention``
(one run, ``course_helpers.measure.best_of``), peak RSS of the process, the peak increase over
the resident memory just before the aggregation (``course_helpers.measure.PeakMemory``; model
loaded, cells built), the accumulator size (``AttentionResult.nbytes``) and
``estimate_attention_memory``.  With 4x the cells the time grows ~4x while the memory stays
flat: cells are streamed, only ``layers x heads x genes^2`` accumulators persist.

Model: ``--model random-v1`` (default: a randomly initialised BERT with the Geneformer V1-10M
shape - 6 layers, 4 heads, hidden 256, 25,426 tokens), ``--model teaching`` (the course's
model, once shipped) or a local model folder.  Cells are synthetic: lengths uniform in
``[max_len / 2, max_len]``, genes drawn with Zipf-like frequencies from a pool of 3,000.
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


def _model(name: str):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    if name == "random-v1":
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=25_426, hidden_size=256, num_hidden_layers=6,
                         num_attention_heads=4, intermediate_size=512, hidden_act="relu",
                         max_position_embeddings=2048, attn_implementation="eager")
        return BertForMaskedLM(cfg).eval()
    from course_helpers.model import load_model

    return load_model(name, output_attentions=True, device="cpu")


def _cells(n: int, max_len: int, vocab_size: int, seed: int = 0):
    import datasets

    rng = np.random.default_rng(seed)
    pool = rng.choice(np.arange(2, vocab_size), size=min(3000, vocab_size - 2), replace=False)
    p = 1.0 / np.arange(1, len(pool) + 1) ** 0.8
    p /= p.sum()
    ids = []
    for _ in range(n):
        L = int(rng.integers(max(1, max_len // 2), max_len + 1))
        ids.append([int(t) for t in rng.choice(pool, size=min(L, len(pool)), replace=False, p=p)])
    return datasets.Dataset.from_dict({"input_ids": ids, "length": [len(x) for x in ids]})


def child(args) -> dict:
    import torch

    from course_helpers.attention import aggregate_attention, estimate_attention_memory
    from course_helpers.measure import PeakMemory, best_of

    if args.threads:
        torch.set_num_threads(args.threads)
    model = _model(args.model)
    ds = _cells(args.n, args.max_len, int(model.config.vocab_size), seed=args.seed)
    # fixed gene set (the same for N and 4N cells): the most frequent genes of a reference sample
    ref = _cells(50, args.max_len, int(model.config.vocab_size), seed=12345)
    flat = np.concatenate(ref["input_ids"])
    vals, cnt = np.unique(flat, return_counts=True)
    genes = [int(v) for v in vals[np.argsort(-cnt, kind="stable")][: args.genes]]
    before = _rss_peak_mb()  # whole-process peak so far (read before PeakMemory resets it)
    out = {}

    def call():
        out["res"] = aggregate_attention(model, ds, genes=genes, method=args.method,
                                         batch_size=args.batch_size, progress=False,
                                         max_memory=args.max_memory)

    with PeakMemory() as mem:
        seconds = best_of(call, repeat=1, warmup=False)
    res = out["res"]
    increase = mem.peak_mb
    after = max(before, mem.base_mb + increase)
    est = estimate_attention_memory(
        args.n, int(max(ds["length"])), model.config.num_hidden_layers,
        model.config.num_attention_heads, batch_size=args.batch_size, n_genes=len(genes),
        method=args.method,
        hidden_size=model.config.hidden_size)
    return {"cells": args.n, "seconds": round(seconds, 2),
            "cells_per_s": round(args.n / seconds, 1),
            "peak_rss_mb": round(after, 1), "peak_increase_mb": round(increase, 1),
            "accumulators_mb": round(res.nbytes / 2**20, 1),
            "estimate_mb": round(est / 2**20, 1), "max_len": int(max(ds["length"])),
            "genes": len(genes), "torch_threads": torch.get_num_threads()}


def run(cells=40, max_len=512, genes=500, batch_size=8, method="weight", model="random-v1",
        threads=0, max_memory="8GB", seed=0) -> list[dict]:
    rows = []
    for n in (cells, 4 * cells):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--n", str(n),
               "--max-len", str(max_len), "--genes", str(genes), "--batch-size", str(batch_size),
               "--method", method, "--model", model, "--threads", str(threads),
               "--max-memory", str(max_memory), "--seed", str(seed)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def _print(rows, args) -> None:
    print(f"aggregate_attention benchmark - model {args.model}, method {args.method}, "
          f"batch {args.batch_size}, {rows[0]['genes']} genes, cells up to "
          f"{rows[0]['max_len']} genes; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {rows[0]['torch_threads']}")
    cols = ["cells", "seconds", "cells_per_s", "peak_rss_mb", "peak_increase_mb",
            "accumulators_mb", "estimate_mb"]
    print("  ".join(f"{c:>16}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>16}" for c in cols))
    a, b = rows
    print(f"4x cells: time x{b['seconds'] / max(a['seconds'], 1e-9):.2f}, peak RSS "
          f"x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}, accumulators identical: "
          f"{a['accumulators_mb'] == b['accumulators_mb']}")


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=40, help="N (the second run uses 4N)")
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--genes", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--method", default="weight", choices=["weight", "norm"])
    p.add_argument("--model", default="random-v1")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--max-memory", default="8GB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = run(args.cells, args.max_len, args.genes, args.batch_size, args.method, args.model,
               args.threads, args.max_memory, args.seed)
    _print(rows, args)


try:  # collected by `pytest -m bench` only
    import pytest

    @pytest.mark.bench
    def test_bench_attention_memory_flat():
        args = _parser().parse_args(["--cells", "16", "--max-len", "256", "--genes", "300"])
        rows = run(16, 256, 300, 8, "weight", "random-v1", 0, "8GB", 0)
        _print(rows, args)
        assert rows[0]["accumulators_mb"] == rows[1]["accumulators_mb"]
        assert rows[1]["peak_rss_mb"] < 1.25 * rows[0]["peak_rss_mb"]
except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":
    main()
