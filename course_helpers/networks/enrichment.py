"""Enrichment of modules (over-representation) and rankings (preranked GSEA) against a gene-set
library, with gseapy.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from .._utils import CourseInputError
from .gene_sets import _as_gene_sets


def _gseapy():
    try:
        import gseapy
    except ImportError as err:
        raise CourseInputError(
            "enrich() needs the optional package gseapy. Fix: pip install "
            "'course_helpers[baselines]' (or pip install gseapy==1.3.1)."
        ) from err
    return gseapy


def enrich(
    gene_sets,
    genes_or_ranking,
    *,
    universe: Iterable[str] | None = None,
    method: str = "ora",
    n_top: int | None = None,
    min_size: int = 3,
    max_size: int = 2000,
    permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Test a gene list (a module) or a ranked gene list against a gene-set library.

    Uses **gseapy** (Fang et al. 2023): ``method="ora"`` is ``gseapy.enrich`` run offline with
    our own library and background - Enrichr's one-sided hypergeometric test (over-
    representation only) with Benjamini-Hochberg FDR, the recipe of scGPT's gene-programme
    tutorial; ``method="prerank"`` is ``gseapy.prerank`` (GSEA on a ranking, permutation
    p-values).  Why gseapy rather than decoupler (which the course uses for AUCell/ULM):
    decoupler's ORA is built for per-cell matrices, tests both tails (depletion counts as
    "significant") and returns only FDR-adjusted p-values, whereas gseapy takes a plain gene
    list with an explicit background and a dict *or* GMT file, and reports the overlap genes,
    raw p-values and FDR.

    Switching to a public collection is one line - pass a GMT file instead of the tissue
    library (gene symbols: map your Ensembl IDs to symbols first, and use symbols for the
    universe too)::

        res = enrich("h.all.v2024.1.Hs.symbols.gmt", module_symbols, universe=all_symbols)

    (MSigDB hallmark or Reactome GMT files: gsea-msigdb.org, reactome.org; or
    ``gseapy.get_library("Reactome_2022")`` / ``decoupler.op.hallmark()`` online.)

    Parameters
    ----------
    gene_sets
        ``name -> genes`` (e.g. :func:`tissue_gene_sets`), a GMT file path, or a long DataFrame
        with ``source`` (set) and ``target`` (gene) columns (decoupler's resources).
    genes_or_ranking
        ORA: a list/set of genes (the module).  A pandas Series ``gene -> score`` is a ranking:
        ``method="prerank"`` uses all of it; ``method="ora"`` tests its ``n_top`` best genes.
    universe
        The background: every gene that could have been in the list (e.g. the genes of the
        network).  Gene sets are restricted to it.  Default: the union of the ranking / list
        and all gene sets - pass the real universe, a too large background inflates
        significance.
    method
        ``"ora"`` or ``"prerank"``.
    n_top
        ORA on a ranking: how many top-scored genes form the list.
    min_size, max_size
        Gene sets with fewer / more genes in the universe are skipped.
    permutations, seed
        ``prerank`` only.

    Returns
    -------
    pandas.DataFrame
        One row per gene set tested, most significant first: ``gene_set``, ``size`` (genes in
        the universe), ``overlap`` (ORA: set genes in the list), ``expected`` (ORA: overlap
        expected by chance), ``odds_ratio`` (ORA) or ``nes`` (prerank), ``p_value``, ``fdr``
        (Benjamini-Hochberg over the sets tested), ``genes`` (the overlap / leading-edge genes,
        ``;``-separated).  ``attrs["n_genes"]``, ``attrs["n_universe"]``.

    Examples
    --------
    >>> sets = {"T": ["g0", "g1", "g2", "g3"], "D": ["g10", "g11", "g12", "g13"]}
    >>> res = enrich(sets, ["g0", "g1", "g2", "g5"], universe=[f"g{i}" for i in range(40)])
    >>> res[["gene_set", "overlap", "p_value"]].round(5)
      gene_set  overlap  p_value
    0        T        3  0.00159
    1        D        0  1.00000
    """
    sets = _as_gene_sets(gene_sets)
    if method not in ("ora", "prerank"):
        raise CourseInputError(f"method={method!r} is not known. Fix: 'ora' or 'prerank'.")
    ranking = genes_or_ranking if isinstance(genes_or_ranking, pd.Series) else None
    if ranking is None:
        if isinstance(genes_or_ranking, str) or not isinstance(genes_or_ranking, Iterable):
            raise CourseInputError(
                "genes_or_ranking must be a list of genes (ORA) or a pandas Series gene -> score "
                f"(a ranking); got {type(genes_or_ranking).__name__}."
            )
        if method == "prerank":
            raise CourseInputError(
                "method='prerank' needs a ranking: a pandas Series gene -> score. Fix: pass one, "
                "or use method='ora' for a gene list."
            )
        query = list(dict.fromkeys(str(g) for g in genes_or_ranking))
    else:
        ranking = pd.to_numeric(ranking, errors="coerce").dropna()
        ranking.index = ranking.index.astype(str)
        ranking = ranking[~ranking.index.duplicated()]
        if method == "ora":
            if n_top is None or int(n_top) < 1:
                raise CourseInputError(
                    "ORA on a ranking needs n_top= (how many top-scored genes form the list). "
                    "Fix: enrich(sets, ranking, n_top=50), or method='prerank'."
                )
            query = list(ranking.sort_values(ascending=False, kind="stable").index[:int(n_top)])
        else:
            query = list(ranking.index)
    if universe is None:
        univ = set(query) | {g for v in sets.values() for g in v}
        if ranking is not None:
            univ |= set(ranking.index)
    else:
        univ = {str(g) for g in universe}
    query_in = [g for g in query if g in univ]
    if not query_in:
        raise CourseInputError(
            "None of the genes is in the universe. Fix: use the same identifiers everywhere "
            "(Ensembl IDs for the tissue library, symbols for MSigDB/Reactome GMT files)."
        )
    sized = {k: [g for g in v if g in univ] for k, v in sets.items()}
    sized = {k: v for k, v in sized.items() if int(min_size) <= len(v) <= int(max_size)}
    if not sized:
        raise CourseInputError(
            f"No gene set has between {min_size} and {max_size} genes in the universe. Fix: "
            "check that the sets use the same identifiers as the genes, or change min_size."
        )
    gp = _gseapy()
    N = len(univ)
    if method == "ora":
        res = gp.enrich(gene_list=query_in, gene_sets=sized, background=sorted(univ),
                        outdir=None, cutoff=1.0, no_plot=True, verbose=False)
        r = res.results if res.results is not None else pd.DataFrame()
        r = r.set_index("Term") if len(r) else pd.DataFrame(columns=["P-value", "Genes"])
        n = len(query_in)
        qset = set(query_in)
        rows = []
        for name, genes in sized.items():
            ov = sorted(set(genes) & qset)
            a, K = len(ov), len(genes)
            b, c, d = K - a, n - a, N - K - n + a
            odds = (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5))
            p = float(r.loc[name, "P-value"]) if name in r.index else 1.0
            rows.append({"gene_set": name, "size": K, "overlap": a, "expected": K * n / N,
                         "odds_ratio": odds, "p_value": min(p, 1.0), "genes": ";".join(ov)})
        out = pd.DataFrame(rows)
    else:
        rnk = ranking[ranking.index.isin(univ)].sort_values(ascending=False, kind="stable")
        res = gp.prerank(rnk=rnk, gene_sets=sized, permutation_num=int(permutations),
                         seed=int(seed), min_size=int(min_size), max_size=int(max_size),
                         outdir=None, no_plot=True, threads=1, verbose=False)
        r = res.res2d.set_index("Term")
        rows = []
        for name, genes in sized.items():
            if name not in r.index:
                continue
            rows.append({"gene_set": name, "size": len(genes),
                         "nes": float(r.loc[name, "NES"]), "es": float(r.loc[name, "ES"]),
                         "p_value": float(r.loc[name, "NOM p-val"]),
                         "genes": str(r.loc[name, "Lead_genes"])})
        out = pd.DataFrame(rows)
    from scipy.stats import false_discovery_control

    out["fdr"] = false_discovery_control(out["p_value"].clip(0, 1).to_numpy(), method="bh")
    cols = [c for c in ("gene_set", "size", "overlap", "expected", "odds_ratio", "nes", "es",
                        "p_value", "fdr", "genes") if c in out.columns]
    sort_key = ["p_value", "odds_ratio"] if method == "ora" else ["p_value", "nes"]
    out = out[cols].sort_values(sort_key, ascending=[True, False], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["n_genes"] = len(query_in)
    out.attrs["n_universe"] = N
    out.attrs["method"] = method
    return out


def enrich_modules(modules, gene_sets, *, universe: Iterable[str] | None = None,
                   min_module_size: int = 5, **kwargs) -> pd.DataFrame:
    """:func:`enrich` (ORA) for every module of a partition; one row per (module, gene set).

    Parameters
    ----------
    modules
        ``gene -> module`` (e.g. ``EmbeddingNetwork.modules`` or :func:`communities`), or
        ``module -> genes``.
    gene_sets
        As :func:`enrich`.
    universe
        Default: every gene placed in a module.
    min_module_size
        Smaller modules are skipped.
    **kwargs
        Passed to :func:`enrich`.

    Returns
    -------
    pandas.DataFrame
        :func:`enrich`'s columns plus ``module`` (first) and ``module_size``; the FDR is
        recomputed over all tests of all modules.

    Examples
    --------
    >>> sets = {"T": ["g0", "g1", "g2", "g3"], "D": ["g10", "g11", "g12", "g13"]}
    >>> modules = pd.Series({"g0": "m1", "g1": "m1", "g2": "m1", "g20": "m1",
    ...                      "g10": "m2", "g30": "m2"})
    >>> res = enrich_modules(modules, sets, universe=[f"g{i}" for i in range(40)],
    ...                      min_module_size=2)
    >>> res[["module", "gene_set", "overlap"]].values.tolist()[:2]
    [['m1', 'T', 3], ['m2', 'D', 1]]
    """
    from scipy.stats import false_discovery_control

    if isinstance(modules, pd.Series):
        members = {m: list(g.index.astype(str)) for m, g in modules.groupby(modules, sort=True)}
    elif isinstance(modules, Mapping) and modules and all(
            isinstance(v, (list, tuple, set, np.ndarray, pd.Index)) for v in modules.values()):
        members = {m: [str(g) for g in v] for m, v in modules.items()}
    elif isinstance(modules, Mapping):
        s = pd.Series(modules)
        members = {m: list(g.index.astype(str)) for m, g in s.groupby(s, sort=True)}
    else:
        raise CourseInputError(
            f"modules must be a dict/Series gene -> module or a dict module -> genes; got "
            f"{type(modules).__name__}."
        )
    if universe is None:
        universe = sorted({g for v in members.values() for g in v})
    universe = list(universe)
    parts = []
    for m, genes in members.items():
        if len(genes) < int(min_module_size):
            continue
        r = enrich(gene_sets, genes, universe=universe, method="ora", **kwargs)
        r.insert(0, "module_size", len([g for g in genes if g in set(universe)]))
        r.insert(0, "module", m)
        parts.append(r)
    if not parts:
        raise CourseInputError(
            f"No module has at least {min_module_size} genes. Fix: lower min_module_size."
        )
    out = pd.concat(parts, ignore_index=True)
    out["fdr"] = false_discovery_control(out["p_value"].clip(0, 1).to_numpy(), method="bh")
    return out.sort_values(["p_value", "module"], kind="stable").reset_index(drop=True)
