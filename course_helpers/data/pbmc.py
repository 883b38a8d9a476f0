"""Real PBMC counts: :func:`load_pbmc` (scanpy's bundled ``pbmc68k_reduced``, with Ensembl IDs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._utils import CourseInputError
from .design import TISSUE_DIR


def load_pbmc(*, map_to_ensembl: bool = True) -> anndata.AnnData:  # noqa: F821
    """Real PBMC raw counts from scanpy's bundled ``pbmc68k_reduced`` (no download).

    ``pbmc68k_reduced`` stores log-normalised values of 765 genes in ``.raw``; the integer
    counts are recovered exactly as ``round(expm1(raw.X) * n_counts / 1e4)`` (the stored values
    are rounded to 3 decimals, so the recovery is checked to be within 0.5 of an integer).

    Parameters
    ----------
    map_to_ensembl
        Use Ensembl IDs as ``var_names`` (needed by Geneformer). Symbols are mapped with a
        committed table derived from the Geneformer V1 gene-name dictionary, including renamed
        symbols (e.g. ``IGJ`` -> ``JCHAIN``); genes that cannot be mapped are dropped and listed
        in ``adata.uns["unmapped_symbols"]``. With ``False`` the symbols stay as ``var_names``.

    Returns
    -------
    anndata.AnnData
        700 cells; ``X`` CSR float32 integer counts; ``var``: ``gene_symbol``, ``ensembl_id``,
        ``mapping``; ``obs``: ``cell_id``, ``cell_type`` (= ``bulk_labels``), ``n_counts`` (total
        counts of the *whole* transcriptome, as the tokenizer needs), ``n_genes``,
        ``percent_mito``; ``obsm["X_umap"]``.

    Examples
    --------
    >>> pbmc = load_pbmc()
    >>> pbmc.n_obs
    700
    >>> pbmc.var_names[0].startswith("ENSG")
    True
    >>> bool((pbmc.X.data == pbmc.X.data.round()).all())
    True
    """
    import anndata as ad
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    raw = src.raw
    L = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    n_counts = src.obs["n_counts"].to_numpy(float)
    c = np.expm1(L.astype(np.float64)) * n_counts[:, None] / 1e4
    counts = np.rint(c)
    dev = float(np.abs(c - counts).max())
    if dev >= 0.25:  # pragma: no cover - guards against a changed scanpy file
        raise CourseInputError(
            f"pbmc68k_reduced counts do not recover to integers (max deviation {dev:.3f}). "
            "Fix: check your scanpy version's bundled dataset."
        )
    symbols = pd.Index(raw.var_names.astype(str))
    table = pd.read_csv(TISSUE_DIR / "pbmc68k_genes.tsv", sep="\t", keep_default_na=False)
    table = table.set_index("gene_symbol").reindex(symbols)
    var = pd.DataFrame(
        {
            "gene_symbol": symbols.to_numpy(),
            "ensembl_id": table["ensembl_id"].fillna("").to_numpy(),
            "mapping": table["mapping"].fillna("unmapped").to_numpy(),
        },
        index=symbols.to_numpy(),
    )
    obs = pd.DataFrame(
        {
            "cell_id": src.obs_names.astype(str),
            "cell_type": src.obs["bulk_labels"].astype("category").to_numpy(),
            "n_counts": n_counts.astype(np.float32),
            "n_genes": src.obs["n_genes"].to_numpy(),
            "percent_mito": src.obs["percent_mito"].to_numpy(),
        },
        index=src.obs_names.astype(str),
    )
    adata = ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
    adata.obsm["X_umap"] = np.asarray(src.obsm["X_umap"])
    adata.uns["source"] = (
        "scanpy.datasets.pbmc68k_reduced(): 700 PBMCs (10x, Zheng et al. 2017), 765 genes; "
        "counts = round(expm1(raw.X) * n_counts / 1e4)"
    )
    if map_to_ensembl:
        ok = var["ensembl_id"].to_numpy() != ""
        adata.uns["unmapped_symbols"] = list(var.index[~ok])
        adata = adata[:, ok].copy()
        adata.var_names = adata.var["ensembl_id"].to_numpy()
        if not adata.var_names.is_unique:  # pragma: no cover
            adata.var_names_make_unique()
    else:
        adata.uns["unmapped_symbols"] = list(var.index[var["ensembl_id"] == ""])
    return adata
