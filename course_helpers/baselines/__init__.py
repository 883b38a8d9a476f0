"""Classical gene-network baselines behind one small interface.

Every method takes the **same AnnData** the rest of the course uses (raw integer counts in ``X``,
``var_names`` = Ensembl IDs, ``var["gene_symbol"]``) and returns an **edge table**
``DataFrame(source, target, score, ..., source_symbol, target_symbol)`` with Ensembl IDs in
``source``/``target`` and a higher ``score`` meaning a more confident edge, so the network scorer
can rank every method the same way.

=======================  ==========================================================================
Function                 What it does
=======================  ==========================================================================
correlation_network      TF -> gene Pearson/Spearman correlation on log1p-normalised counts
wgcna_modules            WGCNA co-expression modules (PyWGCNA 2.2.1) + TF -> gene TOM edges
grnboost2                GRNBoost2-style gradient-boosting GRN (rustscenic 0.5.1)
regulons                 SCENIC-style regulons from the GRN + TF-target correlation (no motifs)
regulon_edges            the GRN edges that survive regulon building, as an edge table
regulon_activity         per-cell regulon activity with AUCell or ULM (decoupler 2.2.0)
pair_interaction         do two regulators act together? 2 x 2 interaction on counts or log scale
run_all_baselines        run several methods on one AnnData, with wall time and peak memory
=======================  ==========================================================================

The third-party libraries are optional (``pip install 'course_helpers[baselines]'``) and are
imported only inside the functions that need them.

Normalisation: unless ``normalize=False``, counts are scaled to ``target_sum`` (10,000) per cell
and ``log1p``-transformed, the input every one of these methods expects.

Files
-----

===============  =================================================================================
File             What lives there
===============  =================================================================================
dependencies.py  optional packages (install hint) and BLAS / numba thread limits
inputs.py        counts checks, normalisation, gene IDs / symbols, regulators (MissingTFsWarning), edges
correlation.py   correlation_network (Pearson / Spearman)
wgcna.py         WGCNAResult, wgcna_modules (PyWGCNA, economy-SVD eigengenes)
grnboost.py      grnboost2 (rustscenic)
regulons.py      regulons, regulon_edges, NoRegulonsWarning
activity.py      regulon_activity (AUCell / ULM with decoupler)
interaction.py   pair_interaction (2 x 2 interaction of two regulators)
run_all.py       BaselineResults, run_all_baselines (wall time, CPU time, peak memory)
===============  =================================================================================
"""
from __future__ import annotations

from .activity import regulon_activity
from .correlation import correlation_network
from .grnboost import grnboost2
from .inputs import MissingTFsWarning
from .interaction import pair_interaction
from .regulons import NoRegulonsWarning, regulon_edges, regulons
from .run_all import BaselineResults, run_all_baselines
from .wgcna import WGCNAResult, wgcna_modules

__all__ = [
    "BaselineResults",
    "MissingTFsWarning",
    "NoRegulonsWarning",
    "WGCNAResult",
    "correlation_network",
    "grnboost2",
    "pair_interaction",
    "regulon_activity",
    "regulon_edges",
    "regulons",
    "run_all_baselines",
    "wgcna_modules",
]
