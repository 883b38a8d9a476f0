"""The engine: embed unperturbed cells and their perturbed copies, and compare them.

Copies of cells of similar length share forward passes, only the encoder runs, each unperturbed
cell is embedded once, and cosines are computed on the device in float64.
"""
from __future__ import annotations

import numpy as np

from .._utils import CourseInputError
from .._utils import progress as _progress
from ..model import ModelFacts, hidden_states, length_sorted_batches, pad_batch
from .copies import _Block
from .selection import _Selection

#: Perturbed copies collected before they are sorted by length and run (as multiples of
#: ``batch_size``): large enough that cells of similar length share full batches.
_CHUNK_BATCHES = 8


class _Engine:
    """Runs blocks of perturbed cells through the encoder and fills in their results."""

    def __init__(
        self, info: ModelFacts, batch_size: int, state_mat, want_genes: bool, context_only=False,
        cls_mode=False,
    ):
        import torch

        if int(batch_size) < 1:
            raise CourseInputError(f"batch_size must be at least 1, got {batch_size}.")
        self.info = info
        self.batch_size = int(batch_size)
        self.dev = info.device
        # float64 for the cosines (MPS has no float64)
        self.cdtype = torch.float32 if info.device.type == "mps" else torch.float64
        self.specials_t = torch.as_tensor(info.special_ids, device=self.dev)
        self.state_n = None  # (n_states, hidden) state embeddings
        if state_mat is not None:
            self.state_n = torch.as_tensor(state_mat, dtype=self.cdtype, device=self.dev)
        self.want_genes = want_genes
        self.context_only = bool(context_only)
        self.cls_mode = bool(cls_mode)  # measure on the <cls> position (position 0)
        self.gene_parts: list[tuple] = []

    # -- helpers -----------------------------------------------------------------------------
    def _hidden(self, ids, mask):
        h = hidden_states(self.info.model, ids, mask, emb_layer=self.info.emb_layer)
        return h

    def _cos_states(self, cemb):
        """cosine of cell embeddings (B, d) with every state (S, d) -> (B, S)."""
        import torch

        dot = cemb @ self.state_n.T
        nn = (cemb * cemb).sum(-1, keepdim=True) * (self.state_n * self.state_n).sum(-1)[None]
        return dot / torch.sqrt(torch.clamp(nn, min=1e-16))

    def _gene_mask(self, ids, valid):
        import torch

        return valid & ~torch.isin(ids, self.specials_t)

    # -- bases ----------------------------------------------------------------------------
    def _embed_bases(self, seqs):
        """Embeddings (concatenated, cdtype), offsets and state cosines of the base cells."""
        import torch

        lens = np.asarray([len(s) for s in seqs], dtype=np.int64)
        parts = [None] * len(seqs)
        cell_cos = torch.zeros(
            (len(seqs), 0 if self.state_n is None else len(self.state_n)),
            dtype=self.cdtype,
            device=self.dev,
        )
        for idx in length_sorted_batches(lens, self.batch_size):
            ids, mask = pad_batch([seqs[i] for i in idx], self.info.pad_id, self.dev)
            h = self._hidden(ids, mask).to(self.cdtype)
            for r, i in enumerate(idx):
                parts[i] = h[r, : lens[i]]
            if self.state_n is not None:
                if self.cls_mode:
                    cemb = h[:, 0]
                else:
                    keep = self._gene_mask(ids, mask.bool())
                    w = keep.unsqueeze(-1).to(self.cdtype)
                    cemb = (h * w).sum(1) / keep.sum(1, keepdim=True).to(self.cdtype)
                cell_cos[torch.as_tensor(idx, device=self.dev)] = self._cos_states(cemb)
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        return torch.cat(parts, 0), offsets, cell_cos

    # -- one chunk ------------------------------------------------------------------------
    def run(self, blocks: list[_Block], xs: list[np.ndarray]):
        import torch

        if not blocks:
            return
        info = self.info
        # bases: each (cell, trunc) pair once
        base_key: dict[tuple[int, int], int] = {}
        seqs = []
        for b in blocks:
            key = (b.cell, b.trunc)
            if key not in base_key:
                x = xs[b.cell]
                if b.trunc:
                    has_eos = info.eos_id is not None and x[-1] == info.eos_id
                    x = (
                        np.concatenate([x[: len(x) - 1 - b.trunc], x[-1:]])
                        if has_eos
                        else x[: len(x) - b.trunc]
                    )
                base_key[key] = len(seqs)
                seqs.append(x)
        H, offsets, base_cos = self._embed_bases(seqs)

        # all perturbed copies of the chunk, padded to the longest
        lens = np.concatenate([np.full(b.m, b.tokens.shape[1]) for b in blocks])
        L = int(lens.max())
        R = len(lens)
        tok = np.full((R, L), info.pad_id, dtype=np.int64)
        src = np.full((R, L), -1, dtype=np.int64)
        cmp = np.zeros((R, L), dtype=bool)
        goff = np.empty(R, dtype=np.int64)
        bidx = np.empty(R, dtype=np.int64)
        r0 = 0
        for b in blocks:
            m, lb = b.tokens.shape
            tok[r0 : r0 + m, :lb] = b.tokens
            src[r0 : r0 + m, :lb] = b.src
            cmp[r0 : r0 + m, :lb] = b.cmp
            bi = base_key[(b.cell, b.trunc)]
            goff[r0 : r0 + m] = offsets[bi]
            bidx[r0 : r0 + m] = bi
            b.tokens = b.src = b.cmp = None  # free memory
            r0 += m
        cos_out = np.empty(R, dtype=np.float64)
        shift_out = None if self.state_n is None else np.empty((R, len(self.state_n)))
        rows_global = np.concatenate([b.first_row + np.arange(b.m) for b in blocks])

        order = np.argsort(-lens, kind="stable")
        for s in range(0, R, self.batch_size):
            idx = order[s : s + self.batch_size]
            lb = int(lens[idx].max())
            ids = torch.from_numpy(tok[idx, :lb]).to(self.dev)
            ragged = bool((lens[idx] != lb).any())
            if ragged:
                valid = torch.from_numpy(np.arange(lb)[None, :] < lens[idx][:, None]).to(self.dev)
                e = self._hidden(ids, valid.long())
            else:
                valid = torch.ones(ids.shape, dtype=torch.bool, device=self.dev)
                e = self._hidden(ids, None)
            e = e.to(self.cdtype)
            srcb = torch.from_numpy(src[idx, :lb]).to(self.dev)
            cmpb = torch.from_numpy(cmp[idx, :lb]).to(self.dev)
            gidx = torch.from_numpy(goff[idx]).to(self.dev)[:, None] + srcb.clamp(min=0)
            o = H[gidx]
            dot = (e * o).sum(-1)
            nn = (e * e).sum(-1) * (o * o).sum(-1)
            cos = dot / torch.sqrt(torch.clamp(nn, min=1e-16))
            cos = torch.where(cmpb, cos, torch.zeros((), dtype=cos.dtype, device=cos.device))
            ncmp = cmpb.sum(1)
            mean = cos.sum(1) / ncmp.clamp(min=1).to(cos.dtype)
            mean = torch.where(ncmp > 0, mean, torch.full_like(mean, float("nan")))
            if self.cls_mode:
                # <cls> stays at position 0 of every perturbed copy and of its base
                pc = e[:, 0]
                oc = H[torch.from_numpy(goff[idx]).to(self.dev)]
                den = torch.sqrt(torch.clamp((pc * pc).sum(-1) * (oc * oc).sum(-1), min=1e-16))
                cos_out[idx] = ((pc * oc).sum(-1) / den).cpu().numpy()
                if self.state_n is not None:
                    sh = self._cos_states(pc) - base_cos[torch.from_numpy(bidx[idx]).to(self.dev)]
                    shift_out[idx] = sh.cpu().numpy()
            else:
                cos_out[idx] = mean.cpu().numpy()
            if self.cls_mode or self.state_n is None:
                pass  # shifts done above, or no states
            elif self.context_only:
                # both cells over the same genes: those compared (not perturbed, not special)
                w = cmpb.unsqueeze(-1).to(self.cdtype)
                n_w = ncmp.clamp(min=1).unsqueeze(-1).to(self.cdtype)
                sh = self._cos_states((e * w).sum(1) / n_w) - self._cos_states((o * w).sum(1) / n_w)
                shift_out[idx] = sh.cpu().numpy()
            else:
                keep = self._gene_mask(ids, valid)
                w = keep.unsqueeze(-1).to(self.cdtype)
                cemb = (e * w).sum(1) / keep.sum(1, keepdim=True).to(self.cdtype)
                sh = self._cos_states(cemb) - base_cos[torch.from_numpy(bidx[idx]).to(self.dev)]
                shift_out[idx] = sh.cpu().numpy()
            if self.want_genes:
                rr, jj = torch.nonzero(cmpb, as_tuple=True)
                self.gene_parts.append(
                    (
                        rows_global[idx][rr.cpu().numpy()],
                        ids[rr, jj].cpu().numpy(),
                        srcb[rr, jj].cpu().numpy(),
                        cos[rr, jj].cpu().numpy(),
                    )
                )
        r0 = 0
        for b in blocks:
            b.cos = cos_out[r0 : r0 + b.m]
            if shift_out is not None:
                b.shift = shift_out[r0 : r0 + b.m]
            r0 += b.m


