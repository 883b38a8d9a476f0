"""In-silico perturbation: delete or overexpress genes and measure how the embeddings move.

Files (one concern each):

* ``rule.py`` - :func:`perturb_ids`: THE delete / overexpress rule (the engine and the widgets
  both call it).
* ``core.py`` - cell selection, the engine, :func:`in_silico_perturb`, :func:`perturb_pairs`,
  :func:`random_gene_null` and the statistics (being split into one-concern files).
* ``summary.py`` - :func:`summarize_effects` / :class:`EffectSummary`: the tables an explorer
  shows for a few chosen genes (effects, null, per-gene summary, moved genes, synergy).
* ``warnings.py`` - the warning classes (:class:`PerturbWarning` and subclasses).
"""
from .core import (
    GeneEffects,
    adjust_for_rank,
    benjamini_hochberg,
    in_silico_perturb,
    net_shift,
    perturb_pairs,
    perturbation_stats,
    random_gene_null,
)
from .rule import perturb_ids
from .summary import EffectSummary, summarize_effects
from .warnings import (
    EmbModeFallbackWarning,
    FewCellsWarning,
    FewNullGenesWarning,
    GenesNotExpressedWarning,
    PerturbWarning,
)

__all__ = [
    "EffectSummary",
    "EmbModeFallbackWarning",
    "FewCellsWarning",
    "FewNullGenesWarning",
    "GeneEffects",
    "GenesNotExpressedWarning",
    "PerturbWarning",
    "adjust_for_rank",
    "benjamini_hochberg",
    "in_silico_perturb",
    "net_shift",
    "perturb_ids",
    "perturb_pairs",
    "perturbation_stats",
    "random_gene_null",
    "summarize_effects",
]
