"""Gene-set libraries: sets built from the tissue's own annotation, GMT files in and out."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import CourseInputError


def tissue_gene_sets(
    truth,
    *,
    universe: Iterable[str] | None = None,
    decoys: int = 3,
    seed: int = 0,
    min_size: int = 5,
    programs: bool = True,
    regulons: bool = True,
) -> dict:
    """The teaching tissue's own gene-set library: programmes, regulons and decoys.

    Offline stand-in for MSigDB / Reactome: every set is known to be true (or known to be
    random), so an enrichment result can be checked.

    * ``program:<cell type>`` - the genes of each planted cell-type programme.
    * ``regulon:<TF symbol>`` - the planted targets of each TF (TFs with >= ``min_size``).
    * ``decoy<i>:<name>`` - for every true set, ``decoys`` random sets of the same size drawn
      from ``universe`` (seeded).  A decoy that comes out "enriched" shows what a false positive
      looks like; over many decoys about 5 % have p < 0.05.

    Parameters
    ----------
    truth
        :func:`course_helpers.data.load_ground_truth` (``programs``, ``edges``, ``genes``).
    universe
        Genes the sets are restricted to and decoys are drawn from (e.g. the genes of your
        network).  Default: every gene of the tissue (``truth.genes``).
    decoys
        Decoy sets per true set (0: none).
    seed
        Seed for the decoys.
    min_size
        Sets with fewer genes in the universe are left out.
    programs, regulons
        Which true sets to include.

    Returns
    -------
    dict
        ``name -> sorted list of Ensembl IDs``; true sets first, then decoys.  Pass it to
        :func:`enrich` or :func:`write_gmt`.

    Examples
    --------
    >>> from course_helpers.data import load_ground_truth
    >>> sets = tissue_gene_sets(load_ground_truth(), decoys=1)
    >>> len(sets["program:cardiomyocyte"]) == len(sets["decoy1:program:cardiomyocyte"])
    True
    """
    if not hasattr(truth, "programs") or not hasattr(truth, "edges"):
        raise CourseInputError(
            "truth must be the teaching tissue's ground truth. Fix: "
            "course_helpers.data.load_ground_truth()."
        )
    if int(decoys) < 0:
        raise CourseInputError(f"decoys must be >= 0, got {decoys}.")
    if universe is None:
        if getattr(truth, "genes", None) is not None:
            universe = list(truth.genes.index)
        else:
            universe = sorted(set(truth.edges["source"]) | set(truth.edges["target"])
                              | {g for v in truth.programs.values() for g in v})
    univ = sorted(dict.fromkeys(str(g) for g in universe))
    in_univ = set(univ)
    symbol = {}
    if getattr(truth, "genes", None) is not None and "gene_symbol" in truth.genes.columns:
        symbol = truth.genes["gene_symbol"].astype(str).to_dict()
    for a, b in zip(truth.edges["source"], truth.edges.get("source_symbol", truth.edges["source"])):
        symbol.setdefault(a, str(b))
    sets: dict = {}
    if programs:
        for prog, genes in truth.programs.items():
            sets[f"program:{prog}"] = sorted({str(g) for g in genes} & in_univ)
    if regulons:
        for tf, tg in truth.edges.groupby("source")["target"]:
            sets[f"regulon:{symbol.get(tf, tf)}"] = sorted(set(map(str, tg)) & in_univ)
    sets = {k: v for k, v in sets.items() if len(v) >= int(min_size)}
    if not sets:
        raise CourseInputError(
            f"No true gene set has {min_size} genes in the universe. Fix: pass a larger "
            "universe= (Ensembl IDs, as in the truth) or lower min_size."
        )
    rng = np.random.default_rng(seed)
    pool = np.asarray(univ, dtype=object)
    out = dict(sets)
    for i in range(1, int(decoys) + 1):
        for name, genes in sets.items():
            out[f"decoy{i}:{name}"] = sorted(rng.choice(pool, size=len(genes), replace=False))
    return out


def read_gmt(path) -> dict:
    """Read a GMT gene-set file (MSigDB, Reactome, Enrichr libraries): ``name -> genes``.

    Each line: ``name <tab> description <tab> gene1 <tab> gene2 ...``.

    Examples
    --------
    >>> import tempfile
    >>> p = write_gmt({"HALLMARK_X": ["GATA4", "NPPA"]}, tempfile.mkdtemp() + "/tiny.gmt")
    >>> read_gmt(p)
    {'HALLMARK_X': ['GATA4', 'NPPA']}
    >>> sets = read_gmt("h.all.v2024.1.Hs.symbols.gmt")   # an MSigDB download  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise CourseInputError(
            f"GMT file {str(path)!r} not found. Fix: download it (e.g. MSigDB hallmark: "
            "https://www.gsea-msigdb.org/gsea/msigdb/human/collections.jsp) and pass its path."
        )
    sets: dict = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = [p.strip() for p in line.rstrip("\n\r").split("\t")]
            if not parts or not parts[0]:
                continue
            if len(parts) < 3:
                raise CourseInputError(
                    f"{path.name}, line {lineno}: a GMT line needs a name, a description and at "
                    "least one gene, separated by tabs. Fix: check that the file is a GMT file."
                )
            sets[parts[0]] = [g for g in parts[2:] if g]
    if not sets:
        raise CourseInputError(f"{path.name} holds no gene set. Fix: check the file.")
    return sets


def write_gmt(gene_sets: Mapping, path, *, description: str = "course_helpers") -> Path:
    """Write ``name -> genes`` as a GMT file (readable by :func:`read_gmt`, GSEA, Enrichr).

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_gmt({"A": ["g1", "g2"]}, os.path.join(tempfile.mkdtemp(), "x.gmt"))
    >>> read_gmt(p)
    {'A': ['g1', 'g2']}
    """
    sets = _as_gene_sets(gene_sets)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines("\t".join([name, description, *genes]) + "\n" for name, genes in sets.items())
    return path


def _as_gene_sets(gene_sets) -> dict:
    """dict name -> genes from a dict, a GMT path or a long DataFrame (source/target)."""
    if isinstance(gene_sets, (str, Path)):
        return read_gmt(gene_sets)
    if isinstance(gene_sets, pd.DataFrame):
        cols = [c for c in (("source", "target"), ("term", "gene"), ("geneset", "genesymbol"))
                if set(c) <= set(gene_sets.columns)]
        if not cols:
            raise CourseInputError(
                "A gene-set DataFrame needs columns source (set) and target (gene), as "
                f"decoupler's resources (got {list(gene_sets.columns)}). Fix: rename them."
            )
        s, t = cols[0]
        return {str(k): list(dict.fromkeys(map(str, v)))
                for k, v in gene_sets.groupby(s, sort=False)[t]}
    if isinstance(gene_sets, Mapping):
        out = {}
        for k, v in gene_sets.items():
            if isinstance(v, str) or not isinstance(v, Iterable):
                raise CourseInputError(
                    f"Gene set {k!r} must be a list of genes, got {type(v).__name__}. Fix: "
                    "{'set name': ['gene1', 'gene2', ...]}."
                )
            out[str(k)] = list(dict.fromkeys(str(g) for g in v))
        if not out:
            raise CourseInputError("gene_sets is empty. Fix: pass at least one gene set.")
        return out
    raise CourseInputError(
        f"gene_sets must be a dict name -> genes, a GMT file path or a DataFrame (source, "
        f"target); got {type(gene_sets).__name__}. Fix: e.g. tissue_gene_sets(load_ground_truth())."
    )