def _run(
    info: ModelFacts,
    sel: _Selection,
    make_blocks,
    batch_size,
    state_mat,
    want_genes,
    progress,
    desc,
    context_only=False,
    cls_mode=False,
) -> tuple[list[_Block], _Engine]:
    """Build blocks cell by cell (longest cells first) and run them in chunks."""
    import torch

    engine = _Engine(info, batch_size, state_mat, want_genes, context_only, cls_mode)
    model = info.model
    was_training = model.training
    model.eval()
    done: list[_Block] = []
    pending: list[_Block] = []
    n_pending = 0
    next_row = 0
    order = np.argsort(-np.asarray([len(x) for x in sel.xs]), kind="stable")
    bar = _progress(total=len(order), enabled=progress, desc=desc, unit="cell")
    cells_in_chunk = 0
    try:
        with torch.inference_mode():
            for ci in order:
                for b in make_blocks(int(ci), sel.xs[ci]):
                    b.first_row = next_row
                    next_row += b.m
                    pending.append(b)
                    n_pending += b.m
                cells_in_chunk += 1
                if n_pending >= _CHUNK_BATCHES * engine.batch_size:
                    engine.run(pending, sel.xs)
                    done += pending
                    pending, n_pending = [], 0
                    bar.update(cells_in_chunk)
                    cells_in_chunk = 0
            engine.run(pending, sel.xs)
            done += pending
            bar.update(cells_in_chunk)
    finally:
        bar.close()
        if was_training:
            model.train()
    return done, engine
