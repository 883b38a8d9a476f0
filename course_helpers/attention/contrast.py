"""State contrast: the aggregation on two groups of cells and how it changes (:func:`state_contrast`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._utils import CourseInputError, renamed_parameters
from ..tokenize import TokenizedCells
from .aggregate import aggregate_attention
from .inputs import _DEFAULT_MAX_GENES, _gene_set
from .result import AttentionResult, _ranked_pairs

_CONTRAST_NORMS = ("log2", "diff", "z")


@dataclass
class StateContrast:
    """Attention in two groups of cells and how it changes (output of :func:`state_contrast`).

    Attributes
    ----------
    a, b : AttentionResult
        The streamed aggregations of group ``a`` (e.g. diseased) and group ``b`` (e.g. healthy),
        over the same genes in the same order.
    groups : tuple
        ``(name_a, name_b)``.
    groupby : str
        The dataset column the groups come from.
    min_count : int
        Pairs co-expressed in fewer cells than this in either group get no contrast (NaN).
    pseudocount : float
        Added to both means in the ``"log2"`` ratio (default: the median mean attention over
        all pairs with a value in both groups).

    Examples
    --------
    Usually made by :func:`state_contrast`; by hand, from two aggregations over genes A and B:

    >>> import numpy as np
    >>> from course_helpers.attention import AttentionResult
    >>> def result(sums):
    ...     return AttentionResult(sums=np.array(sums, dtype=float).reshape(1, 1, 2, 2),
    ...                            counts=np.full((2, 2), 5), tokens=np.array([10, 11]),
    ...                            genes=["A", "B"], layers=["mean"], heads=["mean"], n_cells=5)
    >>> sc = StateContrast(a=result([1, 3, 1, 1]), b=result([1, 1, 1, 1]),
    ...                    groups=("diseased", "healthy"), groupby="state")
    >>> sc.difference()                              # mean in a - mean in b
    target (key)      A    B
    source (query)
    A               0.0  0.4
    B               0.0  0.0
    >>> sc.to_edges(normalize="diff")[["source", "target", "score", "diff"]]
      source target  score  diff
    0      A      B    0.4   0.4
    1      B      A    0.0   0.0
    """

    a: AttentionResult
    b: AttentionResult
    groups: tuple
    groupby: str = ""
    min_count: int = 5
    pseudocount: float | None = None

    @property
    def genes(self) -> list:
        return list(self.a.genes)

    def _means(self, attn_layer, head, symmetric):
        if symmetric is None:
            symmetric = self.a.symmetric
        ma, sym = self.a._view(attn_layer, head, symmetric, self.min_count)
        mb, _ = self.b._view(attn_layer, head, symmetric, self.min_count)
        return ma, mb, sym

    def _pseudocount(self, ma, mb) -> float:
        if self.pseudocount is not None:
            return float(self.pseudocount)
        both = np.concatenate([ma[np.isfinite(ma) & np.isfinite(mb)],
                               mb[np.isfinite(ma) & np.isfinite(mb)]])
        return float(np.median(both)) if both.size else 1e-6

    @renamed_parameters(layer="attn_layer")
    def contrast_array(self, attn_layer=None, head=None, symmetric=None,
                       normalize: str = "log2") -> np.ndarray:
        """``(G, G)`` contrast, group ``a`` versus group ``b``; NaN where a pair is missing.

        ``normalize``: ``"diff"`` = mean_a - mean_b (raw attention units); ``"log2"`` =
        log2((mean_a + c) / (mean_b + c)), c = :attr:`pseudocount` - a fold change, so that pairs
        with high baseline attention (genes at the top of every cell) do not dominate;
        ``"z"`` = the difference divided by a robust spread over all pairs (1.4826 x the median
        absolute deviation of the differences): |z| > 3 means "far outside the typical change".
        """
        if normalize not in _CONTRAST_NORMS:
            raise CourseInputError(
                f"normalize={normalize!r} is not known. Fix: one of {list(_CONTRAST_NORMS)}."
            )
        ma, mb, _ = self._means(attn_layer, head, symmetric)
        if normalize == "diff":
            return ma - mb
        if normalize == "log2":
            c = self._pseudocount(ma, mb)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.log2((ma + c) / (mb + c))
        d = ma - mb
        fin = d[np.isfinite(d)]
        if fin.size == 0:
            return d
        mad = 1.4826 * float(np.median(np.abs(fin - np.median(fin))))
        scale = mad if mad > 0 else (float(np.std(fin)) or 1.0)
        return (d - float(np.median(fin))) / scale

    @renamed_parameters(layer="attn_layer")
    def difference(self, attn_layer=None, head=None, symmetric=None) -> pd.DataFrame:
        """mean attention in ``a`` minus in ``b`` (labelled; NaN where a pair is missing)."""
        return self.matrix(attn_layer, head, symmetric, normalize="diff")

    @renamed_parameters(layer="attn_layer")
    def matrix(self, attn_layer=None, head=None, symmetric=None,
               normalize: str = "log2") -> pd.DataFrame:
        """The contrast as a labelled gene x gene DataFrame (row = query, column = key)."""
        m = self.contrast_array(attn_layer, head, symmetric, normalize)
        sym = self.a.symmetric if symmetric is None else bool(symmetric)
        df = pd.DataFrame(m, index=self.genes, columns=self.genes)
        df.index.name = "gene" if sym else "source (query)"
        df.columns.name = "gene" if sym else "target (key)"
        return df

    @renamed_parameters(layer="attn_layer")
    def to_edges(self, attn_layer=None, head=None, symmetric=None, *, normalize: str = "log2",
                 direction: str = "both", top_k: int | None = None,
                 self_loops: bool = False) -> pd.DataFrame:
        """Gene pairs ranked by how much their attention changes between the groups.

        Returns ``source, target, score, mean_<a>, mean_<b>, diff, n_cells_<a>, n_cells_<b>``.
        ``score`` is the normalised contrast for ``direction="up"`` (higher in ``a``) and
        ``"down"`` (its negative: higher = lower in ``a``), or its absolute value for
        ``"both"`` (the sign stays in ``diff``).  Sorted by ``score``, highest first.
        """
        if direction not in ("both", "up", "down"):
            raise CourseInputError(
                f"direction={direction!r} is not known. Fix: 'both', 'up' or 'down'.")
        c = self.contrast_array(attn_layer, head, symmetric, normalize)
        ma, mb, sym = self._means(attn_layer, head, symmetric)
        signed = np.abs(c) if direction == "both" else (c if direction == "up" else -c)
        i, j, score = _ranked_pairs(signed, np.isfinite(c), symmetric=sym,
                                    self_loops=self_loops, top_k=top_k)
        genes = np.asarray(self.genes, dtype=object)
        na, nb = (str(g) for g in self.groups)
        return pd.DataFrame({
            "source": genes[i], "target": genes[j], "score": score,
            f"mean_{na}": ma[i, j], f"mean_{nb}": mb[i, j], "diff": ma[i, j] - mb[i, j],
            f"n_cells_{na}": self.a.counts[i, j], f"n_cells_{nb}": self.b.counts[i, j],
        }).reset_index(drop=True)

    @renamed_parameters(layer="attn_layer")
    def gene_scores(self, attn_layer=None, head=None, *, normalize: str = "log2") -> pd.DataFrame:
        """Per gene: how much the attention of its pairs changes (a blind read-out of the state).

        Returns ``mean_abs`` (mean |contrast| over its partners, as query and as key),
        ``up`` / ``down`` (mean positive / negative part), ``n_partners``, ``frac_cells_<a>`` and
        ``frac_cells_<b>`` (fraction of each group's cells expressing the gene: a gene switched on
        in only one group has no pairs in the other, hence no contrast - look here instead).
        Sorted by ``mean_abs``.
        """
        c = self.contrast_array(attn_layer, head, False, normalize)
        both = np.concatenate([c, c.T], axis=1)
        fin = np.isfinite(both)
        with np.errstate(invalid="ignore"):
            n = fin.sum(1)
            mean_abs = np.where(n > 0, np.nansum(np.abs(both), 1) / np.maximum(n, 1), np.nan)
            up = np.where(n > 0, np.nansum(np.clip(both, 0, None), 1) / np.maximum(n, 1), np.nan)
            down = np.where(n > 0, np.nansum(np.clip(both, None, 0), 1) / np.maximum(n, 1),
                            np.nan)
        na, nb = (str(g) for g in self.groups)
        df = pd.DataFrame({
            "mean_abs": mean_abs, "up": up, "down": down, "n_partners": n // 2,
            f"frac_cells_{na}": self.a.counts.diagonal() / max(self.a.n_cells, 1),
            f"frac_cells_{nb}": self.b.counts.diagonal() / max(self.b.n_cells, 1),
        }, index=pd.Index(self.genes, name="gene"))
        return df.sort_values("mean_abs", ascending=False, kind="stable", na_position="last")

    def pooled(self) -> AttentionResult:
        """Both groups together: the :class:`AttentionResult` of all their cells (sums and counts
        added), exactly what :func:`aggregate_attention` gives on the union - so a chapter that
        needs the contrast and the pooled network pays for one pass only."""
        info = dict(self.a.info)
        info.pop("group", None)
        info["pooled_groups"] = {self.groupby: list(self.groups)}
        info["seconds"] = round(float(self.a.info.get("seconds", 0))
                                + float(self.b.info.get("seconds", 0)), 3)
        info["max_len"] = max(int(self.a.info.get("max_len", 0)),
                              int(self.b.info.get("max_len", 0)))
        return AttentionResult(
            sums=self.a.sums + self.b.sums, counts=self.a.counts + self.b.counts,
            tokens=self.a.tokens.copy(), genes=list(self.a.genes), layers=list(self.a.layers),
            heads=list(self.a.heads), method=self.a.method,
            n_cells=self.a.n_cells + self.b.n_cells, symmetric=self.a.symmetric, info=info)

    @property
    def nbytes(self) -> int:
        """Memory held by both accumulators (independent of the number of cells)."""
        return self.a.nbytes + self.b.nbytes

    def __repr__(self) -> str:
        return (f"StateContrast({self.groupby}: {self.groups[0]!r} ({self.a.n_cells} cells) vs "
                f"{self.groups[1]!r} ({self.b.n_cells} cells), genes={len(self.genes)}, "
                f"method={self.a.method!r}, {self.nbytes / 2**20:.1f} MiB)")


@renamed_parameters(layers="attn_layers")
def state_contrast(
    model,
    dataset,
    groupby: str,
    groups,
    *,
    genes=None,
    attn_layers="all",
    heads="all",
    method: str = "weight",
    average="all",
    batch_size: int = 8,
    max_cells: int | None = None,
    min_count: int = 5,
    pseudocount: float | None = None,
    symmetric: bool = False,
    max_genes: int = _DEFAULT_MAX_GENES,
    progress: bool = True,
    seed: int = 0,
    max_memory=None,
    switch_to_eager: bool = True,
) -> StateContrast:
    """State-contrast attention network: how attention between genes changes with a state.

    Runs :func:`aggregate_attention` - the same streaming aggregation, so memory is still
    independent of the number of cells (two sets of accumulators) - once on the cells of group
    ``a`` and once on those of group ``b`` (e.g. diseased and healthy cardiomyocytes), over the
    **same genes**, and returns both with their difference.  The contrast is normalised
    (``normalize="log2"`` fold change by default, see :meth:`StateContrast.contrast_array`) so
    that gene pairs can be ranked by how much their attention changes.  Compare cells of one
    cell type only: between cell types nearly every pair changes.

    Attention also changes when only the ranks change (a gene that moves up in the sentence
    attends and is attended differently), so a changed pair is a lead about what the model sees
    changing, not evidence of rewired regulation.

    Parameters
    ----------
    model, dataset
        As :func:`aggregate_attention`; ``dataset`` needs the ``groupby`` column.
    groupby
        Column holding the state, e.g. ``"state"``.
    groups
        ``(a, b)``: the contrast is ``a`` versus ``b`` (positive = more attention in ``a``).
        Restrict the dataset to one cell type first (``ds.filter`` / ``ds.select``).
    genes
        Gene set (as :func:`aggregate_attention`); default: the ``max_genes`` genes most often
        present in the cells of both groups together.
    attn_layers, heads, method, average, batch_size, max_memory, switch_to_eager
        As :func:`aggregate_attention` (``average="all"`` by default: one matrix per group).
    max_cells
        At most this many cells **per group** (seeded random subset).
    min_count
        Pairs co-expressed in fewer cells of either group get NaN (no contrast).
    pseudocount
        For the log2 ratio; default: median pair mean.
    symmetric
        Default view (directed, or ``(A + A.T) / 2``).

    Returns
    -------
    StateContrast
        ``.difference()``, ``.matrix(normalize=...)``, ``.to_edges(top_k=...)``,
        ``.gene_scores()``, ``.a`` / ``.b`` (the two :class:`AttentionResult`).

    Examples
    --------
    >>> import course_helpers as ch
    >>> model = ch.model.load_model("teaching")
    >>> tissue = ch.data.load_tissue()
    >>> cm = tissue[(tissue.obs["cell_type"] == "cardiomyocyte").to_numpy()][:12]
    >>> ds = ch.tokenize.tokenize(cm, model.gene_vocab, cell_attrs=("state",), progress=False)
    >>> sc = state_contrast(model, ds, "state", ("diseased", "healthy"),
    ...                     genes=["GATA4", "NPPA", "TNNT2", "ACTC1", "MYH6"], min_count=2,
    ...                     progress=False)
    >>> sc
    StateContrast(state: 'diseased' (6 cells) vs 'healthy' (6 cells), genes=5, method='weight',
    0.0 MiB)
    >>> sc.to_edges(top_k=3).columns.tolist()
    ['source', 'target', 'score', 'mean_diseased', 'mean_healthy', 'diff', 'n_cells_diseased',
     'n_cells_healthy']
    >>> sc.gene_scores().columns.tolist()
    ['mean_abs', 'up', 'down', 'n_partners', 'frac_cells_diseased', 'frac_cells_healthy']
    """
    cells = TokenizedCells(dataset)
    if isinstance(groups, str) or len(list(groups)) != 2:
        raise CourseInputError(
            f"groups must be two group names (a, b), got {groups!r}. Fix: e.g. "
            "groups=('diseased', 'healthy')."
        )
    ga, gb = (str(g) for g in groups)
    if ga == gb:
        raise CourseInputError(f"groups are the same ({ga!r}). Fix: name two different groups.")
    col = cells.get(groupby)
    if col is None:
        raise CourseInputError(
            f"The dataset has no column {groupby!r} (columns: {cells.columns}). Fix: keep it when "
            f"tokenizing, e.g. tokenize(adata, vocab, cell_attrs=('cell_id', {groupby!r}))."
        )
    labels = np.asarray([str(v) for v in col], dtype=object)
    present = list(dict.fromkeys(labels.tolist()))
    idx = {}
    for g in (ga, gb):
        sel = np.flatnonzero(labels == g)
        if sel.size == 0:
            raise CourseInputError(
                f"No cell has {groupby} == {g!r} (values: {present[:20]}). Fix: use one of those "
                "names (case-sensitive)."
            )
        if max_cells is not None and int(max_cells) < sel.size:
            if int(max_cells) < 1:
                raise CourseInputError(f"max_cells must be at least 1, got {max_cells}.")
            rng = np.random.default_rng(seed)
            sel = np.sort(rng.choice(sel, size=int(max_cells), replace=False))
        idx[g] = sel
    if int(min_count) < 1:
        raise CourseInputError(f"min_count must be at least 1, got {min_count}.")
    both = np.sort(np.concatenate([idx[ga], idx[gb]]))
    tokens = _gene_set(model, cells, both, genes, max_genes, what="state_contrast",
                       note=" in both groups together")
    tokens = [int(t) for t in tokens]
    results = {}
    for g in (ga, gb):
        results[g] = aggregate_attention(
            model, cells.subset(idx[g]), genes=tokens, attn_layers=attn_layers, heads=heads,
            method=method, batch_size=batch_size, symmetric=symmetric, progress=progress,
            seed=seed, average=average, max_memory=max_memory, switch_to_eager=switch_to_eager)
        results[g].info["group"] = {groupby: g}
    return StateContrast(a=results[ga], b=results[gb], groups=(ga, gb), groupby=str(groupby),
                         min_count=int(min_count), pseudocount=pseudocount)
