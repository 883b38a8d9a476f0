"""Do two regulators act together? A 2 x 2 interaction test on counts or log scale."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .inputs import _check_counts, _matrix, _normalize_total, _symbols, _to_ids

_PAIR_GROUPS = ("both", "a_only", "b_only", "neither")


def pair_interaction(adata, gene_a, gene_b, genes=None, *, scale: str = "counts",
                     layer: str | None = None, target_sum: float = 1e4,
                     min_cells: int = 10) -> pd.DataFrame:
    """Do two regulators act together on their targets? A 2 x 2 interaction from the counts.

    Cells are split by whether ``gene_a`` and ``gene_b`` are detected (count > 0) into four
    groups -- both, ``a`` only, ``b`` only, neither -- and for every gene the mean expression of
    each group is compared: ``interaction = both - a_only - b_only + neither``. Positive means
    the two together raise the gene more than their separate effects added up (an AND gate);
    ``relative`` divides it by the sum of the two separate effects.

    Whether two effects "add up" depends on the scale: a target whose rate is *proportional to
    the product* of two activities is strongly synergistic on counts and exactly additive on a
    log scale (log(ab) = log a + log b). ``scale`` picks the scale, so both views can be shown.

    A plain group-mean contrast is used instead of a regression library because it is the
    definition itself, vectorised over all genes at once (one pass over the matrix).

    Parameters
    ----------
    adata
        AnnData with raw integer counts (``X`` or ``layer``); pass the cells you want to compare
        (e.g. one cell type).
    gene_a, gene_b
        The two regulators (Ensembl IDs or symbols).
    genes
        Genes to report (IDs or symbols); ``None``: all genes except the two regulators.
    scale
        ``"counts"``: counts per ``target_sum`` (linear). ``"log"``: ``log1p`` of those.
    layer
        Layer with the counts (``None``: ``adata.X``).
    target_sum
        Counts per cell after normalisation.
    min_cells
        Each of the four groups needs at least this many cells.

    Returns
    -------
    pandas.DataFrame
        One row per gene, sorted by ``z`` (largest first): ``gene``, ``gene_symbol``,
        ``both``, ``a_only``, ``b_only``, ``neither`` (group means), ``interaction``,
        ``relative`` and ``z`` (interaction over its standard error). ``attrs["n_cells"]`` holds
        the group sizes, ``attrs["scale"]`` the scale.

    Raises
    ------
    CourseInputError
        Unknown genes, non-count data, an unknown ``scale``, or a group with fewer than
        ``min_cells`` cells (the message gives the four sizes).

    Examples
    --------
    >>> import course_helpers as ch
    >>> adata = ch.data.load_tissue()
    >>> cm = adata[adata.obs["cell_type"] == "cardiomyocyte"]
    >>> t = pair_interaction(cm, "GATA4", "TBX5", ["NPPA", "MYH7"])
    >>> list(t.columns[:6])
    ['gene', 'gene_symbol', 'both', 'a_only', 'b_only', 'neither']
    """
    if scale not in ("counts", "log"):
        raise CourseInputError(f"scale must be 'counts' or 'log', got {scale!r}.")
    if isinstance(min_cells, bool) or not isinstance(min_cells, (int, np.integer)) or min_cells < 2:
        raise CourseInputError(f"min_cells must be an integer >= 2, got {min_cells!r}.")
    X = _matrix(adata, layer)
    _check_counts(X, layer)
    pair, missing = _to_ids(adata, [gene_a, gene_b])
    if missing:
        raise CourseInputError(
            f"Regulator(s) {missing} not found in this AnnData. Fix: pass Ensembl IDs from "
            "adata.var_names or symbols from adata.var['gene_symbol']."
        )
    if len(pair) != 2:
        raise CourseInputError(f"gene_a and gene_b name the same gene ({gene_a!r}).")
    names = pd.Index(adata.var_names.astype(str))
    ia, ib = names.get_loc(pair[0]), names.get_loc(pair[1])
    if genes is None:
        cols = np.setdiff1d(np.arange(len(names)), [ia, ib])
    else:
        if isinstance(genes, str):
            genes = [genes]
        found, missing = _to_ids(adata, genes)
        if missing:
            raise CourseInputError(
                f"{len(missing)} gene(s) not found, e.g. {missing[:5]}. Fix: use Ensembl IDs from "
                "adata.var_names or symbols from adata.var['gene_symbol']."
            )
        cols = names.get_indexer(found)
    Y = _normalize_total(X, target_sum)  # detection is unchanged by scaling
    a = np.asarray(Y[:, ia].todense()).ravel() > 0
    b = np.asarray(Y[:, ib].todense()).ravel() > 0
    masks = {"both": a & b, "a_only": a & ~b, "b_only": ~a & b, "neither": ~a & ~b}
    sizes = {k: int(m.sum()) for k, m in masks.items()}
    if min(sizes.values()) < min_cells:
        raise CourseInputError(
            f"Too few cells in a group for ({gene_a}, {gene_b}): {sizes} (need >= {min_cells} "
            "each). Fix: pass more cells, a pair whose genes are each missing from some cells, "
            "or a smaller min_cells."
        )
    Y = Y[:, cols]
    if scale == "log":
        np.log1p(Y.data, out=Y.data)
    means, var_n = {}, {}
    for k, m in masks.items():
        sub = Y[m]
        mu = np.asarray(sub.mean(axis=0)).ravel()
        sq = np.asarray(sub.multiply(sub).mean(axis=0)).ravel()
        n = sizes[k]
        means[k] = mu
        var_n[k] = np.maximum(sq - mu**2, 0) * n / (n - 1) / n  # variance of the group mean
    inter = means["both"] - means["a_only"] - means["b_only"] + means["neither"]
    main = (means["a_only"] - means["neither"]) + (means["b_only"] - means["neither"])
    se = np.sqrt(sum(var_n.values()))
    sym = _symbols(adata)
    out = pd.DataFrame({"gene": names[cols].to_numpy(dtype=object),
                        "gene_symbol": sym.iloc[cols].to_numpy(dtype=object),
                        **{k: means[k] for k in _PAIR_GROUPS},
                        "interaction": inter,
                        "relative": np.divide(inter, main, out=np.full_like(inter, np.nan),
                                              where=np.abs(main) > 1e-12),
                        "z": np.divide(inter, se, out=np.zeros_like(inter), where=se > 0)})
    out = out.sort_values("z", ascending=False, kind="stable").reset_index(drop=True)
    out.attrs["n_cells"] = sizes
    out.attrs["scale"] = scale
    return out
