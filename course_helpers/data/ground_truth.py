"""The planted truth of the teaching tissue: :class:`GroundTruth` (network, programmes, disease
driver, synergy pair) and :func:`load_ground_truth`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from .._utils import CourseInputError
from .design import _read_design


@dataclass
class GroundTruth:
    """The planted truth of the teaching tissue.

    All gene lists hold **Ensembl IDs**; use :meth:`symbols` / :meth:`ensembl` to convert.

    Attributes
    ----------
    edges : pandas.DataFrame
        One row per planted TF -> target edge: ``source``, ``target`` (Ensembl IDs), ``sign``
        (+1 activation / -1 repression), ``weight`` (strength), ``contexts`` (``"all"`` or cell
        types joined by ``","``: where the edge is active), ``source_symbol``, ``target_symbol``,
        ``program`` (cell type, ``disease``, ``synergy``, ``immediate_early`` or ``weak``),
        ``partner`` / ``partner_symbol`` (the co-factor an AND-edge needs, else ``""``).
    programs : dict
        Cell type -> target genes of its programme (activated targets of that cell type's
        programme edges; the GATA4-TBX5 joint targets count as cardiomyocyte; weak edges and
        the disease programme are not included).
    tfs : list
        All transcription factors of the tissue (masters, secondary, orphans, disease driver).
    disease_drivers : list
        The TF(s) that cause the diseased state (``["ENSG00000100968"]`` = NFATC4).
    synergy_pairs : list of dict
        Each with ``tfs``, ``tf_symbols``, ``targets``, ``target_symbols``, ``weight``.
    disease : dict
        ``cell_type``, ``healthy_state``, ``diseased_state``, ``drivers``, ``program_up``,
        ``program_down`` (+ ``*_symbols``), ``donors`` and a ``description``.
    cell_types, master_regulators, housekeeping, orphan_tfs, secondary_tfs
        As named. Orphan TFs are expressed and cell-type specific but have **no** targets.
    genes : pandas.DataFrame
        Gene table (Ensembl ID index, ``gene_symbol``, ``gene_class``).
    tf_activity : pandas.DataFrame
        Activity level of each TF per cell type/state used by the simulator.

    Examples
    --------
    >>> gt = load_ground_truth()
    >>> gt.symbols(gt.disease_drivers)
    ['NFATC4']
    >>> gt.synergy_pairs[0]["tf_symbols"]
    ['GATA4', 'TBX5']
    >>> len(gt.edges_for("cardiomyocyte")) > len(gt.edges_for("t_cell"))
    True
    """

    edges: pd.DataFrame
    programs: dict
    tfs: list
    disease_drivers: list
    synergy_pairs: list
    disease: dict
    cell_types: list
    master_regulators: dict
    housekeeping: list
    orphan_tfs: list = field(default_factory=list)
    secondary_tfs: list = field(default_factory=list)
    genes: pd.DataFrame = field(default=None, repr=False)
    tf_activity: pd.DataFrame = field(default=None, repr=False)

    def __repr__(self) -> str:  # short, notebook-friendly
        return (
            f"GroundTruth({len(self.genes)} genes, {len(self.tfs)} TFs, {len(self.edges)} edges, "
            f"cell types={self.cell_types}, disease drivers={self.symbols(self.disease_drivers)}, "
            f"synergy pairs={[p['tf_symbols'] for p in self.synergy_pairs]})"
        )

    # --- id conversion -------------------------------------------------------------------------
    def symbols(self, genes: Iterable[str]) -> list[str]:
        """Ensembl IDs (or symbols) -> symbols.

        Examples
        --------
        >>> load_ground_truth().symbols(["ENSG00000136574"])
        ['GATA4']
        """
        sym = self.genes["gene_symbol"]
        out = []
        for g in _as_list(genes):
            if g in sym.index:
                out.append(sym[g])
            elif g in set(sym.values):
                out.append(g)
            else:
                raise CourseInputError(
                    f"{g!r} is not a teaching-tissue gene. Fix: use one of gt.genes.index "
                    "(Ensembl IDs) or gt.genes['gene_symbol']."
                )
        return out

    def ensembl(self, genes: Iterable[str]) -> list[str]:
        """Symbols (or Ensembl IDs) -> Ensembl IDs.

        Examples
        --------
        >>> load_ground_truth().ensembl(["GATA4", "TBX5"])
        ['ENSG00000136574', 'ENSG00000089225']
        """
        sym2id = dict(zip(self.genes["gene_symbol"], self.genes.index))
        out = []
        for g in _as_list(genes):
            if g in self.genes.index:
                out.append(g)
            elif g in sym2id:
                out.append(sym2id[g])
            else:
                raise CourseInputError(
                    f"{g!r} is not a teaching-tissue gene. Fix: check the spelling against "
                    "gt.genes['gene_symbol'] (symbols) or gt.genes.index (Ensembl IDs)."
                )
        return out

    # --- queries -------------------------------------------------------------------------------
    def _check_context(self, context):
        if context is not None and context not in self.cell_types:
            raise CourseInputError(
                f"unknown context {context!r}. Fix: use one of {self.cell_types} or None (all)."
            )

    def edges_for(self, context: str | None = None, *, include_weak: bool = True,
                  sign: int | None = None) -> pd.DataFrame:
        """Edges active in one cell type (``contexts`` contains it or is ``"all"``).

        Parameters
        ----------
        context
            A cell type (see ``cell_types``) or ``None`` for every edge.
        include_weak
            Keep the low-weight (``program == "weak"``) edges.
        sign
            ``+1`` or ``-1`` to keep only activations or repressions.

        Examples
        --------
        >>> gt = load_ground_truth()
        >>> e = gt.edges_for("smooth_muscle")
        >>> bool((e["source_symbol"] == "MYOCD").any())
        True
        >>> bool((gt.edges_for("t_cell")["source_symbol"] == "MYOCD").any())
        False
        """
        self._check_context(context)
        e = self.edges
        if context is not None:
            ctx = e["contexts"].str.split(",")
            keep = ctx.map(lambda c: "all" in c or context in c)
            e = e[keep]
        if not include_weak:
            e = e[e["program"] != "weak"]
        if sign is not None:
            e = e[e["sign"] == sign]
        return e.reset_index(drop=True)

    def targets_of(self, tf: str, context: str | None = None) -> list[str]:
        """Ensembl IDs of the planted targets of ``tf`` (symbol or Ensembl ID).

        Examples
        --------
        >>> gt = load_ground_truth()
        >>> gt.symbols(gt.targets_of("SOX17"))[:3]
        ['GJA4', 'DLL4', 'EFNB2']
        """
        (tid,) = self.ensembl([tf])
        e = self.edges_for(context)
        return list(dict.fromkeys(e.loc[e["source"] == tid, "target"]))

    def regulators_of(self, gene: str, context: str | None = None) -> list[str]:
        """Ensembl IDs of the TFs with a planted edge into ``gene``.

        Examples
        --------
        >>> gt = load_ground_truth()
        >>> gt.symbols(gt.regulators_of("NPPA"))
        ['GATA4', 'TBX5']
        """
        (gid,) = self.ensembl([gene])
        e = self.edges_for(context)
        return list(dict.fromkeys(e.loc[e["target"] == gid, "source"]))

    def edge_set(self, context: str | None = None, *, symbols: bool = False,
                 include_weak: bool = True) -> set[tuple[str, str]]:
        """Set of ``(source, target)`` pairs, handy for precision/recall.

        Examples
        --------
        >>> ("GATA4", "NPPA") in load_ground_truth().edge_set(symbols=True)
        True
        """
        e = self.edges_for(context, include_weak=include_weak)
        cols = ["source_symbol", "target_symbol"] if symbols else ["source", "target"]
        return set(map(tuple, e[cols].to_numpy()))

    def adjacency(self, context: str | None = None, *, signed: bool = True,
                  symbols: bool = False) -> pd.DataFrame:
        """TF x target matrix of (signed) weights; 0 where there is no edge.

        Examples
        --------
        >>> A = load_ground_truth().adjacency(symbols=True)
        >>> float(A.loc["NFATC4", "ATP2A2"]) < 0
        True
        """
        e = self.edges_for(context)
        src = e["source_symbol"] if symbols else e["source"]
        tgt = e["target_symbol"] if symbols else e["target"]
        val = e["weight"] * (e["sign"] if signed else 1)
        df = pd.DataFrame({"s": src.values, "t": tgt.values, "v": val.values})
        return df.pivot_table(index="s", columns="t", values="v", aggfunc="sum",
                              fill_value=0.0).rename_axis(index=None, columns=None)


def _as_list(genes) -> list[str]:
    if isinstance(genes, str):
        return [genes]
    return list(genes)


def load_ground_truth() -> GroundTruth:
    """Load the planted network and annotations of the teaching tissue.

    Returns
    -------
    GroundTruth
        See :class:`GroundTruth`. The same truth holds for every seed of :func:`simulate_tissue`.

    Examples
    --------
    >>> gt = load_ground_truth()
    >>> gt.cell_types
    ['cardiomyocyte', 'fibroblast', 'endothelial', 'macrophage', 'smooth_muscle', 't_cell']
    >>> gt.edges.columns[:5].tolist()
    ['source', 'target', 'sign', 'weight', 'contexts']
    >>> gt.symbols(gt.synergy_pairs[0]["targets"])[:2]
    ['NPPA', 'GJA5']
    """
    d = _read_design()
    gt = d["gt"]
    genes = d["genes"][["ensembl_id", "gene_symbol", "gene_class"]].set_index("ensembl_id")
    genes.index.name = None
    return GroundTruth(
        edges=d["edges"],
        programs={k: list(v) for k, v in gt["programs"].items()},
        tfs=list(gt["tfs"]),
        disease_drivers=list(gt["disease_drivers"]),
        synergy_pairs=[dict(p) for p in gt["synergy_pairs"]],
        disease=dict(gt["disease"]),
        cell_types=list(gt["cell_types"]),
        master_regulators={k: list(v) for k, v in gt["master_regulators"].items()},
        housekeeping=list(gt["housekeeping"]),
        orphan_tfs=list(gt.get("orphan_tfs", [])),
        secondary_tfs=list(gt.get("secondary_tfs", [])),
        genes=genes,
        tf_activity=d["tf_activity"],
    )
