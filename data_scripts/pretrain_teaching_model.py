"""Pretrain the course's teaching model: a small Geneformer-V1-recipe BERT on the teaching tissue.

The shipped model is trained in two stages (the commands and timings are on the model card)::

    # stage 1: the fixed 20,000-cell corpus, repeated (about 45 min on 2 shared CPU cores)
    python data_scripts/pretrain_teaching_model.py --out stage1
    # stage 2: continue on fresh simulated cells with wider within-type TF variation; resumable:
    # rerun the same command with --resume after an interruption (checkpoints in <out>.ckpt)
    python data_scripts/pretrain_teaching_model.py --init-from stage1 \
        --out course_helpers/assets/teaching_model --corpus stream --tf-noise 0.7 \
        --master-on-max 0.6 --steps 2500 --lr 1e-3 --eval-every 250 --ckpt-every 250

``--corpus stream`` draws fresh cells chunk by chunk (``data_scripts/corpus_stream.py``: a new
simulation seed per chunk, never a repeated cell); ``--init-from`` starts from a model folder's
weights (same vocabulary); the training log of that folder is kept as ``previous_stage``.
Checkpoints (weights, optimizer, scheduler, random states, curves) go to ``--ckpt-dir``
(default ``<out>.ckpt``) every ``--ckpt-every`` steps; ``--resume`` continues from there with the
same result as an uninterrupted run. The pilots that chose stage 2 are in ``data_scripts/README.md``.

What it does, step by step (the Geneformer V1 recipe, scaled down):

1. **Corpus.** ``course_helpers.data.load_tissue("pretrain")``; cells flagged ``low_quality`` are
   dropped (Genecorpus-30M was quality-filtered too). 10 % of the remaining cells are held out
   (5 % validation: loss curve; 5 % test: the model card numbers), chosen by a seeded permutation.
2. **Vocabulary and medians, the Geneformer way**, from the *training* cells only: for every tissue
   gene, the median of ``count / n_counts * 10,000`` over the cells where it is non-zero. Genes that
   are never detected have no median and get no token. Tokens: ``<pad>`` = 0, ``<mask>`` = 1, then
   the genes in Ensembl-ID order. Written as ``vocab.tsv`` (layout of CONTRIBUTING.md).
3. **Tokenize** with ``course_helpers.tokenize.tokenize`` (V1 rules: rank-value encoding, no special
   tokens), truncated to the first ``--input-size`` ranked genes; the same number is stored in the
   config as ``max_position_embeddings`` (and ``model_input_size``), so the course's tokenizer
   truncates teaching-model input the same way.
4. **Model.** ``transformers.BertForMaskedLM(BertConfig(...))``: ReLU, learned absolute positions,
   ``pad_token_id=0``, dropout 0.02, initializer range 0.02, word embeddings tied to the MLM decoder
   (as Geneformer V1). One deviation in *initialisation* only: the learned position embeddings
   start from a sine/cosine table scaled to the initializer range (``--pos-init sinusoidal``) instead
   of random values. Neighbouring rank positions then start similar; in pilot runs the model left
   the initial plateau at the unigram loss about twice as early (validation loss 6.64 after 200
   instead of 400 steps), which matters when the whole budget is a few thousand steps. ``--pos-init random`` gives the
   plain BERT initialisation.
5. **Objective.** Masked gene prediction: 15 % of the (non-padding) genes of each cell are chosen;
   of those 80 % become ``<mask>``, 10 % a random gene token, 10 % stay unchanged (the BERT rule
   Geneformer inherits from ``DataCollatorForLanguageModeling``). The loss is cross-entropy at the
   chosen positions only; to save time the MLM head is evaluated only at those positions (this
   gives exactly the loss ``BertForMaskedLM(labels=...)`` would).
6. **Training.** Plain PyTorch loop; length-grouped batches (mega-batches of 50 batches sorted by
   length, batch order shuffled) with dynamic padding; AdamW (weight decay 0.001, as Geneformer),
   linear warm-up then linear decay to 0; fixed number of steps; seeded. ``torch.set_num_threads``
   defaults to 2. CPU unless a GPU is available (``--device``).
7. **Outputs** in ``--out``: ``config.json`` + ``model.safetensors`` (``save_pretrained``),
   ``vocab.tsv`` and ``training_log.json`` (hyper-parameters, split cell ids, train and validation
   loss curves, wall time, machine load). The model card is written afterwards by
   ``data_scripts/evaluate_teaching_model.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "data_scripts") not in sys.path:  # corpus_stream.py, also when imported by path
    sys.path.insert(0, str(REPO / "data_scripts"))

SPLIT_SEED_OFFSET = 1  # the split uses seed + 1 so it does not share a stream with training
VAL_FRACTION = 0.05
TEST_FRACTION = 0.05
MASK_PROB = 0.15


# --------------------------------------------------------------------------------------------
# vocabulary and medians
# --------------------------------------------------------------------------------------------
def build_vocab(adata, medians):
    """GeneVocab with <pad>=0, <mask>=1, then every detected gene in Ensembl-ID order.

    ``medians`` is a Series (Ensembl ID -> non-zero median, NaN if never detected), as returned
    by ``course_helpers.data.nonzero_medians``. Returns ``(vocab, n_undetected)``.
    """
    from course_helpers.vocab import GeneVocab

    med = medians.dropna()
    genes = sorted(str(g) for g in med.index)
    token_dictionary = {"<pad>": 0, "<mask>": 1}
    token_dictionary.update({g: i + 2 for i, g in enumerate(genes)})
    gene_medians = {g: float(med[g]) for g in genes}
    names = {}
    if "gene_symbol" in adata.var:
        for ens, sym in zip(adata.var_names.astype(str), adata.var["gene_symbol"].astype(str)):
            if ens in gene_medians and sym and sym != "nan":
                names[sym] = ens
    vocab = GeneVocab.from_dicts(token_dictionary, gene_medians, names, name="teaching")
    return vocab, int(medians.isna().sum())


# --------------------------------------------------------------------------------------------
# data handling
# --------------------------------------------------------------------------------------------
class FlatCorpus:
    """Token sequences stored as one flat int32 array + offsets (cheap to index, no Python lists)."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values = values.astype(np.int64, copy=False)
        self.offsets = offsets.astype(np.int64, copy=False)
        self.lengths = np.diff(self.offsets)

    @classmethod
    def from_dataset(cls, ds) -> FlatCorpus:
        import pyarrow as pa

        col = ds.data.column("input_ids")
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if isinstance(arr, pa.ChunkedArray):  # pragma: no cover - older pyarrow
            arr = pa.concat_arrays(arr.chunks)
        offsets = np.asarray(arr.offsets, dtype=np.int64)
        values = np.asarray(arr.values, dtype=np.int64)
        values = values[offsets[0]:offsets[-1]]
        offsets = offsets - offsets[0]
        return cls(values, offsets)

    def subset(self, idx: np.ndarray) -> FlatCorpus:
        seqs = [self.values[self.offsets[i]:self.offsets[i + 1]] for i in idx]
        lens = np.array([len(s) for s in seqs], dtype=np.int64)
        offs = np.concatenate([[0], np.cumsum(lens)])
        vals = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        return FlatCorpus(vals, offs)

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, idx, max_len: int):
        """(ids, attention_mask) int64 numpy arrays, right-padded with 0 to the longest in idx."""
        lens = np.minimum(self.lengths[idx], max_len)
        L = int(lens.max())
        ids = np.zeros((len(idx), L), dtype=np.int64)
        for r, (i, n) in enumerate(zip(idx, lens)):
            ids[r, :n] = self.values[self.offsets[i]:self.offsets[i] + n]
        att = (np.arange(L)[None, :] < lens[:, None]).astype(np.int64)
        return ids, att


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           mega: int = 50) -> list[np.ndarray]:
    """One epoch of batches: shuffle, sort within mega-batches by length, shuffle batch order."""
    perm = rng.permutation(len(lengths))
    batches = []
    step = batch_size * mega
    for s in range(0, len(perm), step):
        chunk = perm[s:s + step]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def mask_tokens(ids: np.ndarray, att: np.ndarray, rng: np.random.Generator, vocab_size: int,
                mask_id: int = 1, n_special: int = 2, mask_prob: float = MASK_PROB,
                bert_rule: bool = True):
    """BERT/Geneformer masking. Returns (masked_ids, labels) with labels -100 where not chosen."""
    chosen = (rng.random(ids.shape) < mask_prob) & (att == 1)
    # every cell gets at least one masked gene
    none = ~chosen.any(1)
    if none.any():
        for r in np.flatnonzero(none):
            n = int(att[r].sum())
            chosen[r, rng.integers(n)] = True
    labels = np.where(chosen, ids, -100)
    out = ids.copy()
    if bert_rule:
        u = rng.random(ids.shape)
        to_mask = chosen & (u < 0.8)
        to_rand = chosen & (u >= 0.8) & (u < 0.9)
        out[to_mask] = mask_id
        out[to_rand] = rng.integers(n_special, vocab_size, size=int(to_rand.sum()))
    else:
        out[chosen] = mask_id
    return out, labels


def sinusoidal_positions(n_positions: int, dim: int, std: float):
    """Transformer sine/cosine position table rescaled to standard deviation ``std``.

    Used only as the *initial value* of the learned absolute position embeddings: neighbouring
    rank positions start similar, so what is learned at one position carries over to its
    neighbours early in training.
    """
    import torch

    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    i = torch.arange(0, dim, 2, dtype=torch.float64)
    ang = pos / (10000 ** (i / dim))
    pe = torch.zeros(n_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, : dim // 2])
    pe = pe / pe.std() * std
    return pe.float()


def masked_logits(model, input_ids, attention_mask, labels):
    """MLM logits at the labelled positions only: (n_masked, vocab) and their targets."""
    hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    sel = labels != -100
    return model.cls(hidden[sel]), labels[sel]


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "course_helpers/assets/teaching_model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", type=int, default=1024,
                   help="genes per cell kept (first ranks); = max_position_embeddings")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=None, help="default 2 x hidden")
    p.add_argument("--dropout", type=float, default=0.02)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-frac", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=0.001)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--n-val-loss-cells", type=int, default=256,
                   help="validation cells used for the loss curve (fixed masks)")
    p.add_argument("--plain-mask", action="store_true",
                   help="replace every chosen gene by <mask> instead of the 80/10/10 rule")
    p.add_argument("--pos-init", choices=("random", "sinusoidal"), default="sinusoidal",
                   help="initial values of the (learned, absolute) position embeddings")
    p.add_argument("--corpus", choices=("pretrain", "stream"), default="pretrain",
                   help="pretrain: the fixed 20,000-cell corpus, repeated in epochs; stream: fresh "
                        "simulated cells in chunks (data_scripts/corpus_stream.py), never repeated")
    p.add_argument("--chunk-cells", type=int, default=2000, help="stream: cells per chunk")
    p.add_argument("--stream-seed", type=int, default=100_000, help="stream: seed of chunk 0")
    p.add_argument("--tf-noise", type=float, default=None,
                   help="stream: sd of log-normal TF activity noise (simulator default 0.35)")
    p.add_argument("--master-on-max", type=float, default=None,
                   help="stream: cap on the fraction of cells in which a master regulator is on")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from the weights of this model folder (same vocabulary) instead "
                        "of a random initialisation")
    p.add_argument("--ckpt-dir", type=Path, default=None,
                   help="where checkpoints go (default: <out>.ckpt, next to the model folder)")
    p.add_argument("--ckpt-every", type=int, default=250, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --ckpt-dir (same arguments otherwise)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="testing: stop after this step as if interrupted (checkpoint written)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None, help="cpu / cuda / mps (default: cuda if available)")
    p.add_argument("--max-cells", type=int, default=None, help="debug: use only this many cells")
    p.add_argument("--smoke", action="store_true",
                   help="time a few steps, print s/step, write nothing")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.time()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    import torch
    from transformers import BertConfig, BertForMaskedLM

    from course_helpers.data import load_tissue, nonzero_medians
    from course_helpers.tokenize import tokenize
    from course_helpers.vocab import GeneVocab

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if args.device:
        device = torch.device(args.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    # ---- corpus and split ---------------------------------------------------------------
    print("loading the pretraining tissue ...", flush=True)
    adata = load_tissue("pretrain")
    n_all = adata.n_obs
    tissue_info = {k: (v.item() if hasattr(v, "item") else v)
                   for k, v in dict(adata.uns.get("teaching_tissue", {})).items()}
    lq = adata.obs["low_quality"].to_numpy().astype(bool) if "low_quality" in adata.obs else \
        np.zeros(n_all, bool)
    adata = adata[~lq].copy()
    if args.max_cells:
        adata = adata[: args.max_cells].copy()
    n = adata.n_obs
    rng_split = np.random.default_rng(args.seed + SPLIT_SEED_OFFSET)
    perm = rng_split.permutation(n)
    n_val, n_test = round(VAL_FRACTION * n), round(TEST_FRACTION * n)
    val_idx, test_idx, train_idx = perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]
    val_idx, test_idx, train_idx = np.sort(val_idx), np.sort(test_idx), np.sort(train_idx)
    print(f"  {n_all} cells, {int(lq.sum())} low-quality dropped, {len(train_idx)} train / "
          f"{len(val_idx)} validation / {len(test_idx)} test", flush=True)

    # ---- vocabulary -----------------------------------------------------------------------
    t0 = time.time()
    vocab, n_undetected = build_vocab(adata, nonzero_medians(adata[train_idx]))
    out = Path(args.out)
    if args.init_from is not None:
        # continue from a model: its vocabulary (tokens and medians) is kept exactly
        init_vocab = GeneVocab.from_tsv(Path(args.init_from) / "vocab.tsv")
        if init_vocab.token_to_id != vocab.token_to_id:
            raise SystemExit("--init-from: that model's vocabulary differs from the corpus's")
        vocab = init_vocab
    if not args.smoke:
        out.mkdir(parents=True, exist_ok=True)
        if args.init_from is None or Path(args.init_from).resolve() != out.resolve():
            vocab.to_tsv(out / "vocab.tsv")
        vocab = GeneVocab.from_tsv(out / "vocab.tsv")  # train with exactly what ships
    V = len(vocab)
    print(f"  vocabulary: {V} tokens ({V - 2} genes; {n_undetected} never-detected genes left out)"
          f" in {time.time() - t0:.1f} s", flush=True)

    # ---- tokenize ------------------------------------------------------------------------
    t0 = time.time()
    ds = tokenize(adata, vocab, model_version="V1", cell_attrs=("cell_id",),
                  model_input_size=args.input_size)
    corpus = FlatCorpus.from_dataset(ds)
    assert len(corpus) == n, (len(corpus), n)
    full_lengths = np.asarray((adata.X > 0).sum(1)).ravel()
    t_tok = time.time() - t0
    print(f"  tokenized {n} cells in {t_tok:.1f} s; length median {np.median(corpus.lengths):.0f},"
          f" max {corpus.lengths.max()} (before truncation: median "
          f"{np.median(full_lengths):.0f}, max {full_lengths.max()}, "
          f"{(full_lengths > args.input_size).mean():.1%} of cells truncated)", flush=True)
    train = corpus.subset(train_idx)
    val = corpus.subset(val_idx[: args.n_val_loss_cells])

    # ---- model --------------------------------------------------------------------------
    config = BertConfig(
        vocab_size=V, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=args.intermediate or 2 * args.hidden,
        hidden_act="relu", hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout, max_position_embeddings=args.input_size,
        position_embedding_type="absolute", type_vocab_size=2, initializer_range=0.02,
        layer_norm_eps=1e-12, pad_token_id=0, tie_word_embeddings=True,
    )
    config.model_input_size = args.input_size
    config.model_version = "teaching"
    torch.manual_seed(args.seed)
    model = BertForMaskedLM(config)
    if args.init_from is not None:
        from safetensors.torch import load_file

        state = load_file(str(Path(args.init_from) / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if "decoder." not in k]  # tied to embeddings / bias
        if missing or unexpected:
            raise SystemExit(f"--init-from: weights do not fit ({missing[:3]}, {unexpected[:3]})")
        model.tie_weights()
    elif args.pos_init == "sinusoidal":
        with torch.no_grad():
            model.bert.embeddings.position_embeddings.weight.copy_(
                sinusoidal_positions(args.input_size, args.hidden, config.initializer_range))
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  model: {n_params:,} parameters on {device}", flush=True)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if (p.ndim == 1 or "LayerNorm" in name) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                            betas=(0.9, 0.999), eps=1e-8)
    warm = max(1, int(args.warmup_frac * args.steps))

    def lr_lambda(step):
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (args.steps - step) / max(1, args.steps - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    loss_fn = torch.nn.CrossEntropyLoss()

    # fixed validation masks
    rng_val = np.random.default_rng(args.seed + 2)
    val_batches = []
    order = np.argsort(-val.lengths, kind="stable")
    for k in range(0, len(order), args.batch_size):
        b = order[k:k + args.batch_size]
        ids, att = val.padded(b, args.input_size)
        mids, lab = mask_tokens(ids, att, rng_val, V, bert_rule=False)
        val_batches.append((mids, att, lab))

    @torch.no_grad()
    def validate():
        model.eval()
        tot, cnt, top1 = 0.0, 0, 0
        for mids, att, lab in val_batches:
            lg, tg = masked_logits(model, torch.from_numpy(mids).to(device),
                                   torch.from_numpy(att).to(device),
                                   torch.from_numpy(lab).to(device))
            tot += float(torch.nn.functional.cross_entropy(lg.float(), tg, reduction="sum"))
            cnt += int(tg.numel())
            top1 += int((lg.argmax(-1) == tg).sum())
        model.train()
        return tot / cnt, top1 / cnt

    # ---- train ------------------------------------------------------------------------------
    rng = np.random.default_rng(args.seed + 3)
    log = {"step": [], "train_loss": [], "lr": [], "elapsed_s": [], "tokens_seen": []}
    vlog = {"step": [], "val_loss": [], "val_top1": [], "elapsed_s": []}
    n_steps = 5 if args.smoke else args.steps
    model.train()
    batches: list = []
    epoch, tokens_seen, cells_seen = 0, 0, 0
    run_loss, run_n = 0.0, 0
    # stream corpus: chunk k of fresh cells, its batches (seeded by (seed, k)) and the next one
    stream = {"chunk": -1, "corpus": None, "batches": [], "next": 0, "cells": 0}

    def stream_load(k):
        from corpus_stream import stream_chunk

        ad = stream_chunk(k, args.chunk_cells, args.stream_seed, args.tf_noise, args.master_on_max)
        c = FlatCorpus.from_dataset(tokenize(ad, vocab, model_version="V1", progress=False,
                                             model_input_size=args.input_size))
        stream.update(chunk=k, corpus=c, next=0, cells=stream["cells"] + len(c),
                      batches=length_grouped_batches(c.lengths, args.batch_size,
                                                     np.random.default_rng([args.seed, k])))

    ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else out.parent / (out.name + ".ckpt")
    start_step, wall_before, cpu_before = 0, 0.0, 0.0

    def save_checkpoint(step_done):
        from safetensors.torch import save_file

        ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()
                   if "decoder.weight" not in k}, str(tmp / "model.safetensors"))
        torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
        state = {"step": step_done, "epoch": epoch, "tokens_seen": tokens_seen,
                 "cells_seen": cells_seen, "rng": rng.bit_generator.state,
                 "batches": [np.asarray(b).tolist() for b in batches],
                 "stream_chunk": stream["chunk"], "stream_next": stream["next"],
                 "stream_cells": stream["cells"] - (len(stream["corpus"]) if stream["corpus"]
                                                    is not None else 0),
                 "wall_s": wall_before + time.time() - t_train,
                 "cpu_s": cpu_before + time.process_time() - cpu_train,
                 "log": log, "vlog": vlog, "args": {k: str(v) for k, v in vars(args).items()}}
        (tmp / "state.json").write_text(json.dumps(state))
        for f in tmp.iterdir():
            f.replace(ckpt_dir / f.name)
        tmp.rmdir()

    from tqdm.auto import tqdm

    if args.resume and (ckpt_dir / "state.json").is_file():
        from safetensors.torch import load_file

        st = json.loads((ckpt_dir / "state.json").read_text())
        model.load_state_dict(load_file(str(ckpt_dir / "model.safetensors")), strict=False)
        model.tie_weights()
        o = torch.load(ckpt_dir / "optim.pt", weights_only=True)
        opt.load_state_dict(o["opt"])
        sched.load_state_dict(o["sched"])
        if "torch_rng" in o:
            torch.set_rng_state(o["torch_rng"])  # dropout continues its random stream
        start_step, epoch = st["step"], st["epoch"]
        tokens_seen, cells_seen = st["tokens_seen"], st["cells_seen"]
        rng.bit_generator.state = st["rng"]
        batches = [np.asarray(b, dtype=np.int64) for b in st["batches"]]
        log, vlog = st["log"], st["vlog"]
        wall_before, cpu_before = st["wall_s"], st["cpu_s"]
        if st["stream_chunk"] >= 0:
            stream["cells"] = st["stream_cells"]
            stream_load(st["stream_chunk"])
            stream["next"] = st["stream_next"]
        print(f"  resumed from {ckpt_dir} at step {start_step}", flush=True)
    elif args.resume:
        print(f"  --resume: no checkpoint in {ckpt_dir}; starting at step 0", flush=True)

    t_train = time.time()
    cpu_train = time.process_time()
    if not args.smoke and start_step == 0:
        vl, va = validate()
        vlog["step"].append(0); vlog["val_loss"].append(vl); vlog["val_top1"].append(va)
        vlog["elapsed_s"].append(0.0)
    step_times = []
    bar = tqdm(range(start_step, n_steps), disable=not args.progress, desc="pretraining",
               mininterval=5)
    for step in bar:
        ts = time.time()
        if args.corpus == "stream":
            if stream["next"] >= len(stream["batches"]):
                stream_load(stream["chunk"] + 1)
                epoch = stream["chunk"] + 1
            b = stream["batches"][stream["next"]]
            stream["next"] += 1
            ids, att = stream["corpus"].padded(b, args.input_size)
        else:
            if not batches:
                batches = length_grouped_batches(train.lengths, args.batch_size, rng)
                epoch += 1
            b = batches.pop()
            ids, att = train.padded(b, args.input_size)
        mids, lab = mask_tokens(ids, att, rng, V, bert_rule=not args.plain_mask)
        lg, tg = masked_logits(model, torch.from_numpy(mids).to(device),
                               torch.from_numpy(att).to(device), torch.from_numpy(lab).to(device))
        loss = loss_fn(lg, tg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens_seen += int(att.sum())
        cells_seen += len(b)
        run_loss += float(loss.detach())
        run_n += 1
        step_times.append(time.time() - ts)
        if (step + 1) % 10 == 0 or step + 1 == n_steps:
            log["step"].append(step + 1)
            log["train_loss"].append(run_loss / run_n)
            log["lr"].append(sched.get_last_lr()[0])
            log["elapsed_s"].append(round(wall_before + time.time() - t_train, 2))
            log["tokens_seen"].append(tokens_seen)
            bar.set_postfix(loss=f"{run_loss / run_n:.3f}")
            run_loss, run_n = 0.0, 0
        if not args.smoke and ((step + 1) % args.eval_every == 0 or step + 1 == n_steps):
            vl, va = validate()
            vlog["step"].append(step + 1); vlog["val_loss"].append(vl); vlog["val_top1"].append(va)
            vlog["elapsed_s"].append(round(wall_before + time.time() - t_train, 2))
            tl = log["train_loss"][-1] if log["train_loss"] else float(loss.detach())
            print(f"  step {step + 1}/{n_steps}: train {tl:.3f}  "
                  f"val {vl:.3f}  val top-1 {va:.3f}  ({wall_before + time.time() - t_train:.0f} s)",
                  flush=True)
        if not args.smoke and ((step + 1) % args.ckpt_every == 0 or step + 1 == n_steps
                               or step + 1 == args.stop_after):
            save_checkpoint(step + 1)
        if args.stop_after and step + 1 == args.stop_after:
            print(f"  stopped after step {step + 1} (--stop-after); continue with --resume")
            return {}
    train_wall = wall_before + time.time() - t_train
    train_cpu = cpu_before + time.process_time() - cpu_train

    if args.smoke:
        st = np.array(step_times[1:])
        mean_len = float(np.mean(train.lengths))
        print(json.dumps({"s_per_step_mean": float(st.mean()), "s_per_step": st.round(3).tolist(),
                          "mean_train_length": mean_len, "n_params": n_params}))
        return {}

    # ---- save ----------------------------------------------------------------------------
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        if (out / extra).exists():
            (out / extra).unlink()
    for f in out.iterdir():  # save_pretrained may create 0600 files; ship them world-readable
        if f.is_file():
            f.chmod(0o644)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    total_wall = time.time() - t_start
    hp = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    hp["intermediate"] = config.intermediate_size
    hp["warmup_steps"] = warm
    hp["masking"] = ("plain: every chosen gene -> <mask>" if args.plain_mask else
                     "BERT 80/10/10: chosen genes -> <mask> 80 %, random gene 10 %, unchanged 10 %")
    hp["mask_prob"] = MASK_PROB
    hp["optimizer"] = "AdamW(betas=(0.9, 0.999), eps=1e-8), no decay on biases/LayerNorm"
    hp["schedule"] = "linear warm-up then linear decay to 0"
    hp["grad_clip"] = 1.0
    record = {
        "command": "python data_scripts/pretrain_teaching_model.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "hyperparameters": hp,
        "n_parameters": n_params,
        "corpus": {
            "source": 'course_helpers.data.load_tissue("pretrain")',
            "tissue": tissue_info,
            "n_cells_total": int(n_all), "n_low_quality_dropped": int(lq.sum()),
            "n_train": len(train_idx), "n_val": len(val_idx),
            "n_test": len(test_idx), "n_val_loss_cells": len(val),
            "n_genes_in_tissue": int(adata.n_vars), "n_gene_tokens": int(V - 2),
            "n_undetected_genes": n_undetected,
            "medians_from": "training cells only (low-quality cells excluded)",
            "length_median_truncated": float(np.median(corpus.lengths)),
            "length_max_truncated": int(corpus.lengths.max()),
            "length_median_full": float(np.median(full_lengths)),
            "length_max_full": int(full_lengths.max()),
            "frac_cells_truncated": float((full_lengths > args.input_size).mean()),
            "train_tokens_per_epoch": int(train.lengths.sum()),
        },
        "split": {
            "seed": args.seed + SPLIT_SEED_OFFSET,
            "val_cell_ids": adata.obs["cell_id"].to_numpy()[val_idx].astype(str).tolist(),
            "test_cell_ids": adata.obs["cell_id"].to_numpy()[test_idx].astype(str).tolist(),
        },
        "training": {
            "steps": n_steps, "epochs_started": epoch, "cells_seen": cells_seen,
            "tokens_seen": tokens_seen, "epochs_equivalent": cells_seen / len(train_idx),
            "corpus_mode": args.corpus,
            "stream": ({"chunks_used": stream["chunk"] + 1, "cells_simulated": stream["cells"],
                        "chunk_cells": args.chunk_cells, "first_seed": args.stream_seed,
                        "tf_noise": args.tf_noise, "master_on_max": args.master_on_max}
                       if args.corpus == "stream" else None),
            "init_from": str(args.init_from) if args.init_from else None,
            "train_wall_s": round(train_wall, 1), "total_wall_s": round(total_wall, 1),
            "train_cpu_s": round(train_cpu, 1),
            "note_cpu": "train_cpu_s = CPU seconds of this process while training (all threads);"
                        " train_wall_s is inflated when other jobs share the CPU",
            "tokenize_wall_s": round(t_tok, 1), "s_per_step_mean": float(np.mean(step_times)),
            "device": str(device), "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": load_end,
            "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.platform(),
        },
        "train_curve": log,
        "val_curve": vlog,
    }
    if args.init_from is not None and (Path(args.init_from) / "training_log.json").is_file():
        # the stage this run continued from (its own earlier stages are kept inside it)
        prev = json.loads((Path(args.init_from) / "training_log.json").read_text())
        record["previous_stage"] = {k: prev[k] for k in (
            "command", "hyperparameters", "n_parameters", "training", "train_curve", "val_curve",
            "previous_stage") if k in prev}
    with open(out / "training_log.json", "w") as fh:
        json.dump(record, fh, indent=1)
    print(f"saved to {out} (train {train_wall / 60:.1f} min, total {total_wall / 60:.1f} min)")
    return record


if __name__ == "__main__":
    main()
